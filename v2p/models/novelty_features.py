"""What the novelty model scores: an observation's latent, or a whole transition.

Observation novelty sees what the camera sees; a site whose dishes break more, or whose line
runs faster, can look the same on camera and differ only in what the robot's actions lead to.
A *transition* is the latent, the action, the step's outcome (its reward, the profit rate, and
its error rate) and the next latent, so the diffusion prior over transitions models the task's
dynamics as well as its looks. Its score is that of one step; a dynamics shift shows in counts
that accumulate, so a shift is also scored as a whole (:func:`per_episode_sums`, and
:class:`~v2p.models.outcome_test.OutcomeResidualTest`'s test of its summed outcomes).
"""

from __future__ import annotations

import torch

NOVELTY_INPUTS = ("observation", "transition")
OUTCOME_COLUMNS = 2  # a transition's outcome: the step's reward and error rate


def check_novelty_inputs(inputs: str) -> str:
    if inputs not in NOVELTY_INPUTS:
        raise ValueError(f"novelty inputs must be one of {NOVELTY_INPUTS}, got {inputs!r}")
    return inputs


def novelty_feature_dim(inputs: str, latent_dim: int, action_dim: int) -> int:
    """Size of what the novelty model scores for ``inputs``."""
    check_novelty_inputs(inputs)
    return latent_dim if inputs == "observation" else 2 * latent_dim + action_dim + OUTCOME_COLUMNS


def transition_latent_dim(feature_dim: int, action_dim: int) -> int:
    """The latent size of transitions of ``feature_dim`` features and ``action_dim`` actions."""
    latent_dim, odd = divmod(feature_dim - action_dim - OUTCOME_COLUMNS, 2)
    if latent_dim <= 0 or odd:
        raise ValueError(
            f"{feature_dim} features are not transitions of {action_dim}-D actions "
            f"(2 x latent_dim + action_dim + {OUTCOME_COLUMNS})"
        )
    return latent_dim


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


def per_episode_sums(
    values: torch.Tensor, episode: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each episode's sum of ``values`` (N, ...) -> (E, ...), and its count of rows (E,);
    ``episode`` (N,) ids in ``0 .. E - 1``."""
    if episode.shape != values.shape[:1] or episode.dtype != torch.long:
        raise ValueError(
            f"episode must be ({values.shape[0]},) long ids, got {tuple(episode.shape)} "
            f"{episode.dtype}"
        )
    count = torch.bincount(episode)
    total = values.new_zeros((len(count), *values.shape[1:]))
    total.index_add_(0, episode, values)
    return total, count


def episode_scores(scores: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
    """Mean score (E,) of each episode's transitions: ``scores`` (N,), ``episode`` (N,) ids in
    ``0 .. E - 1``."""
    total, count = per_episode_sums(scores, episode)
    return total / count.clamp_min(1)


__all__ = [
    "NOVELTY_INPUTS",
    "OUTCOME_COLUMNS",
    "episode_scores",
    "novelty_feature_dim",
    "per_episode_sums",
    "transition_features",
    "transition_latent_dim",
]
