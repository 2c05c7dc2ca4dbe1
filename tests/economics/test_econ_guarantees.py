"""Properties 1-4 of ECONOMICS.md section 9 (as amended 2026-12-01), checked by hypothesis.

The customer is priced per effective labor hour (section 6) and a pass-through ``pi`` of the
platform's share reaches it (section 5). Property 5 (bad inputs raise) lives in
test_econ_validation.py.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from v2p.economics import (
    allocate_spread,
    consumer_surplus,
    customer_cost,
    deflation_ratio,
    implied_wage,
)

# Ranges wide enough to cross every branch (negative robot wages, zero hours, zero w_h, zero
# output, shrinking robots), bounded so products stay far from overflow.
wages = st.floats(-1e4, 1e4)
# 0 and 1e-6 up: a subnormal w_h or H would only exercise float overflow in a ratio.
nonneg = st.one_of(st.just(0.0), st.floats(1e-6, 1e4))
hours = st.one_of(st.just(0.0), st.floats(1e-6, 24.0))
output = st.one_of(st.just(0.0), st.floats(1e-6, 1e3))  # MP_r [units/hr]
human_mp = st.floats(1e-3, 1e3)  # MP_h > 0
delta_total = st.floats(-10.0, 10.0)
delta_cust = st.floats(0.0, 10.0)
fees = st.one_of(st.just(0.0), st.floats(0.0, 1e3))
unit = st.floats(0.0, 1.0)
prices = st.floats(0.0, 5.0)

# 1000 drawn cases per property, each also checked over a batch of neighbours where that is
# cheap (hypothesis's draw, not the economics, dominates the run time).
PROPERTY = settings(max_examples=1000, deadline=None)


def non_increasing(values: np.ndarray) -> bool:
    """Each value <= the one before, to the rounding of the arithmetic behind it."""
    return bool(np.all(np.diff(values) <= 1e-12 * np.maximum(1.0, np.abs(values[:-1]))))


@PROPERTY
@given(
    w_r=wages,
    w_h=nonneg,
    hours=hours,
    mp_r=output,
    mp_h=human_mp,
    err=unit,
    damage_cost=prices,
    delta_mpl_cust=delta_cust,
    delta_mpl_total=delta_total,
    pass_through=unit,
    base_fee=fees,
    floor_margin=fees,
    any_rebate=nonneg,
)
def test_1_and_4_surplus_non_negative_cost_at_most_w_h_rho_at_most_one(
    w_r,
    w_h,
    hours,
    mp_r,
    mp_h,
    err,
    damage_cost,
    delta_mpl_cust,
    delta_mpl_total,
    pass_through,
    base_fee,
    floor_margin,
    any_rebate,
):
    # The drawn robot and a sweep of robots from well below to well above parity, each with an
    # output of its own (including none at all); w_r and MP_r need not agree: "every input".
    w_r = np.concatenate(([w_r], np.linspace(-2.0 * w_h - 1.0, 3.0 * w_h + 1.0, 32)))  # (33,)
    mp_r = np.concatenate(([mp_r], np.linspace(0.0, 3.0 * mp_h, 32)))  # (33,), mp_r[1] == 0
    alloc = allocate_spread(
        w_r, w_h, hours, delta_mpl_cust, delta_mpl_total, pass_through=pass_through
    )
    sold = mp_r > 0
    # The rebates the allocation gives, and an arbitrary one: the guarantee is for every input.
    for rebate in (alloc.rebate, any_rebate):
        cost = customer_cost(
            w_r=w_r,
            rebate=rebate,
            hours=hours,
            w_h=w_h,
            mp_r=mp_r,
            mp_h=mp_h,
            err=err,
            damage_cost=damage_cost,
            base_fee=base_fee,
            floor_margin=floor_margin,
        )
        assert np.array_equal(np.isnan(cost), ~sold)  # NaN exactly where no work was sold
        assert np.all((cost[sold] >= 0.0) & (cost[sold] <= w_h))
        surplus = consumer_surplus(w_h, cost)
        assert np.array_equal(np.isnan(surplus), ~sold)
        assert np.all(surplus[sold] >= 0.0)
        np.testing.assert_allclose(surplus[sold], w_h - cost[sold], atol=1e-9)
        if w_h > 0:
            rho = deflation_ratio(cost, w_h)
            assert np.array_equal(np.isnan(rho), ~sold)
            assert np.all((rho[sold] >= 0.0) & (rho[sold] <= 1.0))


@PROPERTY
@given(
    w_h=st.floats(0.01, 1e3),
    parity=st.floats(-2.0, 5.0),
    hours=hours,
    delta_mpl_cust=delta_cust,
    delta_mpl_total=delta_total,
    eps_parity=st.floats(0.0, 0.5),
    pass_through=unit,
)
def test_2_a_spread_is_split_in_full(
    w_h, parity, hours, delta_mpl_cust, delta_mpl_total, eps_parity, pass_through
):
    # The drawn parity and a sweep across the no-spread band.
    w_r = np.concatenate(([parity], np.linspace(-2.0, 5.0, 32))) * w_h  # (33,)
    alloc = allocate_spread(
        w_r,
        w_h,
        hours,
        delta_mpl_cust,
        delta_mpl_total,
        eps_parity=eps_parity,
        pass_through=pass_through,
    )
    spread = w_r / w_h > 1.0 + eps_parity
    np.testing.assert_allclose(alloc.spread[spread], (w_r - w_h)[spread])
    np.testing.assert_allclose(alloc.rebate + alloc.captured, alloc.spread_value, rtol=1e-12)
    np.testing.assert_allclose((alloc.s_cust + alloc.s_plat)[spread], 1.0, rtol=0, atol=1e-15)
    # Section 5 as amended: the customer gets its own share and pi of the platform's.
    value = alloc.spread_value
    np.testing.assert_allclose(
        alloc.rebate, (alloc.s_cust + pass_through * alloc.s_plat) * value, rtol=1e-12, atol=1e-9
    )
    np.testing.assert_allclose(
        alloc.captured, (1 - pass_through) * alloc.s_plat * value, rtol=1e-12, atol=1e-9
    )
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
    price=prices,
    damage_cost=prices,
    w_h=st.floats(0.01, 100.0),
    hours=hours,
    delta_mpl_cust=delta_cust,
    delta_mpl_total=st.floats(0.0, 10.0),
    pass_through=st.floats(0.0, 1.0, exclude_max=True),
)
def test_3_captured_is_non_decreasing_in_mp_r(
    mp_a, mp_b, err, price, damage_cost, w_h, hours, delta_mpl_cust, delta_mpl_total, pass_through
):
    # One site (same w_h, err, prices, contribution and pi, so the same s_plat), robots that
    # differ only in MP_r: the two drawn ones and a grid from 0 to 500 units/hr, in order.
    mp = np.sort(np.concatenate(([mp_a, mp_b], np.linspace(0.0, 500.0, 64))))  # (66,)
    w_r = implied_wage(mp, err, price, damage_cost)
    alloc = allocate_spread(
        w_r, w_h, hours, delta_mpl_cust, delta_mpl_total, pass_through=pass_through
    )
    assert np.all(np.diff(alloc.captured) >= 0.0)
    above = alloc.spread > 0
    assert np.all(alloc.s_plat[above] == alloc.s_plat[above][:1])


@PROPERTY
@given(
    mp_a=st.floats(0.0, 500.0),
    mp_h=st.floats(1.0, 200.0),
    err=unit,
    price=prices,
    damage_cost=prices,
    w_h=st.floats(0.01, 100.0),
    hours=st.floats(0.01, 24.0),
    delta_mpl_cust=delta_cust,
    delta_mpl_total=st.floats(0.0, 10.0),
    pass_through=unit,
    base_fee=st.one_of(st.just(0.0), st.floats(0.0, 50.0)),
    floor_margin=st.one_of(st.just(0.0), st.floats(0.0, 100.0)),
)
def test_4_rho_is_non_increasing_in_mp_r_above_parity(
    mp_a,
    mp_h,
    err,
    price,
    damage_cost,
    w_h,
    hours,
    delta_mpl_cust,
    delta_mpl_total,
    pass_through,
    base_fee,
    floor_margin,
):
    # Robots at one site that differ only in MP_r, in increasing order; kept: those above parity.
    mp = np.sort(np.concatenate(([mp_a], np.linspace(0.0, 500.0, 64))))  # (65,)
    w_r = implied_wage(mp, err, price, damage_cost)
    alloc = allocate_spread(
        w_r, w_h, hours, delta_mpl_cust, delta_mpl_total, pass_through=pass_through
    )
    above = alloc.spread > 0
    if not above.any() or (alloc.s_cust + pass_through * alloc.s_plat)[above][0] <= 0:
        return  # no spread, or nothing reaches the customer: 9.4 says nothing
    cost = customer_cost(
        w_r=w_r,
        rebate=alloc.rebate,
        hours=hours,
        w_h=w_h,
        mp_r=mp,
        mp_h=mp_h,
        err=err,
        damage_cost=damage_cost,
        base_fee=base_fee,
        floor_margin=floor_margin,
    )
    rho = deflation_ratio(cost[above], w_h)
    assert np.all(rho <= 1.0)
    assert non_increasing(rho)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 64))
def test_1_to_4_hold_elementwise_on_batches(seed, n):
    """The vectorised path keeps the guarantees element by element (≈ 10k shifts in all)."""
    rng = np.random.default_rng(seed)
    w_h = rng.uniform(0.0, 50.0, n) * (rng.random(n) > 0.1)  # some w_h == 0
    mp_h = rng.uniform(1.0, 100.0, n)
    mp_r = rng.uniform(0.0, 200.0, n) * (rng.random(n) > 0.1)  # some shifts sell nothing
    err = rng.uniform(0.0, 1.0, n)
    w_r = rng.uniform(-20.0, 100.0, n)
    hours = rng.uniform(0.0, 2.0, n) * (rng.random(n) > 0.1)  # some zero-length shifts
    cust = rng.uniform(0.0, 3.0, n)
    total = rng.uniform(-3.0, 3.0, n)
    pass_through = rng.uniform(0.0, 1.0, n)
    alloc = allocate_spread(w_r, w_h, hours, cust, total, pass_through=pass_through)
    cost = customer_cost(
        w_r=w_r,
        rebate=alloc.rebate,
        hours=hours,
        w_h=w_h,
        mp_r=mp_r,
        mp_h=mp_h,
        err=err,
        damage_cost=rng.uniform(0.0, 3.0, n),
        base_fee=rng.uniform(0, 5, n),
        floor_margin=rng.uniform(0, 30, n),
    )
    sold = mp_r > 0
    assert np.array_equal(np.isnan(cost), ~sold)
    assert np.all(cost[sold] <= w_h[sold]) and np.all(consumer_surplus(w_h, cost)[sold] >= 0.0)
    spread = alloc.spread > 0
    np.testing.assert_allclose(alloc.rebate + alloc.captured, alloc.spread_value, rtol=1e-12)
    np.testing.assert_allclose((alloc.s_cust + alloc.s_plat)[spread], 1.0, atol=1e-15)
    assert np.all((alloc.s_cust == 0) & (alloc.s_plat == 0) | spread)
    positive = sold & (w_h > 0)
    assert np.all(deflation_ratio(cost[positive], w_h[positive]) <= 1.0)


@settings(max_examples=300, deadline=None)
@given(
    w_h=st.floats(0.01, 1e3),
    mp_h=st.floats(1.0, 200.0),
    prod_parity=st.floats(1.2, 10.0),
    err=st.floats(0.0, 0.5),
    delta_mpl_cust=delta_cust,
    delta_mpl_total=delta_total,
    pass_through=unit,
    hours=st.floats(0.01, 24.0),
)
def test_at_defaults_the_surplus_is_the_rebate_per_elh(
    w_h, mp_h, prod_parity, err, delta_mpl_cust, delta_mpl_total, pass_through, hours
):
    """Section 6's consequence where ``p * MP_h = w_h``: ``cost = w_h - R / (H * q)``.

    With no fee and no floor the customer's surplus per ELH is exactly its rebate per ELH, and
    ``rho = 1`` only when nothing reaches it (``pi = 0`` and ``s_cust = 0``).
    """
    price = w_h / mp_h  # p * MP_h = w_h
    mp_r = prod_parity * mp_h
    # Damage small enough that the robot is above the parity band at this productivity.
    damage_cost = 0.1 * price
    w_r = implied_wage(mp_r, err, price, damage_cost)
    alloc = allocate_spread(
        w_r, w_h, hours, delta_mpl_cust, delta_mpl_total, pass_through=pass_through
    )
    assert alloc.spread > 0
    cost = customer_cost(
        w_r=w_r,
        rebate=alloc.rebate,
        hours=hours,
        w_h=w_h,
        mp_r=mp_r,
        mp_h=mp_h,
        err=err,
        damage_cost=damage_cost,
    )
    q = mp_r / mp_h
    rebate_per_elh = alloc.rebate / (hours * q)
    assert abs(consumer_surplus(w_h, cost) - rebate_per_elh) <= 1e-9 * w_h
    if alloc.rebate == 0:
        assert abs(deflation_ratio(cost, w_h) - 1.0) <= 1e-12
