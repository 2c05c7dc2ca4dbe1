"""A Polyak average of the policy's weights: the deterministic policy a run evaluates and keeps.

SAC's online actor chases a moving critic, so the deterministic policy read off it at any one
evaluation is a noisy draw around what training has learnt: evaluations of the state task
reached 98% of the ceiling and then wandered (docs/benchmarks.md). An exponential moving
average of the weights (Polyak averaging, as SAC's target critic already does; torch's
:class:`~torch.optim.swa_utils.AveragedModel` with its EMA function) smooths that walk without
touching training: the online actor still explores and learns, and only deterministic actions
(evaluation, the checkpoint's policy, ``v2p record`` of a trained policy) read the average.

The encoder is averaged with the actor when the critic trains it (the actor reads its latents,
so an averaged actor on a live encoder would read latents it was not averaged on); a frozen
encoder is shared, not copied.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from v2p.validation import check_scalar


class PolicyAverage(nn.Module):
    """EMA copies of ``actor`` (and ``encoder``, when given) with decay ``decay`` per update.

    The first :meth:`update` copies the online weights; each later one moves the average a
    fraction ``1 - decay`` towards them (a half-life of ``ln 2 / (1 - decay)`` updates). The
    copies live in this module's state, so they travel in checkpoints and resume exactly.
    """

    def __init__(self, actor: nn.Module, encoder: nn.Module | None, decay: float) -> None:
        super().__init__()
        decay = check_scalar("policy_average_decay", decay, gt=0.0)
        if decay >= 1.0:
            raise ValueError(
                f"policy_average_decay must be below 1 (1 would never move the average), "
                f"got {decay!r}"
            )
        self.decay = decay
        self.average = AveragedModel(
            self._policy(actor, encoder),
            multi_avg_fn=get_ema_multi_avg_fn(decay),
            use_buffers=True,  # BatchNorm statistics (R3D-18) follow the weights they go with
        )
        self.average.requires_grad_(False)
        self.average.eval()

    @staticmethod
    def _policy(actor: nn.Module, encoder: nn.Module | None) -> nn.ModuleDict:
        modules = {"actor": actor}
        if encoder is not None:
            modules["encoder"] = encoder
        return nn.ModuleDict(modules)

    @property
    def averages_encoder(self) -> bool:
        return "encoder" in self.average.module

    @torch.no_grad()
    def update(self, actor: nn.Module, encoder: nn.Module) -> None:
        """Move the average towards the online weights (after an optimiser step)."""
        self.average.update_parameters(
            self._policy(actor, encoder if self.averages_encoder else None)
        )

    @property
    def actor(self) -> nn.Module:
        return self.average.module["actor"]

    def encoder(self, online: nn.Module) -> nn.Module:
        """The averaged encoder, or ``online`` when the encoder is frozen (shared)."""
        return self.average.module["encoder"] if self.averages_encoder else online

    def train(self, mode: bool = True) -> PolicyAverage:
        super().train(mode)
        self.average.eval()  # never trained: BatchNorm reads the averaged running statistics
        return self
