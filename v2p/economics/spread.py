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
    rebate: Real  # R = (s_cust + pi * s_plat) * SV [$], to the customer
    captured: Real  # C = (1 - pi) * s_plat * SV [$], kept by the platform


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
    pass_through: RealLike = 0.5,
) -> SpreadAllocation:
    """Split the robot's wage spread over the human benchmark by contribution (section 5).

    With ``parity = w_r / w_h``: if ``w_h <= 0`` or ``parity <= 1 + eps_parity`` there is no
    spread, every amount is 0 and both shares are reported as 0. Otherwise ``spread = w_r - w_h``
    [$/hr], ``spread_value = spread * hours`` [$], and (amended 2026-12-01)
    ``rebate = (s_cust + pass_through * s_plat) * spread_value`` and
    ``captured = (1 - pass_through) * s_plat * spread_value``: ``pass_through`` (``pi``, in
    [0, 1]) is the part of the platform's share that competition passes on to customers, 0 for a
    platform with no competitor. ``w_r`` may be negative (a robot that destroys more than it
    makes); ``w_h`` must be >= 0.
    """
    w_r = check_real("w_r", w_r)
    w_h = check_real("w_h", w_h, ge=0)
    hours = check_real("hours", hours, ge=0)
    delta_mpl_cust = check_real("delta_mpl_cust", delta_mpl_cust, ge=0)
    delta_mpl_total = check_real("delta_mpl_total", delta_mpl_total)
    eps = check_real("eps", eps, ge=0)
    eps_parity = check_real("eps_parity", eps_parity, ge=0)
    pass_through = check_real("pass_through", pass_through, ge=0, le=1)

    parity = divide_or_zero(w_r, w_h)
    has_spread = (w_h > 0) & (parity > 1.0 + eps_parity)
    s_cust, s_plat = _shares(delta_mpl_cust, delta_mpl_total, eps)
    s_cust = np.where(has_spread, s_cust, 0.0)
    s_plat = np.where(has_spread, s_plat, 0.0)
    spread = np.where(has_spread, w_r - w_h, 0.0)
    spread_value = spread * hours
    captured = (1.0 - pass_through) * s_plat * spread_value
    # The rebate is the rest of the spread value rather than its own product, so that
    # rebate + captured == spread_value holds to rounding (section 9.2) for every pass-through.
    rebate = spread_value - captured
    # Broadcast every field to one shape, so a record built from mixed scalar/array inputs
    # has fields that can be stacked or written as ledger columns side by side.
    fields = np.broadcast_arrays(parity, s_cust, s_plat, spread, spread_value, rebate, captured)
    return SpreadAllocation(*(scalar_or_array(np.array(field)) for field in fields))


def customer_cost(
    w_r: RealLike,
    rebate: RealLike,
    hours: RealLike,
    w_h: RealLike,
    mp_r: RealLike,
    mp_h: RealLike,
    err: RealLike,
    damage_cost: RealLike,
    base_fee: RealLike = 0.0,
    floor_margin: RealLike = 0.0,
) -> Real:
    """What the customer pays per effective labor hour [$/ELH] (section 6, amended 2026-12-01).

    Per robot-hour the platform bills ``bill = max(0, w_r - R / H) + base_fee``, raised to
    ``floor_margin`` when that is > 0, and the customer also bears the damage,
    ``spend = bill + damage_cost * err * mp_r``. One robot-hour delivers ``q = mp_r / mp_h``
    effective labor hours, and ``cost = min(spend / q, w_h)``: the customer never pays more for
    an hour's worth of work than a human would cost (section 9.1); where the cap binds the
    platform absorbs the gap. ``R / H`` is taken as 0 where ``hours == 0``. Where ``mp_r == 0``
    no work was sold and the cost is NaN (an empty ledger cell), never a made-up number.
    """
    w_r = check_real("w_r", w_r)
    rebate = check_real("rebate", rebate, ge=0)
    hours = check_real("hours", hours, ge=0)
    w_h = check_real("w_h", w_h, ge=0)
    mp_r = check_real("mp_r", mp_r, ge=0)
    mp_h = check_real("mp_h", mp_h, gt=0)
    err = check_real("err", err, ge=0, le=1)
    damage_cost = check_real("damage_cost", damage_cost, ge=0)
    base_fee = check_real("base_fee", base_fee, ge=0)
    floor_margin = check_real("floor_margin", floor_margin, ge=0)
    bill = np.maximum(0.0, w_r - divide_or_zero(rebate, hours)) + base_fee
    # bill >= 0 already, so max(bill, floor_margin) is the spec's "if floor_margin > 0" branch
    # and a no-op when floor_margin == 0.
    bill = np.maximum(bill, floor_margin)
    spend = bill + damage_cost * err * mp_r  # [$ per robot-hour]
    # spend / q written as spend * mp_h / mp_r, so a tiny mp_r gives a huge cost (capped at
    # w_h below) instead of q underflowing to 0; overflow to inf is harmless under the cap.
    shape = np.broadcast_shapes(spend.shape, mp_h.shape, mp_r.shape, w_h.shape)
    per_elh = np.full(shape, np.nan)
    with np.errstate(over="ignore"):
        np.divide(spend * mp_h, mp_r, out=per_elh, where=mp_r > 0)
    return scalar_or_array(np.minimum(per_elh, w_h))  # NaN where mp_r == 0 stays NaN


def consumer_surplus(w_h: RealLike, cost: RealLike) -> Real:
    """Consumer surplus ``max(0, w_h - cost)`` [$/ELH] (section 6); NaN where ``cost`` is NaN.

    A NaN ``cost`` is :func:`customer_cost`'s "no work sold", so the surplus is not defined
    there either; an infinite or negative ``cost`` still raises.
    """
    w_h = check_real("w_h", w_h, ge=0)
    cost = check_real("cost", cost, ge=0, allow_nan=True)
    return scalar_or_array(np.maximum(0.0, w_h - cost))  # np.maximum propagates NaN


def deflation_ratio(cost: RealLike, w_h: RealLike) -> Real:
    """Deflation ratio ``rho = cost / w_h`` (section 6): robot vs human cost of an ELH.

    ``w_h`` must be > 0, and ``cost`` <= ``w_h`` as :func:`customer_cost` guarantees; a larger
    cost raises rather than report ``rho > 1``, which section 9.4 rules out. A NaN ``cost``
    (no work sold) gives a NaN ``rho``.
    """
    cost = check_real("cost", cost, ge=0, allow_nan=True)
    w_h = check_real("w_h", w_h, gt=0)
    check_not_above("cost", cost, "w_h", w_h)  # NaN > w_h is False: NaN passes
    return scalar_or_array(cost / w_h)
