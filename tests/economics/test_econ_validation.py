"""Property 5 of ECONOMICS.md section 9: bad inputs raise a ValueError naming the argument.

Every public entry point is listed with valid arguments and the domain of each numeric one;
hypothesis then replaces one argument at a time by a value outside its domain (NaN, ±inf, a
negative, a rate above 1, ...), as a scalar or hidden in an array, and requires a ValueError
whose message starts with that argument's name.
"""

import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2p.economics import (
    ConstantWage,
    DualAscent,
    EconomicParams,
    LinearDriftWage,
    OnlineDataValueEstimator,
    PIDLagrangian,
    WageIndexer,
    allocate_spread,
    annual_cash_flow,
    consumer_surplus,
    contribution_shares,
    customer_cost,
    data_price,
    deflation_ratio,
    error_rate,
    fleet_npv,
    implied_wage,
    lagrangian_reward,
    mpl,
    profit_rate,
    sla_target,
)

REAL, NONNEG, UNIT, POS = "finite", "finite, >= 0", "finite, in [0, 1]", "finite, > 0"
# A customer cost: NaN is "no work sold" (ECONOMICS.md section 6), so it passes; inf does not.
COST = "finite or NaN, >= 0"


class Case(NamedTuple):
    call: Callable[..., Any]
    valid: dict[str, float]
    domains: dict[str, str]


CASES: dict[str, Case] = {
    "mpl": Case(mpl, {"completed": 3.0, "hours": 1.0}, {"completed": NONNEG, "hours": NONNEG}),
    "error_rate": Case(
        error_rate, {"errors": 1.0, "attempts": 5.0}, {"errors": NONNEG, "attempts": NONNEG}
    ),
    "implied_wage": Case(
        implied_wage,
        {"mp_r": 90.0, "err": 0.03, "price": 0.3, "damage_cost": 1.0},
        {"mp_r": NONNEG, "err": UNIT, "price": NONNEG, "damage_cost": NONNEG},
    ),
    "profit_rate": Case(
        profit_rate, {"wage": 25.0, "energy_cost": 0.1}, {"wage": REAL, "energy_cost": NONNEG}
    ),
    "lagrangian_reward": Case(
        lagrangian_reward,
        {"profit": 25.0, "err": 0.08, "lam": 3.0, "err_target": 0.06},
        {"profit": REAL, "err": UNIT, "lam": NONNEG, "err_target": UNIT},
    ),
    "sla_target": Case(
        sla_target,
        {"episode": 10.0, "init": 0.1, "final": 0.06},
        {"episode": NONNEG, "init": UNIT, "final": UNIT},
    ),
    "contribution_shares": Case(
        contribution_shares,
        {"delta_mpl_cust": 0.5, "delta_mpl_total": 1.0, "eps": 1e-6},
        {"delta_mpl_cust": NONNEG, "delta_mpl_total": REAL, "eps": NONNEG},
    ),
    "allocate_spread": Case(
        allocate_spread,
        {
            "w_r": 25.0,
            "w_h": 18.0,
            "hours": 1.0,
            "delta_mpl_cust": 0.5,
            "delta_mpl_total": 1.0,
            "eps": 1e-6,
            "eps_parity": 0.05,
            "pass_through": 0.5,
        },
        {
            "w_r": REAL,
            "w_h": NONNEG,
            "hours": NONNEG,
            "delta_mpl_cust": NONNEG,
            "delta_mpl_total": REAL,
            "eps": NONNEG,
            "eps_parity": NONNEG,
            "pass_through": UNIT,
        },
    ),
    "customer_cost": Case(
        customer_cost,
        {
            "w_r": 25.0,
            "rebate": 2.0,
            "hours": 1.0,
            "w_h": 18.0,
            "mp_r": 90.0,
            "mp_h": 60.0,
            "err": 0.03,
            "damage_cost": 1.0,
            "base_fee": 1.0,
            "floor_margin": 2.0,
        },
        {
            "w_r": REAL,
            "rebate": NONNEG,
            "hours": NONNEG,
            "w_h": NONNEG,
            "mp_r": NONNEG,
            "mp_h": POS,
            "err": UNIT,
            "damage_cost": NONNEG,
            "base_fee": NONNEG,
            "floor_margin": NONNEG,
        },
    ),
    "consumer_surplus": Case(
        consumer_surplus, {"w_h": 18.0, "cost": 12.0}, {"w_h": NONNEG, "cost": COST}
    ),
    "deflation_ratio": Case(
        deflation_ratio, {"cost": 12.0, "w_h": 18.0}, {"cost": COST, "w_h": POS}
    ),
    "data_price": Case(
        data_price,
        {
            "expected_delta_mpl": 2.0,
            "price_per_unit": 0.3,
            "kappa": 0.8,
            "horizon_hours": 1000.0,
            "scale": 2.0,
        },
        {
            "expected_delta_mpl": REAL,
            "price_per_unit": NONNEG,
            "kappa": UNIT,
            "horizon_hours": NONNEG,
            "scale": NONNEG,
        },
    ),
    "annual_cash_flow": Case(
        annual_cash_flow,
        {"captured_per_hour": 8.0, "hours_per_year": 1000.0, "robots": 3.0},
        {"captured_per_hour": NONNEG, "hours_per_year": NONNEG, "robots": NONNEG},
    ),
    "fleet_npv": Case(
        fleet_npv,
        {
            "captured_per_hour": 8.0,
            "hours_per_year": 1000.0,
            "robots": 3.0,
            "years": 3.0,
            "discount_rate": 0.1,
        },
        {
            "captured_per_hour": NONNEG,
            "hours_per_year": NONNEG,
            "robots": NONNEG,
            "years": NONNEG,
            "discount_rate": UNIT,
        },
    ),
    "EconomicParams": Case(
        EconomicParams,
        {"price_per_unit": 0.3, "damage_cost": 1.0, "energy_cost": 0.1, "human_mp": 60.0},
        {"price_per_unit": NONNEG, "damage_cost": NONNEG, "energy_cost": NONNEG, "human_mp": POS},
    ),
    "DualAscent": Case(
        DualAscent, {"lambda_init": 0.0, "eta": 0.01}, {"lambda_init": NONNEG, "eta": NONNEG}
    ),
    "DualAscent.update": Case(
        lambda **kwargs: DualAscent().update(**kwargs),
        {"err_shift": 0.1, "err_target": 0.06},
        {"err_shift": UNIT, "err_target": UNIT},
    ),
    "PIDLagrangian": Case(
        PIDLagrangian,
        {"lambda_init": 0.0, "k_p": 1.0, "k_i": 20.0, "k_d": 1.0, "ema": 0.5},
        {"lambda_init": NONNEG, "k_p": NONNEG, "k_i": NONNEG, "k_d": NONNEG, "ema": UNIT},
    ),
    "PIDLagrangian.update": Case(
        lambda **kwargs: PIDLagrangian().update(**kwargs),
        {"err_shift": 0.1, "err_target": 0.06},
        {"err_shift": UNIT, "err_target": UNIT},
    ),
    "WageIndexer": Case(
        lambda **kwargs: WageIndexer(ConstantWage(), **kwargs),
        {"w_h_init": 18.0, "alpha": 0.1, "inflation": 0.02, "hours_per_year": 2000.0},
        {"w_h_init": NONNEG, "alpha": UNIT, "inflation": UNIT, "hours_per_year": POS},
    ),
    "WageIndexer.on_shift_end": Case(
        lambda **kwargs: WageIndexer(ConstantWage()).on_shift_end(**kwargs),
        {"hours": 1.0},
        {"hours": NONNEG},
    ),
    "ConstantWage": Case(ConstantWage, {"wage": 18.0}, {"wage": POS}),
    "LinearDriftWage": Case(
        LinearDriftWage,
        {"start": 18.0, "drift_per_update": 0.1},
        {"start": POS, "drift_per_update": REAL},
    ),
    "OnlineDataValueEstimator": Case(
        OnlineDataValueEstimator,
        {"ridge": 1.0, "confidence_z": 1.645},
        {"ridge": POS, "confidence_z": NONNEG},
    ),
    "OnlineDataValueEstimator.update": Case(
        lambda **kwargs: OnlineDataValueEstimator().update(**kwargs),
        {"features": 0.5, "realised_delta_mpl": 1.0},
        {"features": REAL, "realised_delta_mpl": REAL},
    ),
}

ARGUMENTS = [(name, arg) for name, case in CASES.items() for arg in case.domains]

non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
negative = st.floats(max_value=-math.ulp(0.0), allow_infinity=False)
above_one = st.floats(min_value=math.nextafter(1.0, 2.0), allow_infinity=False)
BAD_VALUES = {
    REAL: non_finite,
    NONNEG: non_finite | negative,
    UNIT: non_finite | negative | above_one,
    POS: non_finite | negative | st.sampled_from([0.0, -0.0]),
    COST: st.sampled_from([math.inf, -math.inf]) | negative,
}


def call_with(name: str, arg: str, value: Any) -> Any:
    case = CASES[name]
    kwargs = {**case.valid, arg: value}
    if name == "OnlineDataValueEstimator.update":
        kwargs["features"] = np.atleast_1d(kwargs["features"])
    return case.call(**kwargs)


@pytest.mark.parametrize("name", CASES)
def test_the_valid_arguments_are_accepted(name):
    case = CASES[name]
    call_with(name, next(iter(case.valid)), case.valid[next(iter(case.valid))])


@settings(max_examples=2000, deadline=None)
@given(target=st.sampled_from(ARGUMENTS), data=st.data())
def test_a_value_outside_its_domain_raises_naming_the_argument(target, data):
    name, arg = target
    bad = data.draw(BAD_VALUES[CASES[name].domains[arg]], label="bad")
    if data.draw(st.booleans(), label="in an array"):
        # Hidden among valid values: the check is elementwise, not on the first element only.
        size = 1 if arg == "features" else 3  # the estimator has a single feature
        value = np.full(size, CASES[name].valid[arg])
        value[data.draw(st.integers(0, size - 1), label="index")] = bad
    else:
        value = bad
    with pytest.raises(ValueError, match=f"^{re.escape(arg)} must be") as info:
        call_with(name, arg, value)
    assert "got" in str(info.value)


@pytest.mark.parametrize(("name", "arg"), ARGUMENTS)
@pytest.mark.parametrize("value", ["1.0", None, "abc"])
def test_a_non_number_raises_naming_the_argument(name, arg, value):
    with pytest.raises(ValueError, match=f"^{re.escape(arg)} must be"):
        call_with(name, arg, value)


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        (lambda: sla_target(1.0, curriculum_episodes=1.5), "curriculum_episodes"),
        (lambda: WageIndexer(ConstantWage(), update_every=True), "update_every"),
        (lambda: OnlineDataValueEstimator(min_samples=2.0), "min_samples"),
        (lambda: fleet_npv(1.0, 1.0, 1.0, 0.5, 0.1), "years"),
        (lambda: ConstantWage().wage(-1), "update_index"),
        (lambda: DualAscent(eta=np.array([0.1, 0.2])), "eta"),
        (lambda: PIDLagrangian(k_i=np.array([0.1, 0.2])), "k_i"),
        (lambda: WageIndexer(ConstantWage()).on_shift_end(hours=np.array([1.0, 1.0])), "hours"),
    ],
)
def test_integer_and_scalar_arguments(call, arg):
    with pytest.raises(ValueError, match=f"^{re.escape(arg)} must be"):
        call()


@settings(max_examples=300, deadline=None)
@given(attempts=st.floats(0.0, 1e6), excess=st.floats(1e-3, 1e3))
def test_more_errors_than_attempts_raise(attempts, excess):
    with pytest.raises(ValueError, match=r"^errors must be <= attempts"):
        error_rate(attempts + excess, attempts)


@pytest.mark.parametrize("cost", [math.nan, np.array([12.0, math.nan])])
def test_surplus_and_rho_take_a_nan_cost_as_no_work_sold(cost):
    # NaN is customer_cost's "no work sold"; it passes through, while inf or < 0 still raise.
    assert np.isnan(consumer_surplus(18.0, cost)).any()
    assert np.isnan(deflation_ratio(cost, 18.0)).any()
