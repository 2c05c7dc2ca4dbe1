"""Labor quantities of one shift (ECONOMICS.md section 1)."""

from __future__ import annotations

import numpy as np

from v2p.economics._numeric import Real, RealLike, divide_or_zero, scalar_or_array
from v2p.validation import check_not_above, check_real


def mpl(completed: RealLike, hours: RealLike) -> Real:
    """Robot marginal product ``MP_r = completed / H`` [units/hr] (section 1).

    0 where ``hours == 0``: a shift of no length has no rate. Negative hours raise rather than
    read as 0, since they can only come from a bookkeeping bug (section 9.5).
    """
    completed = check_real("completed", completed, ge=0)
    hours = check_real("hours", hours, ge=0)
    return scalar_or_array(divide_or_zero(completed, hours))


def error_rate(errors: RealLike, attempts: RealLike) -> Real:
    """Error rate ``err = errors / max(1, attempts)`` [fraction] (section 1).

    Counts may be expected (non-integer) counts, as in the analytic optimum of section 2.
    """
    errors = check_real("errors", errors, ge=0)
    attempts = check_real("attempts", attempts, ge=0)
    check_not_above("errors", errors, "attempts", attempts)
    return scalar_or_array(errors / np.maximum(1.0, attempts))


def implied_wage(mp_r: RealLike, err: RealLike, price: RealLike, damage_cost: RealLike) -> Real:
    """Robot implied wage ``w_r = p * MP_r - c_a * err * MP_r`` [$/hr] (section 1)."""
    mp_r = check_real("mp_r", mp_r, ge=0)
    err = check_real("err", err, ge=0, le=1)
    price = check_real("price", price, ge=0)
    damage_cost = check_real("damage_cost", damage_cost, ge=0)
    # Factored as (p - c_a * err) * MP_r: the same number, but a rounded product with a fixed
    # factor is monotone in MP_r, which keeps guarantee 9.3 exact in floating point.
    return scalar_or_array((price - damage_cost * err) * mp_r)


def profit_rate(wage: RealLike, energy_cost: RealLike) -> Real:
    """Profit rate ``profit = w_r - c_e`` [$/hr] (section 1). ``wage`` may be negative."""
    wage = check_real("wage", wage)
    energy_cost = check_real("energy_cost", energy_cost, ge=0)
    return scalar_or_array(wage - energy_cost)
