"""How SAC uses its encoder: which parts learn, which stay fixed, and what the replay stores.

``freeze_encoder`` is ``False`` (the critic loss trains the whole encoder), ``True`` (no weight
learns; eval mode) or ``"trunk"`` (the feature extractor is fixed, in eval mode, and the
critic trains the encoder's head, the Linear + LayerNorm that makes the latent). With a fixed
part, the replay can keep what that part makes of each frame instead of its pixels
(``cache_frame_features``), so updates skip it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from v2p.contracts import ReplayFeatures
from v2p.models.pretrain import load_pretrained_encoder

FreezeEncoder = bool | Literal["trunk"]


def check_freeze_encoder(freeze_encoder: object) -> FreezeEncoder:
    if not (isinstance(freeze_encoder, bool) or freeze_encoder == "trunk"):
        raise ValueError(
            f"freeze_encoder must be one of true, false or 'trunk', got {freeze_encoder!r}"
        )
    return freeze_encoder  # type: ignore[return-value]


class EncoderTraining:
    """The freezing and replay-caching policy of one encoder (module docstring).

    Holds a reference to the encoder, which its LightningModule owns (and registers).
    """

    def __init__(
        self,
        encoder: nn.Module,
        freeze_encoder: FreezeEncoder,
        cache_frame_features: bool,
        observation_shape: Sequence[int],
    ) -> None:
        self.encoder = encoder
        self.freeze = check_freeze_encoder(freeze_encoder)
        self.cache_frame_features = cache_frame_features
        self.observation_shape = tuple(observation_shape)
        encoder.requires_grad_(self.learns)
        if self.freeze == "trunk":
            encoder.trunk.requires_grad_(False)
        # From the start: Lightning never calls train() on a fresh module (its loops restore
        # each submodule's mode after evaluation), so train() alone would never run.
        self.keep_frozen_in_eval_mode()

    @property
    def learns(self) -> bool:
        """Whether the critic loss trains any encoder weight (all of them, or the head)."""
        return self.freeze is not True

    def keep_frozen_in_eval_mode(self) -> None:
        # A frozen encoder's BatchNorm (R3D-18) uses and keeps its running statistics: in
        # train mode it would normalise by each batch's statistics and update them.
        if self.freeze is True:
            self.encoder.eval()
        elif self.freeze == "trunk":
            self.encoder.trunk.eval()

    @contextlib.contextmanager
    def acting(self) -> Iterator[None]:
        """The encoder in eval mode, as Stable-Baselines3 collects rollouts: with BatchNorm
        (R3D-18) in train mode, one env's action would depend on the other envs' clips, and
        acting would move the running statistics that evaluation normalises with."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            yield
        finally:
            if was_training:
                self.encoder.train()
                self.keep_frozen_in_eval_mode()

    @property
    def replay_features(self) -> Literal["clip", "frame"] | None:
        """What replay samples hold instead of pixels, with ``cache_frame_features``: the
        whole frozen encoder's ``clip`` latents, the fixed trunk's ``frame`` features, or
        None (pixels)."""
        if not self.cache_frame_features or len(self.observation_shape) != 4:
            return None
        if self.freeze is True:
            return "clip"
        if self.freeze == "trunk" and hasattr(self.encoder, "encode_frames"):
            return "frame"
        return None

    def replay_feature_encoder(self, device: torch.device) -> ReplayFeatures | None:
        """How the replay should store its frames, or None for pixels.

        ``encode`` runs the fixed part of the encoder on what the replay adds: raw frames
        ``(K, C, H, W)`` through the trunk, or, with the whole encoder frozen, the clips
        ``(K, T, C, H, W)`` those frames end, to ``(K, dim)`` float32.
        """
        kind = self.replay_features
        if kind is None:
            return None
        clip = kind == "clip"
        run = self.encoder if clip else self.encoder.encode_frames

        @torch.no_grad()
        def encode(inputs: np.ndarray) -> np.ndarray:
            return run(torch.as_tensor(inputs, device=device)).float().cpu().numpy()

        dim = self.encoder.latent_dim if clip else self.encoder.frame_dim
        return ReplayFeatures(encode, dim, clip)

    def replay_latent(self, obs: torch.Tensor) -> torch.Tensor:
        """The latent of replayed observations: from pixels, from the trunk's stored frame
        features, or the stored latents themselves."""
        kind = self.replay_features
        if kind == "clip":
            return obs
        if kind == "frame":
            return self.encoder.from_frame_features(obs)
        return self.encoder(obs)


def reset_head(encoder: nn.Module) -> None:
    """Re-initialise the encoder's head (the Linear + LayerNorm that makes the latent)."""
    for module in encoder.head.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def load_encoder_weights(encoder: nn.Module, path: str) -> None:
    """Copy the encoder of checkpoint ``path`` into ``encoder``, which must be the same model."""
    pretrained = load_pretrained_encoder(path)
    mine = (type(encoder).__name__, tuple(encoder.obs_shape), encoder.latent_dim)
    theirs = (type(pretrained).__name__, tuple(pretrained.obs_shape), pretrained.latent_dim)
    if mine != theirs:
        raise ValueError(
            f"encoder_ckpt {path!r} holds a {theirs[0]} for observations {theirs[1]} with "
            f"latent_dim {theirs[2]}, but this model builds a {mine[0]} for {mine[1]} with "
            f"latent_dim {mine[2]}; set encoder_arch and latent_dim to the pretraining run's"
        )
    try:
        encoder.load_state_dict(pretrained.state_dict())
    except RuntimeError as e:
        raise ValueError(
            f"encoder_ckpt {path!r} does not fit this model's encoder (different widths? "
            f"set encoder_channels / encoder_hidden_dim to the pretraining run's): {e}"
        ) from e
