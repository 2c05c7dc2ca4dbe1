"""Linear probe: how much of the task state a frozen latent holds, as a ridge regression's R^2.

Used by pretraining validation (``val/probe_r2``) and by the pretraining benchmark to compare a
pretrained encoder with a randomly initialised one on the same clips.
"""

from __future__ import annotations

import torch
from torchmetrics.regression import R2Score


def fit_ridge(x: torch.Tensor, y: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression ``y ~ x @ w + b`` in closed form, in float64 for a stable solve.

    Features are standardised inside so one ``ridge`` suits latents of any scale; the returned
    ``(w, b)`` apply to the raw features.
    """
    x, y = x.double(), y.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = (x - mean) / std
    y_mean = y.mean(0)
    gram = xs.T @ xs + ridge * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    w_std = torch.linalg.solve(gram, xs.T @ (y - y_mean))
    w = w_std / std[:, None]
    return w, y_mean - mean @ w


def linear_probe_r2(
    latents: torch.Tensor,
    states: torch.Tensor,
    episodes: torch.Tensor,
    ridge: float = 1e-3,
    min_rows: int = 16,
) -> torch.Tensor | None:
    """R^2 of the task state predicted from frozen latents, fitted and scored on disjoint episodes.

    Rows are split by episode parity (even episodes fit the ridge, odd ones score it), so a
    probe never scores clips of an episode it was fitted on. Rows whose state is unknown (NaN,
    e.g. clips from video files) are dropped. R^2 is averaged over state dimensions weighted by
    their variance (torchmetrics ``variance_weighted``), so a constant dimension neither
    divides by zero nor counts. Returns None when either side has fewer than ``min_rows``.
    """
    if states.ndim != 2 or states.shape[1] == 0:
        return None
    known = ~torch.isnan(states).any(dim=1)
    latents, states, episodes = latents[known], states[known], episodes[known]
    fit = episodes % 2 == 0
    if int(fit.sum()) < min_rows or int((~fit).sum()) < min_rows:
        return None
    w, b = fit_ridge(latents[fit], states[fit], ridge)
    predicted = latents[~fit].double() @ w + b
    r2 = R2Score(multioutput="variance_weighted").to(latents.device)
    return r2(predicted.float(), states[~fit].float())
