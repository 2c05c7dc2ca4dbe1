"""The inverse dynamics model (IDM): which action did the frames around a step come from?

VPT (Baker et al. 2022) trains an IDM on a small labelled set, where it sees frames before and
after each action, and uses it to label a large corpus of video that has none; the labelled
corpus then trains a policy as if it had been recorded with actions. Here the IDM is a clip
encoder (the same builders as SAC's) over the window of :class:`~v2p.data.steps.StepDataModule`
and a Gaussian head: a mean action and a standard deviation per action dimension, trained by
the Gaussian negative log-likelihood, so the labels come with the model's own confidence.

Validation reports, on held-out episodes, the R^2 of each action dimension
(``val/r2/<name>``): how identifiable that dimension is from the frames. A dimension whose
R^2 stays near 0 is one the frames do not reveal, and labels of it are the mean action.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch.nn import functional as F
from torchmetrics.regression import R2Score

from v2p.checkpoint_file import load_module
from v2p.encoders import build_encoder
from v2p.models.components import mlp
from v2p.validation import check_scalar

LOG_STD_MIN, LOG_STD_MAX = -7.0, 2.0


class InverseDynamicsModule(L.LightningModule):
    """Predicts the action of a step from the frames around it (module docstring).

    Args:
        observation_shape: the window ``(clip_len + 1, C, S, S)`` (linked from the data).
        action_low, action_high: the action box (linked from the data); labels are clipped
            to it.
        action_names: a name per action dimension for the logs (default ``action_<i>``).
        encoder_arch, latent_dim, encoder_channels: the window's encoder.
        hidden_dim: width of the head.
        lr, weight_decay: AdamW.
    """

    def __init__(
        self,
        observation_shape: Sequence[int],
        action_low: Sequence[float],
        action_high: Sequence[float],
        action_names: Sequence[str] | None = None,
        encoder_arch: str = "simple2dcnn",
        latent_dim: int = 128,
        encoder_channels: int = 32,
        hidden_dim: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        check_scalar("lr", lr, gt=0.0)
        check_scalar("weight_decay", weight_decay, ge=0.0)
        if len(action_low) != len(action_high) or not action_low:
            raise ValueError(
                f"action_low {list(action_low)} and action_high {list(action_high)} must be "
                "non-empty and of one length"
            )
        action_dim = len(action_low)
        names = list(action_names) if action_names else [f"action_{i}" for i in range(action_dim)]
        if len(names) != action_dim:
            raise ValueError(f"action_names {names} must name {action_dim} action dimensions")
        self.save_hyperparameters()
        self.action_names = names
        self.encoder = build_encoder(
            encoder_arch, observation_shape, latent_dim, channels=encoder_channels
        )
        self.head = mlp(latent_dim, 2 * action_dim, hidden_dim, 2)
        self.register_buffer("action_low", torch.tensor(action_low, dtype=torch.float32))
        self.register_buffer("action_high", torch.tensor(action_high, dtype=torch.float32))
        self.val_r2 = R2Score(multioutput="raw_values")

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (B, W, C, S, S) -> the predicted action's mean and standard deviation,
        each (B, A), in the units of the action box."""
        mean, log_std = self.head(self.encoder(frames)).chunk(2, dim=-1)
        scale = (self.action_high - self.action_low) / 2
        centre = (self.action_high + self.action_low) / 2
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return centre + scale * mean, scale * log_std.exp()

    @torch.no_grad()
    def label(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions for windows, clipped to the box, and the model's standard deviation."""
        mean, std = self(frames)
        return torch.maximum(torch.minimum(mean, self.action_high), self.action_low), std

    def _loss(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self(batch.frames)
        return F.gaussian_nll_loss(mean, batch.action, std.square()), mean

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, mean = self._loss(batch)
        self.log("train/nll", loss, prog_bar=True)
        self.log("train/mae", (mean - batch.action).abs().mean())
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, mean = self._loss(batch)
        self.log("val/nll", loss, prog_bar=True)
        self.log("val/mae", (mean - batch.action).abs().mean())
        self.val_r2.update(mean, batch.action)

    def on_validation_epoch_end(self) -> None:
        r2 = self.val_r2.compute()
        self.val_r2.reset()
        for name, value in zip(self.action_names, r2, strict=True):
            self.log(f"val/r2/{name}", value, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


def load_idm(path: str | os.PathLike) -> InverseDynamicsModule:
    """An IDM checkpoint (``python cli.py fit --config configs/idm.yaml``), in eval mode;
    ValueError naming the file when it is not one."""
    return load_module(InverseDynamicsModule, path, "IDM checkpoint").eval()


__all__ = ["InverseDynamicsModule", "load_idm"]
