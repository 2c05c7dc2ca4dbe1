"""Scalars in give a float64 scalar out; arrays in give an array of the broadcast shape out."""

import numpy as np
import pytest

from v2p.economics import (
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

# Each function with valid scalar arguments; the first is the one swapped for an array.
CALLS = [
    (mpl, (3.0, 1.0)),
    (error_rate, (1.0, 5.0)),
    (implied_wage, (90.0, 0.03, 0.3, 1.0)),
    (profit_rate, (25.0, 0.1)),
    (lagrangian_reward, (25.0, 0.08, 3.0, 0.06)),
    (sla_target, (10.0,)),
    (contribution_shares, (0.5, 1.0)),
    (allocate_spread, (25.0, 18.0, 1.0, 0.5, 1.0)),
    (customer_cost, (25.0, 2.0, 1.0, 18.0, 90.0, 60.0, 0.03, 1.0)),
    (consumer_surplus, (18.0, 12.0)),
    (deflation_ratio, (12.0, 18.0)),
    (data_price, (2.0, 0.3, 0.8, 1000.0)),
    (annual_cash_flow, (8.0, 1000.0)),
    (fleet_npv, (8.0, 1000.0, 3.0, 3.0, 0.1)),
]
IDS = [function.__name__ for function, _ in CALLS]


def outputs(result):
    """The numbers a call returns: one, or each field of a tuple / record."""
    return tuple(result) if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize(("function", "args"), CALLS, ids=IDS)
def test_scalar_in_scalar_out(function, args):
    for value in outputs(function(*args)):
        assert isinstance(value, float) and not isinstance(value, np.ndarray)
        assert np.isfinite(value)


@pytest.mark.parametrize(("function", "args"), CALLS, ids=IDS)
def test_array_in_array_out_elementwise(function, args):
    first = np.array([[args[0]] * 3, [args[0] * 0.5] * 3])  # (2, 3)
    batched = outputs(function(first, *args[1:]))
    halved = outputs(function(args[0] * 0.5, *args[1:]))
    for value_array, scalar_full, scalar_half in zip(
        batched, outputs(function(*args)), halved, strict=True
    ):
        assert isinstance(value_array, np.ndarray) and value_array.shape == (2, 3)
        # Row 0 matches the scalar call, row 1 the call with the first argument halved.
        np.testing.assert_array_equal(value_array[0], scalar_full)
        np.testing.assert_array_equal(value_array[1], scalar_half)
