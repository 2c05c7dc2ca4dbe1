"""Many small MLPs evaluated as one: a leading head dimension on every weight.

Each head has weights of its own, and every layer runs the heads together as one batched
matrix product (``torch.baddbmm``), the way ensemble critics are written in MBPO and REDQ: the
heads of an attribution ensemble cost a few kernels per layer, not a loop over heads.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """``heads`` independent affine maps: (H, B, in) -> (H, B, out).

    Every head starts from the same weights (those of one ``nn.Linear``-style initialisation),
    so heads that go on to see the same data stay equal: differences between heads come from
    what they trained on, not from their starting points.
    """

    def __init__(
        self, heads: int, in_dim: int, out_dim: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default (kaiming uniform, a = sqrt(5))
        weight = torch.empty(in_dim, out_dim).uniform_(-bound, bound, generator=generator)
        bias = torch.empty(1, out_dim).uniform_(-bound, bound, generator=generator)
        self.weight = nn.Parameter(weight.expand(heads, -1, -1).clone())
        self.bias = nn.Parameter(bias.expand(heads, -1, -1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def ensemble_mlp(
    heads: int,
    in_dim: int,
    out_dim: int,
    hidden_dim: int,
    hidden_layers: int,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """An MLP per head, ReLU between layers: (H, B, in_dim) -> (H, B, out_dim).

    ``generator`` draws the initial weights (the global RNG when None)."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(hidden_layers):
        layers += [EnsembleLinear(heads, width, hidden_dim, generator), nn.ReLU()]
        width = hidden_dim
    layers.append(EnsembleLinear(heads, width, out_dim, generator))
    return nn.Sequential(*layers)
