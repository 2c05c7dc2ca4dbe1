"""The quality constraint SAC trains under: the multiplier, the curriculum, their state.

The formulas are :mod:`v2p.economics.constraint`'s (ECONOMICS.md section 3); this component
holds their state for a training run: the multiplier and the error target as buffers, so the
update reads them on the device without a host sync and checkpoints carry them, and the count
of shifts that drives the curriculum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from v2p.contracts import EpisodeRecord
from v2p.economics import PIDLagrangian, error_rate, sla_target
from v2p.validation import check_int, check_scalar


class ShiftConstraint(nn.Module):
    """The service level ``err <= e*``, enforced by a Lagrange multiplier per finished shift.

    The multiplier is a PID Lagrangian (ECONOMICS.md section 3 as amended 2026-12-01, Stooke et
    al. 2020): :class:`~v2p.economics.PIDLagrangian`; with ``lambda_kp = lambda_kd = 0`` it is
    plain dual ascent with step ``dual_lr``. The defaults, ``K_i = 20`` and ``K_p = K_d = 0``,
    are the gains measured to hold the error target on both the binding state task and the
    physics task (docs/benchmarks.md, "PID Lagrangian"): PID ``K_p = 2,000`` held it too but
    cost the physics task 5 points of its held profit.

    Args:
        lambda_init: the multiplier's start.
        dual_lr: the integral gain ``K_i`` (the dual-ascent step ``eta``).
        lambda_kp, lambda_kd: the proportional and derivative gains ``K_p``, ``K_d``.
        lambda_ema: weight of the newest shift's gap in its EMA ``g_s``, in [0, 1].
        err_target_init, err_target_final, curriculum_episodes: the error-target curriculum.
        skip_warmup: leave out of the multiplier and the curriculum every shift with a step
            acted by the warm-up's random actions (``EpisodeRecord.random_steps``): the target
            binds the policy, and random actions' error rates (0.3 to 0.5 on the physics env)
            would otherwise give the proportional and integral terms a spike before the
            policy has acted once. The ledger still records those shifts.
    """

    def __init__(
        self,
        lambda_init: float = 0.0,
        dual_lr: float = 20.0,
        err_target_init: float = 0.10,
        err_target_final: float = 0.06,
        curriculum_episodes: int = 600,
        lambda_kp: float = 0.0,
        lambda_kd: float = 0.0,
        lambda_ema: float = 1.0,
        skip_warmup: bool = False,
    ) -> None:
        super().__init__()
        self.err_target_init = check_scalar("err_target_init", err_target_init, ge=0, le=1)
        self.err_target_final = check_scalar("err_target_final", err_target_final, ge=0, le=1)
        self.curriculum_episodes = check_int("curriculum_episodes", curriculum_episodes, ge=0)
        self.skip_warmup = bool(skip_warmup)
        self.dual = PIDLagrangian(
            lambda_init=lambda_init, k_p=lambda_kp, k_i=dual_lr, k_d=lambda_kd, ema=lambda_ema
        )
        self.shifts_seen = 0
        self.register_buffer("lagrange", torch.tensor(float(lambda_init)))
        self.register_buffer("err_target", torch.tensor(float(err_target_init)))

    @property
    def target(self) -> float:
        """The error target for the next shift, from the curriculum."""
        return float(
            sla_target(
                self.shifts_seen,
                self.err_target_init,
                self.err_target_final,
                self.curriculum_episodes,
            )
        )

    @property
    def value(self) -> float:
        """The multiplier now in force."""
        return self.dual.value

    def penalty(self, err: torch.Tensor) -> torch.Tensor:
        """``lambda * max(0, err - e*)`` per transition (B,), with the current lambda."""
        return self.lagrange * F.relu(err - self.err_target)

    def account(self, errors: Sequence[float]) -> list[tuple[float, float]]:
        """One multiplier update per finished shift's error rate, in order.

        Returns the (error target the shift was held to, lambda after its update) of each.
        """
        after = []
        for err in errors:
            target = self.target
            self.dual.update(err, target)
            self.shifts_seen += 1
            after.append((target, self.dual.value))
        if after:
            # fill_ with a python float: a host-to-device copy, no device-to-host sync.
            self.lagrange.fill_(self.dual.value)
            self.err_target.fill_(self.target)
        return after

    def account_episodes(
        self,
        episodes: Sequence[EpisodeRecord],
        gather: Callable[[list[float]], tuple[list[float], int]] = lambda local: (local, 0),
    ) -> tuple[list[tuple[float, float]], bool]:
        """Update the multiplier with the shifts among ``episodes`` (and, through ``gather``,
        every other rank's: all of them in rank order, and where this rank's start).

        Returns the (error target, lambda) in force after each episode, aligned with
        ``episodes`` (an episode without a shift, or a warm-up shift left out, gets the current
        pair), and whether any shift, on any rank, updated the multiplier.
        """
        counted = [self.counts(r) for r in episodes]
        local = [
            float(error_rate(r.shift.errors, r.shift.attempts))
            for r, c in zip(episodes, counted, strict=True)
            if c
        ]
        errors, first = gather(local)
        after = self.account(errors)  # (target, lambda) after each shift, global order
        mine = iter(after[first : first + len(local)])
        pairs = [next(mine) if c else (self.target, self.value) for c in counted]
        return pairs, bool(errors)

    def counts(self, record: EpisodeRecord) -> bool:
        """Whether ``record`` updates the multiplier: a shift, and not a warm-up one when
        ``skip_warmup``."""
        if record.shift is None:
            return False
        return not (self.skip_warmup and record.random_steps > 0)

    def checkpoint_state(self) -> dict[str, Any]:
        """What the buffers do not hold: the multiplier's state and the shift count."""
        return {"dual": self.dual.state_dict(), "shifts_seen": self.shifts_seen}

    def restore(self, state: dict[str, Any]) -> None:
        self.dual.load_state_dict(state["dual"])
        self.shifts_seen = check_int("state['shifts_seen']", state["shifts_seen"], ge=0)


def gather_in_rank_order(
    local: list[float],
    world_size: int,
    rank: int,
    all_gather: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
) -> tuple[list[float], int]:
    """Every rank's values in rank order, and where this rank's start.

    Under DDP every rank applies every rank's finished shifts, so lambda and the curriculum
    stay one number. A collective on every call (shift counts differ between ranks, so no rank
    can skip it), with one host sync to size the padding; nothing on a single device.
    """
    if world_size == 1:
        return local, 0
    counts = all_gather(torch.tensor(len(local), device=device)).tolist()  # (W,)
    width = max(counts)
    if width == 0:
        return [], 0
    padded = torch.zeros(width, dtype=torch.float64, device=device)
    padded[: len(local)] = torch.tensor(local, dtype=torch.float64)
    gathered = all_gather(padded).tolist()  # (W, width)
    values = [v for k, row in enumerate(gathered) for v in row[: counts[k]]]
    return values, sum(counts[:rank])
