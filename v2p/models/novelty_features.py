"""What the novelty model scores: an observation's latent, or a whole transition.

Observation novelty sees what the camera sees; a site whose dishes break more, or whose line
runs faster, can look the same on camera and differ only in what the robot's actions lead to.
A *transition* is the latent, the action, the step's outcome (its reward, the profit rate, and
its error rate) and the next latent, so the diffusion prior over transitions models the task's
dynamics as well as its looks. Its score is that of one step; a dynamics shift shows in counts
that accumulate, so :func:`episode_scores` averages a shift's steps.
"""

from __future__ import annotations

import torch

NOVELTY_INPUTS = ("observation", "transition")


def check_novelty_inputs(inputs: str) -> str:
    if inputs not in NOVELTY_INPUTS:
        raise ValueError(f"novelty inputs must be one of {NOVELTY_INPUTS}, got {inputs!r}")
    return inputs


def novelty_feature_dim(inputs: str, latent_dim: int, action_dim: int) -> int:
    """Size of what the novelty model scores for ``inputs``."""
    check_novelty_inputs(inputs)
    return latent_dim if inputs == "observation" else 2 * latent_dim + action_dim + 2


def transition_features(
    z: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    err: torch.Tensor,
    z_next: torch.Tensor,
) -> torch.Tensor:
    """(B, 2 D + A + 2): the latent (B, D), action (B, A), reward (B,), error rate (B,) and next
    latent (B, D) of each transition, in the latent's dtype (the novelty model standardises
    every column on its training data, so their units do not matter)."""
    dtype = z.dtype
    outcome = torch.stack([reward.to(dtype), err.to(dtype)], dim=1)
    return torch.cat([z, action.to(dtype), outcome, z_next.to(dtype)], dim=1)


def episode_scores(scores: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
    """Mean score (E,) of each episode's transitions: ``scores`` (N,), ``episode`` (N,) ids in
    ``0 .. E - 1``."""
    count = torch.bincount(episode)
    total = torch.zeros(len(count), dtype=scores.dtype, device=scores.device)
    total.index_add_(0, episode, scores)
    return total / count.clamp_min(1)


__all__ = [
    "NOVELTY_INPUTS",
    "episode_scores",
    "novelty_feature_dim",
    "transition_features",
]
