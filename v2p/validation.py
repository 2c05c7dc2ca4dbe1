"""The one place where inputs are checked as they enter (ECONOMICS.md section 9.5).

Every public function of :mod:`v2p.economics`, and every constructor of the envs, data modules,
models and callbacks, passes its arguments through these helpers as they enter, so a bad value
is reported by the name the caller used, with what was expected and the offending value, and
nothing downstream has to re-check or silently clip it. Pure numpy, so the economics can use it
without importing torch.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _expectation(ge: float | None, gt: float | None, le: float | None, whole: bool) -> str:
    kind = "finite and whole" if whole else "finite"
    lower = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
    if lower is not None and le is not None:
        return f"{kind} and in {lower}, {le}]"
    if ge is not None:
        return f"{kind} and >= {ge}"
    if gt is not None:
        return f"{kind} and > {gt}"
    if le is not None:
        return f"{kind} and <= {le}"
    return kind


def _not_numeric(name: str, value: Any) -> str:
    # Built only on failure: the repr of a large array costs more than the whole check.
    return f"{name} must be a real number or an array of real numbers, got {value!r}"


def check_real(
    name: str,
    value: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    whole: bool = False,
    allow_nan: bool = False,
) -> NDArray[np.float64]:
    """Return ``value`` as a float64 array (0-d for a scalar) after checking it elementwise.

    Raises ``ValueError`` naming ``name`` when any element is NaN, infinite, outside the given
    bounds (``ge``: >=, ``gt``: >, ``le``: <=) or, with ``whole``, not a whole number, or when
    ``value`` is not numeric. With ``allow_nan``, NaN elements pass (they stand for "not
    defined here", e.g. the cost of a shift that sold no work) and the other checks apply to
    the rest; infinities are still refused.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise ValueError(_not_numeric(name, value)) from exc
    # Integer or float dtypes only: numpy would quietly parse "1.5", and read True as 1.
    if array.dtype.kind not in "iuf":
        raise ValueError(_not_numeric(name, value))
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if allow_nan:
        bad &= ~np.isnan(array)  # NaN compares False below, so it fails no bound either
    if ge is not None:
        bad |= array < ge
    if gt is not None:
        bad |= array <= gt
    if le is not None:
        bad |= array > le
    if whole:
        bad |= np.isfinite(array) & (array != np.floor(array))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" at index {index}" if array.ndim else ""
        raise ValueError(
            f"{name} must be {_expectation(ge, gt, le, whole)}, got {float(array[index])}{where}"
        )
    return array


def check_scalar(
    name: str,
    value: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> float:
    """Like :func:`check_real` for a parameter that must be a single number; returns a float."""
    array = check_real(name, value, ge=ge, gt=gt, le=le)
    if array.ndim != 0:
        raise ValueError(f"{name} must be a single number, got an array of shape {array.shape}")
    return float(array)


def check_int(name: str, value: Any, *, ge: int) -> int:
    """Return ``value`` as an int after checking it is an integer (not a bool) and ``>= ge``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer >= {ge}, got {value!r}")
    if value < ge:
        raise ValueError(f"{name} must be an integer >= {ge}, got {value!r}")
    return int(value)


def check_not_above(
    name: str, value: NDArray[np.float64], bound_name: str, bound: NDArray[np.float64]
) -> None:
    """Raise ``ValueError`` naming both arguments where ``value > bound`` (after broadcasting)."""
    above = np.greater(value, bound)
    if above.any():
        index = tuple(int(i) for i in np.argwhere(above)[0])
        value_b, bound_b = np.broadcast_arrays(value, bound)
        where = f" at index {index}" if above.ndim else ""
        raise ValueError(
            f"{name} must be <= {bound_name}, got {name}={float(value_b[index])} > "
            f"{bound_name}={float(bound_b[index])}{where}"
        )
