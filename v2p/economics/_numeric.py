"""Shape conventions shared by the economics functions.

Functions accept python scalars or numpy arrays (broadcast together) and hand back a numpy
float64 scalar (a subclass of ``float``) for scalar inputs and an ndarray for array inputs.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

RealLike: TypeAlias = float | int | np.floating[Any] | np.integer[Any] | NDArray[Any]
"""What the economics functions accept: a number or an array of numbers."""

Real: TypeAlias = float | NDArray[np.float64]
"""What they return: a float64 scalar (a ``float``) for scalar inputs, else an ndarray."""


def scalar_or_array(array: NDArray[np.float64]) -> Real:
    """Unwrap a 0-d result to a float64 scalar; leave higher-rank arrays as they are."""
    return array[()]


def divide_or_zero(
    numerator: NDArray[np.float64], denominator: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``numerator / denominator`` where the denominator is > 0, else 0 (no divide-by-0 warning)."""
    shape = np.broadcast_shapes(numerator.shape, denominator.shape)
    out = np.zeros(shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out
