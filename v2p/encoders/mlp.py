"""MLP encoder for state-vector observations."""

from __future__ import annotations

import torch
import torch.nn as nn

from v2p.encoders.common import check_obs_shape, check_positive


class MLPEncoder(nn.Module):
    """`(B, obs_dim)` float state -> `(B, latent_dim)` latent.

    `num_layers` counts the Linear layers: `num_layers - 1` hidden layers of `hidden_dim`
    (Linear + ReLU), then a Linear to `latent_dim`, then LayerNorm.
    """

    def __init__(
        self,
        obs_dim: int,
        latent_dim: int = 64,
        hidden_dim: int = 256,
        num_layers: int = 2,
    ) -> None:
        super().__init__()
        check_positive(
            "MLPEncoder",
            obs_dim=obs_dim,
            latent_dim=latent_dim,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
        )
        self.obs_shape: tuple[int, ...] = (obs_dim,)
        self.latent_dim = latent_dim

        layers: list[nn.Module] = []
        in_dim = obs_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(in_dim, hidden_dim), nn.ReLU()]
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, latent_dim))
        # The critic's gradient trains this encoder (DESIGN.md, shared encoder). SAC-AE
        # (Yarats et al. 2019, arXiv:1910.01741) and DrQ (Kostrikov et al. 2020,
        # arXiv:2004.13649) end such an encoder in LayerNorm so the latent scale cannot drift
        # as the critic loss moves it. They add a tanh after it; we stop at LayerNorm so the
        # novelty model's diffusion over latents sees unsquashed, roughly unit-scale values.
        layers.append(nn.LayerNorm(latent_dim))
        self.net = nn.Sequential(*layers)

    @property
    def trunk(self) -> nn.Module:
        """The hidden layers: what ``freeze_encoder="trunk"`` keeps fixed."""
        return self.net[:-2]

    @property
    def head(self) -> nn.Module:
        """The last Linear and the LayerNorm."""
        return self.net[-2:]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        check_obs_shape("MLPEncoder", obs, self.obs_shape)  # (B, obs_dim)
        if not obs.is_floating_point():
            raise ValueError(f"MLPEncoder expects floating-point observations, got {obs.dtype}")
        return self.net(obs)  # (B, latent_dim)
