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

    The heads fall into ``groups`` contiguous blocks of ``heads // groups``; every head of a
    block starts from the same weights (one ``nn.Linear``-style draw per block), so heads of a
    block that go on to see the same data stay equal: their differences come from what they
    trained on, not from their starting points. Twin critics are two blocks, so that the two
    critics of a head differ.
    """

    def __init__(
        self,
        heads: int,
        in_dim: int,
        out_dim: int,
        generator: torch.Generator | None = None,
        groups: int = 1,
    ) -> None:
        super().__init__()
        if heads % groups:
            raise ValueError(f"heads ({heads}) must be a multiple of groups ({groups})")
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default (kaiming uniform, a = sqrt(5))
        weight = torch.empty(groups, in_dim, out_dim).uniform_(-bound, bound, generator=generator)
        bias = torch.empty(groups, 1, out_dim).uniform_(-bound, bound, generator=generator)
        per_group = heads // groups
        self.weight = nn.Parameter(weight.repeat_interleave(per_group, dim=0))
        self.bias = nn.Parameter(bias.repeat_interleave(per_group, dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def ensemble_mlp(
    heads: int,
    in_dim: int,
    out_dim: int,
    hidden_dim: int,
    hidden_layers: int,
    generator: torch.Generator | None = None,
    groups: int = 1,
) -> nn.Sequential:
    """An MLP per head, ReLU between layers: (H, B, in_dim) -> (H, B, out_dim).

    ``generator`` draws the initial weights (the global RNG when None); ``groups`` as in
    :class:`EnsembleLinear`."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(hidden_layers):
        layers += [EnsembleLinear(heads, width, hidden_dim, generator, groups), nn.ReLU()]
        width = hidden_dim
    layers.append(EnsembleLinear(heads, width, out_dim, generator, groups))
    return nn.Sequential(*layers)
