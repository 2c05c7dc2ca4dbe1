"""Sections 5 and 6: contribution shares, spread allocation and customer pricing by hand."""

import numpy as np
import pytest

from v2p.economics import (
    SpreadAllocation,
    allocate_spread,
    consumer_surplus,
    contribution_shares,
    customer_cost,
    deflation_ratio,
    implied_wage,
)


def test_contribution_shares_closed_form():
    # 0.5 / (2.0 + 1e-6) = 0.24999988
    s_cust, s_plat = contribution_shares(0.5, 2.0)
    assert s_cust == pytest.approx(0.5 / 2.000001, rel=1e-15)
    assert s_plat == pytest.approx(1 - 0.5 / 2.000001, rel=1e-15)
    # The customer's part exceeds the total: clipped to 1.
    assert contribution_shares(3.0, 1.0) == pytest.approx((1.0, 0.0))
    # The robot got worse (total + eps <= 0): nothing is credited to the customer.
    assert contribution_shares(0.4, -0.5) == (0.0, 1.0)
    assert contribution_shares(0.4, -1e-6) == (0.0, 1.0)
    # No change at all: eps keeps the ratio finite, 0 / 1e-6 = 0.
    assert contribution_shares(0.0, 0.0) == (0.0, 1.0)


def test_contribution_shares_vectorised():
    s_cust, s_plat = contribution_shares(np.array([0.0, 1.0, 2.0]), np.array([1.0, -3.0, 1.0]))
    np.testing.assert_allclose(s_cust, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(s_plat, [1.0, 1.0, 0.0])


def test_allocate_spread_by_hand():
    # pi = 0 (a platform with no competitor): the split is by contribution alone.
    alloc = allocate_spread(
        w_r=25.0, w_h=18.0, hours=2.0, delta_mpl_cust=0.7, delta_mpl_total=2.0, pass_through=0.0
    )
    assert isinstance(alloc, SpreadAllocation)
    # parity = 25 / 18 = 1.3889 > 1.05, so a spread exists.
    assert alloc.wage_parity == pytest.approx(25 / 18)
    # s_cust = 0.7 / (2.0 + 1e-6) = 0.349999825; s_plat = 0.650000175
    assert alloc.s_cust == pytest.approx(0.349999825, abs=1e-9)
    assert alloc.s_plat == pytest.approx(0.650000175, abs=1e-9)
    # spread = 25 - 18 = 7 $/hr; SV = 7 * 2 h = 14 $
    assert alloc.spread == pytest.approx(7.0)
    assert alloc.spread_value == pytest.approx(14.0)
    # R = 0.349999825 * 14 = 4.89999755; C = 0.650000175 * 14 = 9.10000245
    assert alloc.rebate == pytest.approx(4.89999755, abs=1e-8)
    assert alloc.captured == pytest.approx(9.10000245, abs=1e-8)


@pytest.mark.parametrize(
    ("w_r", "w_h", "eps_parity"),
    [
        (25.0, 0.0, 0.05),  # no human benchmark
        (25.0, 20.0, 0.25),  # parity 1.25 == 1 + eps_parity: not strictly above
        (20.5, 20.0, 0.05),  # parity 1.025: within the parity band
        (10.0, 18.0, 0.05),  # below parity
        (-5.0, 18.0, 0.05),  # a robot that loses money
    ],
)
def test_no_spread_branch_reports_all_zero(w_r, w_h, eps_parity):
    alloc = allocate_spread(w_r, w_h, 1.0, 0.5, 1.0, eps_parity=eps_parity)
    assert alloc.s_cust == 0.0 and alloc.s_plat == 0.0
    assert alloc.spread == 0.0 and alloc.spread_value == 0.0
    assert alloc.rebate == 0.0 and alloc.captured == 0.0
    expected_parity = 0.0 if w_h == 0 else w_r / w_h
    assert alloc.wage_parity == pytest.approx(expected_parity)


def test_just_above_the_parity_band_there_is_a_spread():
    alloc = allocate_spread(25.001, 20.0, 1.0, 0.0, 1.0, eps_parity=0.25, pass_through=0.0)
    assert alloc.spread == pytest.approx(5.001)
    assert alloc.s_plat == 1.0 and alloc.captured == pytest.approx(5.001)


def test_allocate_spread_vectorised_over_a_batch_of_shifts():
    alloc = allocate_spread(
        w_r=np.array([25.0, 10.0, 30.0]),
        w_h=18.0,
        hours=np.array([1.0, 1.0, 0.0]),
        delta_mpl_cust=0.0,
        delta_mpl_total=1.0,
        pass_through=0.0,
    )
    for field in alloc:
        assert isinstance(field, np.ndarray) and field.shape == (3,)
    np.testing.assert_allclose(alloc.spread, [7.0, 0.0, 12.0])
    # A zero-length shift has a spread rate but no spread value.
    np.testing.assert_allclose(alloc.spread_value, [7.0, 0.0, 0.0])
    np.testing.assert_allclose(alloc.s_plat, [1.0, 0.0, 1.0])
    np.testing.assert_allclose(alloc.captured, [7.0, 0.0, 0.0])


def test_allocation_fields_are_scalars_for_scalar_inputs():
    alloc = allocate_spread(25.0, 18.0, 1.0, 0.1, 1.0)
    for field in alloc:
        assert isinstance(field, float) and not isinstance(field, np.ndarray)


def test_allocate_spread_pass_through_by_hand():
    # spread 7 $/hr over 2 h: SV = 14; s_cust = 0.349999825, s_plat = 0.650000175.
    s_cust, s_plat = 0.7 / 2.000001, 1 - 0.7 / 2.000001
    for pi in (0.0, 0.5, 1.0):
        alloc = allocate_spread(25.0, 18.0, 2.0, 0.7, 2.0, pass_through=pi)
        # R = (s_cust + pi * s_plat) * 14; C = (1 - pi) * s_plat * 14
        assert alloc.rebate == pytest.approx((s_cust + pi * s_plat) * 14.0, rel=1e-12)
        assert alloc.captured == pytest.approx((1 - pi) * s_plat * 14.0, rel=1e-12, abs=1e-12)
    # pi = 0.5: C = 0.5 * 0.650000175 * 14 = 4.550001225; R = 14 - C = 9.449998775.
    alloc = allocate_spread(25.0, 18.0, 2.0, 0.7, 2.0)  # the default pi
    assert alloc.captured == pytest.approx(4.550001225, abs=1e-8)
    assert alloc.rebate == pytest.approx(9.449998775, abs=1e-8)
    # pi = 1: the platform keeps nothing; the shares are still reported as contributions.
    alloc = allocate_spread(25.0, 18.0, 2.0, 0.7, 2.0, pass_through=1.0)
    assert alloc.captured == 0.0 and alloc.rebate == pytest.approx(14.0)
    assert alloc.s_plat == pytest.approx(0.650000175, abs=1e-9)


def test_customer_cost_is_per_effective_labor_hour_by_hand():
    # MP_h 60, MP_r 90: one robot-hour is q = 1.5 ELH. err 0.03, c_a 1: damage 2.7 $/robot-hr.
    shift = {"hours": 1.0, "w_h": 18.0, "mp_r": 90.0, "mp_h": 60.0, "err": 0.03}
    # Bill 25 - 3 = 22; spend 22 + 2.7 = 24.7; per ELH 24.7 / 1.5 = 16.4667.
    cost = customer_cost(w_r=25.0, rebate=3.0, damage_cost=1.0, **shift)
    assert cost == pytest.approx(24.7 / 1.5)
    # No rebate: 25 + 2.7 = 27.7 / 1.5 = 18.4667 -> capped at w_h = 18.
    assert customer_cost(w_r=25.0, rebate=0.0, damage_cost=1.0, **shift) == 18.0
    # Base fee on top of the bill: (22 + 3 + 2.7) / 1.5 = 18.4667 -> 18; fee 0.5: 25.2 / 1.5.
    assert customer_cost(w_r=25.0, rebate=3.0, damage_cost=1.0, base_fee=0.5, **shift) == (
        pytest.approx(25.2 / 1.5)
    )
    # Floor margin raises the bill: max(22, 24) = 24; (24 + 2.7) / 1.5 = 17.8.
    assert customer_cost(w_r=25.0, rebate=3.0, damage_cost=1.0, floor_margin=24.0, **shift) == (
        pytest.approx(17.8)
    )
    # A negative robot wage is billed at 0; the customer still bears the damage: 2.7 / 1.5.
    assert customer_cost(w_r=-5.0, rebate=0.0, damage_cost=1.0, **shift) == pytest.approx(1.8)
    # A two-hour shift: R / H = 4 / 2 = 2; (25 - 2 + 0) / 1.5 = 15.3333 with no damage.
    two_hours = {**shift, "hours": 2.0}
    assert customer_cost(w_r=25.0, rebate=4.0, damage_cost=0.0, **two_hours) == (
        pytest.approx(23.0 / 1.5)
    )
    # hours == 0: R / H is taken as 0 instead of inf: 25 / 1.5 = 16.6667.
    zero_hours = {**shift, "hours": 0.0}
    assert customer_cost(w_r=25.0, rebate=4.0, damage_cost=0.0, **zero_hours) == (
        pytest.approx(25.0 / 1.5)
    )


def test_at_defaults_the_customer_gains_its_rebate_per_elh():
    # p 0.30, MP_h 60: p * MP_h = w_h = 18. MP_r 90, err 0.03, c_a 1: w_r = 27 - 2.7 = 24.3.
    w_r = implied_wage(90.0, 0.03, 0.30, 1.0)
    assert w_r == pytest.approx(24.3)
    args = {"w_r": w_r, "hours": 1.0, "w_h": 18.0, "mp_r": 90.0, "mp_h": 60.0, "err": 0.03}
    # pi = 0, no customer data: the bill is w_r, spend 24.3 + 2.7 = 27 = p * MP_r, 27 / 1.5 = 18.
    alloc = allocate_spread(w_r, 18.0, 1.0, 0.0, 1.0, pass_through=0.0)
    cost = customer_cost(rebate=alloc.rebate, damage_cost=1.0, **args)
    assert cost == pytest.approx(18.0) and deflation_ratio(cost, 18.0) == pytest.approx(1.0)
    # pi = 0.5: SV 6.3, R = 3.15; cost = (24.3 - 3.15 + 2.7) / 1.5 = 15.9 = 18 - 3.15 / 1.5.
    alloc = allocate_spread(w_r, 18.0, 1.0, 0.0, 1.0)
    assert alloc.rebate == pytest.approx(3.15)
    cost = customer_cost(rebate=alloc.rebate, damage_cost=1.0, **args)
    assert cost == pytest.approx(15.9)
    assert consumer_surplus(18.0, cost) == pytest.approx(3.15 / 1.5)
    assert deflation_ratio(cost, 18.0) == pytest.approx(15.9 / 18.0)


def test_no_work_sold_has_no_cost_surplus_or_rho():
    args = {"rebate": 0.0, "hours": 1.0, "w_h": 18.0, "mp_h": 60.0, "err": 0.0, "damage_cost": 1.0}
    cost = customer_cost(w_r=0.0, mp_r=0.0, **args)
    assert isinstance(cost, float) and np.isnan(cost)
    assert np.isnan(consumer_surplus(18.0, cost)) and np.isnan(deflation_ratio(cost, 18.0))
    costs = customer_cost(w_r=np.array([0.0, 24.3]), mp_r=np.array([0.0, 90.0]), **args)
    assert np.isnan(costs[0]) and costs[1] == pytest.approx(16.2)  # (24.3 + 0) / 1.5
    surplus = consumer_surplus(18.0, costs)
    assert isinstance(surplus, np.ndarray) and np.isnan(surplus[0])
    assert surplus[1] == pytest.approx(18.0 - costs[1])
    rho = deflation_ratio(costs, 18.0)
    assert np.isnan(rho[0]) and rho[1] == pytest.approx(costs[1] / 18.0)


def test_surplus_and_deflation_ratio_by_hand():
    assert consumer_surplus(18.0, 10.0) == pytest.approx(8.0)
    assert consumer_surplus(18.0, 18.0) == 0.0
    assert consumer_surplus(18.0, 20.0) == 0.0  # max(0, .) of section 6
    assert deflation_ratio(10.0, 18.0) == pytest.approx(10.0 / 18.0)
    np.testing.assert_allclose(deflation_ratio(np.array([0.0, 9.0]), 18.0), [0.0, 0.5])


def test_deflation_ratio_requires_positive_w_h_and_cost_within_it():
    with pytest.raises(ValueError, match=r"w_h must be finite and > 0, got 0\.0"):
        deflation_ratio(1.0, 0.0)
    with pytest.raises(ValueError, match="cost must be <= w_h"):
        deflation_ratio(19.0, 18.0)
