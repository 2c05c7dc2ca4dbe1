"""Is a shift's total outcome what its actions lead to on the training task?

A site whose dishes break more, or whose line runs faster, can look the same on camera; what
differs is what the robot's actions lead to, and one step shows little of it (a step's attempts
are a Poisson draw of about one). Over a shift the differences accumulate, so the test is at the
episode level, as a goodness-of-fit test of the shift's summed outcomes:

1. A regression (a small MLP) predicts a step's outcome (the standardised reward and error
   rate of :func:`~v2p.models.novelty_features.transition_features`) from its latent and
   action, trained on in-distribution transitions.
2. Its residuals on in-distribution transitions give a mean and covariance per step
   (the calibration).
3. A shift's statistic is the squared Mahalanobis norm of its summed, centred residuals under
   ``n`` times that covariance: chi-squared with one degree of freedom per outcome column when
   the steps' residuals are independent given the latents and actions, and large when the
   shift's outcomes are not what its actions lead to. The Wilson-Hilferty transform makes it
   a standard normal z, so it compares with the diffusion prior's episode z
   (:meth:`~v2p.models.novelty.LatentDiffusionNovelty.episode_statistics`).

The whitened norm (not a sum of per-column squared z-scores) counts a shift against the
columns' correlation: errors cost reward, so a shift that raises the reward without raising
the error rate moves along a direction the training task rarely shows.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from v2p.models.novelty_features import OUTCOME_COLUMNS, per_episode_sums


class OutcomeResidualTest(nn.Module):
    """Predicts a transition's outcome from its latent and action, and tests a shift's sums.

    Args:
        latent_dim, action_dim: the sizes of a transition's latent and action.
        hidden_dim: width of the regression's two hidden layers.

    Every method takes *standardised* transition features (N, 2 latent_dim + action_dim + 2)
    (the novelty model's normaliser applied), so the outcome columns are in units of their
    in-distribution spread.
    """

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int = 128) -> None:
        super().__init__()
        self.inputs = latent_dim + action_dim  # the latent and action lead the features
        self.outcome = slice(self.inputs, self.inputs + OUTCOME_COLUMNS)
        self.net = nn.Sequential(
            nn.Linear(self.inputs, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, OUTCOME_COLUMNS),
        )
        # Calibration: the residuals' mean and covariance per step on in-distribution data.
        self.register_buffer("residual_mean", torch.zeros(OUTCOME_COLUMNS))
        self.register_buffer("residual_cov", torch.eye(OUTCOME_COLUMNS))

    def residuals(self, x: torch.Tensor) -> torch.Tensor:
        """Outcome minus its prediction, (N, C)."""
        return x[:, self.outcome] - self.net(x[:, : self.inputs])

    def loss(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared residual; with ``weight`` (N,) of 0s and 1s, over the kept rows."""
        per_row = self.residuals(x).square().mean(-1)  # (N,)
        if weight is None:
            return per_row.mean()
        return (weight * per_row).sum() / weight.sum().clamp_min(1.0)

    @torch.no_grad()
    def set_moments(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        """Calibrate from in-distribution residuals' mean (C,) and covariance (C, C)."""
        self.residual_mean.copy_(mean)
        self.residual_cov.copy_(cov)

    @torch.no_grad()
    def update_moments(self, mean: torch.Tensor, cov: torch.Tensor, rate: torch.Tensor) -> None:
        """Move the calibration towards a batch's residual moments by ``rate`` (online use)."""
        self.set_moments(self.residual_mean.lerp(mean, rate), self.residual_cov.lerp(cov, rate))

    @torch.no_grad()
    def episode_z(self, x: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
        """The test's standard-normal statistic (E,) of each episode's transitions; ``episode``
        (N,) ids in ``0 .. E - 1``; higher = less like the training task's outcomes."""
        residual = (self.residuals(x) - self.residual_mean.to(x.dtype)).float()  # (N, C)
        total, count = per_episode_sums(residual, episode)  # (E, C), (E,)
        cov = self.residual_cov.float()
        # A ridge so a column the regression predicts exactly cannot blow the inverse up.
        ridge = (
            1e-4 * cov.diagonal().mean().clamp_min(1e-6) * torch.eye(len(cov), device=cov.device)
        )
        precision = torch.linalg.inv(cov + ridge)
        chi2 = (total @ precision * total).sum(-1) / count.clamp_min(1)  # (E,)
        return wilson_hilferty(chi2, OUTCOME_COLUMNS).to(x.dtype)


def wilson_hilferty(chi2: torch.Tensor, dof: int) -> torch.Tensor:
    """A chi-squared(dof) statistic as an approximately standard normal z (Wilson & Hilferty
    1931): monotone, so it orders shifts as the statistic does."""
    v = 2.0 / (9.0 * dof)
    return ((chi2 / dof).clamp_min(0).pow(1.0 / 3.0) - (1.0 - v)) / v**0.5


__all__ = ["OutcomeResidualTest", "wilson_hilferty"]
