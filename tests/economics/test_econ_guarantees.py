"""Properties 1-4 of ECONOMICS.md section 9, checked by hypothesis over thousands of inputs.

Property 5 (bad inputs raise) lives in test_econ_validation.py.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2p.economics import (
    allocate_spread,
    consumer_surplus,
    customer_cost,
    deflation_ratio,
    implied_wage,
)

# Ranges wide enough to cross every branch (negative robot wages, zero hours, zero w_h,
# shrinking robots), bounded so products stay far from overflow.
wages = st.floats(-1e4, 1e4)
# 0 and 1e-6 up: a subnormal w_h or H would only exercise float overflow in a ratio.
nonneg = st.one_of(st.just(0.0), st.floats(1e-6, 1e4))
hours = st.one_of(st.just(0.0), st.floats(1e-6, 24.0))
delta_total = st.floats(-10.0, 10.0)
delta_cust = st.floats(0.0, 10.0)
fees = st.one_of(st.just(0.0), st.floats(0.0, 1e3))
unit = st.floats(0.0, 1.0)

# 1000 drawn cases per property, each also checked over a batch of neighbours where that is
# cheap (hypothesis's draw, not the economics, dominates the run time).
PROPERTY = settings(max_examples=1000, deadline=None)


@PROPERTY
@given(
    w_r=wages,
    w_h=nonneg,
    hours=hours,
    delta_mpl_cust=delta_cust,
    delta_mpl_total=delta_total,
    base_fee=fees,
    floor_margin=fees,
    any_rebate=nonneg,
)
def test_1_and_4_surplus_non_negative_cost_at_most_w_h_rho_at_most_one(
    w_r, w_h, hours, delta_mpl_cust, delta_mpl_total, base_fee, floor_margin, any_rebate
):
    # The drawn robot and a sweep of robots from well below to well above parity.
    w_r = np.concatenate(([w_r], np.linspace(-2.0 * w_h - 1.0, 3.0 * w_h + 1.0, 32)))  # (33,)
    alloc = allocate_spread(w_r, w_h, hours, delta_mpl_cust, delta_mpl_total)
    # The rebates the allocation gives, and an arbitrary one: the guarantee is for every input.
    for rebate in (alloc.rebate, any_rebate):
        cost = customer_cost(w_r, rebate, hours, w_h, base_fee, floor_margin)
        assert np.all((cost >= 0.0) & (cost <= w_h))
        surplus = consumer_surplus(w_h, cost)
        assert np.all(surplus >= 0.0)
        np.testing.assert_allclose(surplus, w_h - cost, atol=1e-9)
        if w_h > 0:
            rho = deflation_ratio(cost, w_h)
            assert np.all((rho >= 0.0) & (rho <= 1.0))


@PROPERTY
@given(
    w_h=st.floats(0.01, 1e3),
    parity=st.floats(-2.0, 5.0),
    hours=hours,
    delta_mpl_cust=delta_cust,
    delta_mpl_total=delta_total,
    eps_parity=st.floats(0.0, 0.5),
)
def test_2_a_spread_is_split_in_full(
    w_h, parity, hours, delta_mpl_cust, delta_mpl_total, eps_parity
):
    # The drawn parity and a sweep across the no-spread band.
    w_r = np.concatenate(([parity], np.linspace(-2.0, 5.0, 32))) * w_h  # (33,)
    alloc = allocate_spread(w_r, w_h, hours, delta_mpl_cust, delta_mpl_total, eps_parity=eps_parity)
    spread = w_r / w_h > 1.0 + eps_parity
    np.testing.assert_allclose(alloc.spread[spread], (w_r - w_h)[spread])
    np.testing.assert_allclose(alloc.rebate + alloc.captured, alloc.spread_value, rtol=1e-12)
    np.testing.assert_allclose((alloc.s_cust + alloc.s_plat)[spread], 1.0, rtol=0, atol=1e-15)
    for share in (alloc.s_cust, alloc.s_plat, alloc.rebate, alloc.captured):
        assert np.all(share >= 0.0)
    assert np.all(alloc.s_cust <= 1.0) and np.all(alloc.s_plat <= 1.0)
    for amount in alloc[1:]:  # every field but the parity is 0 without a spread
        assert np.all(amount[~spread] == 0.0)


@PROPERTY
@given(
    mp_a=st.floats(0.0, 500.0),
    mp_b=st.floats(0.0, 500.0),
    err=unit,
    price=st.floats(0.0, 5.0),
    damage_cost=st.floats(0.0, 5.0),
    w_h=st.floats(0.01, 100.0),
    hours=hours,
    delta_mpl_cust=delta_cust,
    delta_mpl_total=st.floats(0.0, 10.0),
)
def test_3_captured_is_non_decreasing_in_mp_r(
    mp_a, mp_b, err, price, damage_cost, w_h, hours, delta_mpl_cust, delta_mpl_total
):
    # One site (same w_h, err, prices and contribution, so the same s_plat), robots that differ
    # only in MP_r: the two drawn ones and a grid from 0 to 500 units/hr, in increasing order.
    mp = np.sort(np.concatenate(([mp_a, mp_b], np.linspace(0.0, 500.0, 64))))  # (66,)
    w_r = implied_wage(mp, err, price, damage_cost)
    alloc = allocate_spread(w_r, w_h, hours, delta_mpl_cust, delta_mpl_total)
    assert np.all(np.diff(alloc.captured) >= 0.0)
    above = alloc.spread > 0
    assert np.all(alloc.s_plat[above] == alloc.s_plat[above][:1])


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 64))
def test_1_to_4_hold_elementwise_on_batches(seed, n):
    """The vectorised path keeps the guarantees element by element (≈ 10k shifts in all)."""
    rng = np.random.default_rng(seed)
    w_h = rng.uniform(0.0, 50.0, n) * (rng.random(n) > 0.1)  # some w_h == 0
    w_r = rng.uniform(-20.0, 100.0, n)
    hours = rng.uniform(0.0, 2.0, n) * (rng.random(n) > 0.1)  # some zero-length shifts
    cust = rng.uniform(0.0, 3.0, n)
    total = rng.uniform(-3.0, 3.0, n)
    alloc = allocate_spread(w_r, w_h, hours, cust, total)
    cost = customer_cost(w_r, alloc.rebate, hours, w_h, rng.uniform(0, 5, n), rng.uniform(0, 30, n))
    assert np.all(cost <= w_h) and np.all(consumer_surplus(w_h, cost) >= 0.0)
    spread = alloc.spread > 0
    np.testing.assert_allclose(alloc.rebate + alloc.captured, alloc.spread_value, rtol=1e-12)
    np.testing.assert_allclose((alloc.s_cust + alloc.s_plat)[spread], 1.0, atol=1e-15)
    assert np.all((alloc.s_cust == 0) & (alloc.s_plat == 0) | spread)
    positive = w_h > 0
    assert np.all(deflation_ratio(cost[positive], w_h[positive]) <= 1.0)


@settings(max_examples=300, deadline=None)
@given(
    w_h=st.floats(0.01, 1e3),
    parity=st.floats(1.06, 10.0),
    delta_mpl_cust=delta_cust,
    delta_mpl_total=delta_total,
    hours=st.floats(0.01, 24.0),
)
def test_with_a_spread_the_customer_pays_w_h(w_h, parity, delta_mpl_cust, delta_mpl_total, hours):
    """A consequence of section 6 as written, pinned so that a change to it is noticed.

    With a spread, ``w_r - R / H = w_h + s_plat * spread >= w_h``, so ``cost = w_h``: the
    surplus is 0 and ``rho = 1`` whenever the robot beats the human by more than the band.
    """
    w_r = parity * w_h
    alloc = allocate_spread(w_r, w_h, hours, delta_mpl_cust, delta_mpl_total)
    cost = customer_cost(w_r, alloc.rebate, hours, w_h)
    assert cost == pytest.approx(w_h, rel=1e-12)
    assert deflation_ratio(cost, w_h) == pytest.approx(1.0, rel=1e-12)
