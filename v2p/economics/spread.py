"""Spread allocation by contribution and customer pricing (ECONOMICS.md sections 5 and 6)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from v2p.economics._numeric import Real, RealLike, divide_or_zero, scalar_or_array
from v2p.validation import check_not_above, check_real


class SpreadAllocation(NamedTuple):
    """How one shift's spread over the human wage is split (section 5).

    Each field is a float64 scalar for scalar inputs, else an array of the broadcast shape.
    """

    wage_parity: Real  # w_r / w_h (0 where w_h == 0)
    s_cust: Real  # customer's contribution share (0 when there is no spread)
    s_plat: Real  # platform's share, 1 - s_cust (0 when there is no spread)
    spread: Real  # w_r - w_h [$/hr]
    spread_value: Real  # SV = spread * H [$]
    rebate: Real  # R = s_cust * SV [$], to the customer
    captured: Real  # C = s_plat * SV [$], to the platform


def _shares(
    delta_mpl_cust: np.ndarray, delta_mpl_total: np.ndarray, eps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    denominator = delta_mpl_total + eps
    # A non-positive total change means the robot did not improve: nothing is credited to the
    # customer's data, so s_cust = 0 there (section 5), which divide_or_zero gives directly.
    s_cust = np.clip(divide_or_zero(delta_mpl_cust, denominator), 0.0, 1.0)
    return s_cust, 1.0 - s_cust


def contribution_shares(
    delta_mpl_cust: RealLike, delta_mpl_total: RealLike, eps: RealLike = 1e-6
) -> tuple[Real, Real]:
    """Contribution shares ``(s_cust, s_plat)`` of the spread (section 5).

    ``s_cust = clip(dMPL_cust / (dMPL_total + eps), 0, 1)`` if ``dMPL_total + eps > 0`` else 0,
    and ``s_plat = 1 - s_cust``. ``delta_mpl_cust`` must be >= 0; ``delta_mpl_total`` may be
    negative (the robot got worse between measurements).
    """
    delta_mpl_cust = check_real("delta_mpl_cust", delta_mpl_cust, ge=0)
    delta_mpl_total = check_real("delta_mpl_total", delta_mpl_total)
    eps = check_real("eps", eps, ge=0)
    s_cust, s_plat = _shares(delta_mpl_cust, delta_mpl_total, eps)
    return scalar_or_array(s_cust), scalar_or_array(s_plat)


def allocate_spread(
    w_r: RealLike,
    w_h: RealLike,
    hours: RealLike,
    delta_mpl_cust: RealLike,
    delta_mpl_total: RealLike,
    eps: RealLike = 1e-6,
    eps_parity: RealLike = 0.05,
) -> SpreadAllocation:
    """Split the robot's wage spread over the human benchmark by contribution (section 5).

    With ``parity = w_r / w_h``: if ``w_h <= 0`` or ``parity <= 1 + eps_parity`` there is no
    spread, every amount is 0 and both shares are reported as 0. Otherwise ``spread = w_r - w_h``
    [$/hr], ``spread_value = spread * hours`` [$], ``rebate = s_cust * spread_value`` and
    ``captured = s_plat * spread_value``. ``w_r`` may be negative (a robot that destroys more
    than it makes); ``w_h`` must be >= 0.
    """
    w_r = check_real("w_r", w_r)
    w_h = check_real("w_h", w_h, ge=0)
    hours = check_real("hours", hours, ge=0)
    delta_mpl_cust = check_real("delta_mpl_cust", delta_mpl_cust, ge=0)
    delta_mpl_total = check_real("delta_mpl_total", delta_mpl_total)
    eps = check_real("eps", eps, ge=0)
    eps_parity = check_real("eps_parity", eps_parity, ge=0)

    parity = divide_or_zero(w_r, w_h)
    has_spread = (w_h > 0) & (parity > 1.0 + eps_parity)
    s_cust, s_plat = _shares(delta_mpl_cust, delta_mpl_total, eps)
    s_cust = np.where(has_spread, s_cust, 0.0)
    s_plat = np.where(has_spread, s_plat, 0.0)
    spread = np.where(has_spread, w_r - w_h, 0.0)
    spread_value = spread * hours
    rebate = s_cust * spread_value
    captured = s_plat * spread_value
    # Broadcast every field to one shape, so a record built from mixed scalar/array inputs
    # has fields that can be stacked or written as ledger columns side by side.
    fields = np.broadcast_arrays(parity, s_cust, s_plat, spread, spread_value, rebate, captured)
    return SpreadAllocation(*(scalar_or_array(np.array(field)) for field in fields))


def customer_cost(
    w_r: RealLike,
    rebate: RealLike,
    hours: RealLike,
    w_h: RealLike,
    base_fee: RealLike = 0.0,
    floor_margin: RealLike = 0.0,
) -> Real:
    """What the customer pays per robot-hour [$/hr] (section 6).

    ``raw = max(0, w_r - R / H) + base_fee``, raised to ``floor_margin`` when that is > 0, and
    ``cost = min(raw, w_h)``: the customer never pays more than a human would cost, which is
    the consumer-surplus guarantee (section 9.1). ``R / H`` is taken as 0 where ``hours == 0``.
    """
    w_r = check_real("w_r", w_r)
    rebate = check_real("rebate", rebate, ge=0)
    hours = check_real("hours", hours, ge=0)
    w_h = check_real("w_h", w_h, ge=0)
    base_fee = check_real("base_fee", base_fee, ge=0)
    floor_margin = check_real("floor_margin", floor_margin, ge=0)
    raw = np.maximum(0.0, w_r - divide_or_zero(rebate, hours)) + base_fee
    # raw >= 0 already, so max(raw, floor_margin) is the spec's "if floor_margin > 0" branch
    # and a no-op when floor_margin == 0.
    raw = np.maximum(raw, floor_margin)
    return scalar_or_array(np.minimum(raw, w_h))


def consumer_surplus(w_h: RealLike, cost: RealLike) -> Real:
    """Consumer surplus ``max(0, w_h - cost)`` [$/hr] (section 6)."""
    w_h = check_real("w_h", w_h, ge=0)
    cost = check_real("cost", cost, ge=0)
    return scalar_or_array(np.maximum(0.0, w_h - cost))


def deflation_ratio(cost: RealLike, w_h: RealLike) -> Real:
    """Deflation ratio ``rho = cost / w_h`` (section 6): robot vs human marginal cost.

    ``w_h`` must be > 0, and ``cost`` <= ``w_h`` as :func:`customer_cost` guarantees; a larger
    cost raises rather than report ``rho > 1``, which section 9.4 rules out.
    """
    cost = check_real("cost", cost, ge=0)
    w_h = check_real("w_h", w_h, gt=0)
    check_not_above("cost", cost, "w_h", w_h)
    return scalar_or_array(cost / w_h)
