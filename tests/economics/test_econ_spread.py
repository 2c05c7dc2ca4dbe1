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
    alloc = allocate_spread(w_r=25.0, w_h=18.0, hours=2.0, delta_mpl_cust=0.7, delta_mpl_total=2.0)
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
    alloc = allocate_spread(25.001, 20.0, 1.0, 0.0, 1.0, eps_parity=0.25)
    assert alloc.spread == pytest.approx(5.001)
    assert alloc.s_plat == 1.0 and alloc.captured == pytest.approx(5.001)


def test_allocate_spread_vectorised_over_a_batch_of_shifts():
    alloc = allocate_spread(
        w_r=np.array([25.0, 10.0, 30.0]),
        w_h=18.0,
        hours=np.array([1.0, 1.0, 0.0]),
        delta_mpl_cust=0.0,
        delta_mpl_total=1.0,
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


def test_customer_cost_branches_by_hand():
    # Below parity, no rebate: cost = w_r = 10, surplus 8, rho = 10 / 18.
    assert customer_cost(10.0, 0.0, 1.0, 18.0) == pytest.approx(10.0)
    # Rebate per hour: 10 - 4 / 2 = 8.
    assert customer_cost(10.0, 4.0, 2.0, 18.0) == pytest.approx(8.0)
    # Base fee on top: 8 + 3 = 11.
    assert customer_cost(10.0, 4.0, 2.0, 18.0, base_fee=3.0) == pytest.approx(11.0)
    # Floor margin raises it: max(11, 15) = 15; capped at w_h: min(max(11, 20), 18) = 18.
    assert customer_cost(10.0, 4.0, 2.0, 18.0, base_fee=3.0, floor_margin=15.0) == 15.0
    assert customer_cost(10.0, 4.0, 2.0, 18.0, base_fee=3.0, floor_margin=20.0) == 18.0
    # A negative robot wage is charged at 0 (plus the fee).
    assert customer_cost(-5.0, 0.0, 1.0, 18.0) == 0.0
    assert customer_cost(-5.0, 0.0, 1.0, 18.0, base_fee=1.0) == pytest.approx(1.0)
    # hours == 0: R / H is taken as 0 instead of inf.
    assert customer_cost(10.0, 4.0, 0.0, 18.0) == pytest.approx(10.0)
    # Above parity, from the hand allocation: 25 - 4.89999755 / 2 = 22.55 -> capped at 18.
    assert customer_cost(25.0, 4.89999755, 2.0, 18.0) == 18.0


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
