"""Input checks and conversions shared by every encoder."""

from __future__ import annotations

import torch


def format_obs_shape(obs_shape: tuple[int, ...]) -> str:
    """`(8, 3, 64, 64)` -> `"(B, 8, 3, 64, 64)"`."""
    return "(" + ", ".join(["B", *(str(d) for d in obs_shape)]) + ")"


def check_obs_shape(owner: str, x: torch.Tensor, obs_shape: tuple[int, ...]) -> None:
    """Raise ValueError unless `x` is `(B, *obs_shape)`.

    Compares Python shapes only (no host sync), so it is safe inside a training step.
    """
    if x.dim() != len(obs_shape) + 1 or tuple(x.shape[1:]) != obs_shape:
        raise ValueError(
            f"{owner} expects observations of shape {format_obs_shape(obs_shape)}, "
            f"got {tuple(x.shape)}"
        )


def clip_to_unit_float(owner: str, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> `dtype` in [0, 1]; floating clips pass through unchanged.

    Floating input is taken to be in [0, 1] already; checking its range would need a host sync.
    `dtype` is the weights' dtype, so uint8 clips also work under 'bf16-true' or 'double'
    precision, where Lightning converts floating inputs but leaves integer ones alone.
    """
    if x.dtype == torch.uint8:
        return x.to(dtype) / 255.0
    if x.is_floating_point():
        return x
    raise ValueError(
        f"{owner} expects uint8 pixels in [0, 255] or floats in [0, 1], got dtype {x.dtype}"
    )


def check_positive(owner: str, **values: int) -> None:
    """Raise ValueError naming the first argument that is not a positive int."""
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{owner} needs a positive {name}, got {name}={value}")


def check_clip_shape(owner: str, clip_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Validate a `(T, C, H, W)` clip shape and return it as a tuple of ints."""
    shape = tuple(int(d) for d in clip_shape)
    if len(shape) != 4 or min(shape) <= 0:
        raise ValueError(f"{owner} needs clip_shape (T, C, H, W) of 4 positive sizes, got {shape}")
    t, c, h, w = shape
    return t, c, h, w
