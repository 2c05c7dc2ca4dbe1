"""Actor and twin critic of Soft Actor-Critic: plain nn.Modules over the encoder's latent ``z``.

The policy is modality-agnostic: both networks see only ``z`` (B, latent_dim), never the
observation, so state, video and physics tasks differ only in the encoder.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# Bounds of the Gaussian's log standard deviation, as in CleanRL sac_continuous_action.py.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def mlp(
    in_dim: int, out_dim: int, hidden_dim: int, hidden_layers: int, layer_norm: bool = False
) -> nn.Sequential:
    """Linear + ReLU hidden layers (LayerNorm before each ReLU with ``layer_norm``)."""
    layers: list[nn.Module] = []
    for i in range(hidden_layers):
        layers.append(nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden_dim))
        layers.append(nn.ReLU())
    layers.append(nn.Linear(hidden_dim if hidden_layers else in_dim, out_dim))
    return nn.Sequential(*layers)


def squashed_gaussian(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    noise: torch.Tensor,
    action_scale: torch.Tensor,
    action_bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The action ``tanh(mean + std * noise)`` rescaled to the box, and its log-probability
    (summed over the last dimension).

    The Gaussian log-density minus the log-det of tanh and of the affine rescale (SAC paper,
    Haarnoja et al. 2018, appendix C), in the softplus form for stability.
    """
    std = log_std.exp()
    u = mean + std * noise
    # tanh before the log-density, and (u - mean) / std rather than noise: the order of the
    # operations sets the order autograd sums gradients in, and this one is what every
    # result so far was trained with.
    squashed = torch.tanh(u)
    log_prob = (
        -0.5 * ((u - mean) / std).pow(2)
        - log_std
        - 0.5 * math.log(2 * math.pi)
        - 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        - action_scale.log()
    ).sum(-1)
    return squashed * action_scale + action_bias, log_prob


def box_affine(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and centre of the affine map from ``[-1, 1]`` onto the box ``[low, high]``."""
    return (high - low) / 2.0, (high + low) / 2.0


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy, rescaled to the action box ``[low, high]``.

    ``latent_scale`` multiplies ``z`` before the first layer (see :class:`TwinCritic`).
    """

    def __init__(
        self,
        latent_dim: int,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        hidden_dim: int = 256,
        hidden_layers: int = 2,
        latent_scale: float = 1.0,
    ) -> None:
        super().__init__()
        action_dim = action_low.numel()
        self.net = mlp(latent_dim, 2 * action_dim, hidden_dim, hidden_layers)
        self.latent_scale = latent_scale
        # Constants live in buffers so Lightning moves them with the module.
        scale, bias = box_affine(action_low, action_high)
        self.register_buffer("action_scale", scale)
        self.register_buffer("action_bias", bias)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(z * self.latent_scale).chunk(2, dim=-1)  # (B, A) each
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action (B, A) in the box and its log-probability (B,)."""
        mean, log_std = self(z)
        noise = torch.randn_like(mean)
        return squashed_gaussian(mean, log_std, noise, self.action_scale, self.action_bias)

    def deterministic(self, z: torch.Tensor) -> torch.Tensor:
        """The mean action (B, A) in the box: what evaluation runs."""
        mean, _ = self(z)
        return torch.tanh(mean) * self.action_scale + self.action_bias


class TwinCritic(nn.Module):
    """Two Q-networks ``Q(z, a)``; the minimum curbs overestimation (TD3, Fujimoto et al. 2018).

    ``latent_scale`` multiplies ``z``; with the action box ``action_low``/``action_high`` given,
    the critics read actions mapped from the box to ``[-1, 1]`` (as Stable-Baselines3 feeds
    its critics), otherwise as they are.

    Why (SACModule's ``unit_head_inputs`` sets both): every encoder ends in LayerNorm, whose
    unit-variance features give ``z`` a norm of ``sqrt(latent_dim)``; at that scale the latent
    drowns the action in the critics' first layer (2 of 66 inputs on the dishwashing tasks),
    and the critics are slow to learn how the action matters. Measured on the state task
    (docs/benchmarks.md): 95% of the ceiling at a median of 1,400 env steps over 10 seeds,
    against 1,850; late in training three seeds cannot tell the two apart.

    ``layer_norm`` puts LayerNorm in the hidden layers: RLPD (Ball et al. 2023) found it keeps
    the critics from extrapolating wildly to actions the offline data never took.
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        hidden_dim: int = 256,
        hidden_layers: int = 2,
        latent_scale: float = 1.0,
        action_low: torch.Tensor | None = None,
        action_high: torch.Tensor | None = None,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.q1 = mlp(latent_dim + action_dim, 1, hidden_dim, hidden_layers, layer_norm)
        self.q2 = mlp(latent_dim + action_dim, 1, hidden_dim, hidden_layers, layer_norm)
        self.latent_scale = latent_scale
        if (action_low is None) != (action_high is None):
            raise ValueError("give TwinCritic both action_low and action_high, or neither")
        self.normalise_actions = action_low is not None
        if self.normalise_actions:
            # Not persistent: derived from the box, and state dicts keep the same keys.
            scale, bias = box_affine(action_low, action_high)
            self.register_buffer("action_scale", scale, persistent=False)
            self.register_buffer("action_bias", bias, persistent=False)

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.normalise_actions:
            action = (action - self.action_bias) / self.action_scale  # the box -> [-1, 1]
        za = torch.cat([z * self.latent_scale, action], dim=-1)  # (B, latent_dim + A)
        return self.q1(za).squeeze(-1), self.q2(za).squeeze(-1)  # (B,), (B,)
