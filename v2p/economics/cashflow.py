"""Fleet cash flows from the platform's captured spread (ECONOMICS.md section 8)."""

from __future__ import annotations

import numpy as np

from v2p.economics._numeric import Real, RealLike, scalar_or_array
from v2p.validation import check_real


def annual_cash_flow(
    captured_per_hour: RealLike, hours_per_year: RealLike, robots: RealLike = 1
) -> Real:
    """``annual = captured_per_hour * hours_per_year * robots`` [$/yr] (section 8)."""
    captured_per_hour = check_real("captured_per_hour", captured_per_hour, ge=0)
    hours_per_year = check_real("hours_per_year", hours_per_year, ge=0)
    robots = check_real("robots", robots, ge=0)
    return scalar_or_array(captured_per_hour * hours_per_year * robots)


def fleet_npv(
    captured_per_hour: RealLike,
    hours_per_year: RealLike,
    robots: RealLike,
    years: RealLike,
    discount_rate: RealLike,
) -> Real:
    """Net present value ``sum_{y=1..years} annual / (1 + r)**y`` [$] (section 8).

    Evaluated in closed form so it vectorises over ``years``: the annuity factor
    ``(1 - (1 + r)**-years) / r`` (``years`` where ``r == 0``), written with ``expm1``/``log1p``
    so a small ``r`` does not cancel. ``years`` must be a whole number >= 0.
    """
    annual = np.asarray(annual_cash_flow(captured_per_hour, hours_per_year, robots))
    years = check_real("years", years, ge=0, whole=True)
    rate = check_real("discount_rate", discount_rate, ge=0, le=1)
    growth = -np.expm1(-years * np.log1p(rate))  # 1 - (1 + r)**-years
    safe_rate = np.where(rate > 0, rate, 1.0)
    factor = np.where(rate > 0, growth / safe_rate, years)
    return scalar_or_array(annual * factor)
