"""Section 1 labor quantities and the plates-only optimum of section 2, checked by hand."""

import math

import numpy as np
import pytest

from v2p.economics import EconomicParams, error_rate, implied_wage, mpl, profit_rate


def test_mpl_is_completed_per_hour_and_zero_for_an_empty_shift():
    assert mpl(90.0, 1.5) == pytest.approx(60.0)
    assert mpl(7.0, 0.0) == 0.0
    np.testing.assert_allclose(mpl([10.0, 4.0, 3.0], [2.0, 0.0, 0.5]), [5.0, 0.0, 6.0])


def test_error_rate_divides_by_at_least_one_attempt():
    assert error_rate(3, 12) == pytest.approx(0.25)
    # No attempts: max(1, attempts) keeps the rate at 0 instead of NaN.
    assert error_rate(0, 0) == 0.0
    # Fewer than one (expected) attempt still divides by 1.
    assert error_rate(0.25, 0.5) == pytest.approx(0.25)


def test_implied_wage_and_profit_rate_closed_form():
    # w_r = p*MP - c_a*err*MP = 0.30*80 - 1.00*0.05*80 = 24 - 4 = 20; profit = 20 - 0.10.
    w_r = implied_wage(80.0, 0.05, 0.30, 1.00)
    assert w_r == pytest.approx(20.0)
    assert profit_rate(w_r, 0.10) == pytest.approx(19.9)
    # A robot that breaks enough dishes has a negative wage, and profit_rate accepts it.
    assert implied_wage(10.0, 0.5, 0.30, 1.00) == pytest.approx(-2.0)
    assert profit_rate(-2.0, 0.10) == pytest.approx(-2.1)


def test_plates_only_optimum_matches_section_2():
    # Section 2 dynamics at speed 1.0, care 0.86, plate multipliers all 1.
    speed, care = 1.0, 0.86
    base_rate, care_cost, p_min, k_err, q_speed, q_care = 2.0, 0.25, 0.02, 0.12, 1.2, 1.5
    # rate = max(0.1, 2.0 * (0.5 + 0.5)) * (1 - 0.25 * 0.86) = 2.0 * 0.785 = 1.57 /min
    rate = max(0.1, base_rate * (0.5 + 0.5 * speed)) * (1 - min(0.95, care_cost) * care)
    assert rate == pytest.approx(1.57)
    attempts_per_hour = rate * 60.0  # 94.2
    # p_err = 0.02 + 0.12 * 1**1.2 * 0.14**1.5 = 0.02 + 0.12 * 0.0523832 = 0.0262860
    p_err = p_min + k_err * speed**q_speed * (1 - care) ** q_care
    assert p_err == pytest.approx(0.0262860, abs=1e-7)
    errors = attempts_per_hour * p_err  # expected errors in a 1-hour shift: 2.4761
    completed = attempts_per_hour - errors  # 91.7239

    params = EconomicParams()
    mp_r = mpl(completed, 1.0)
    err = error_rate(errors, attempts_per_hour)
    assert err == pytest.approx(p_err)
    # w_r = (0.30 - 1.00 * 0.026286) * 91.7239 = 25.1061; profit = 25.1061 - 0.10 = 25.006.
    w_r = implied_wage(mp_r, err, params.price_per_unit, params.damage_cost)
    profit = profit_rate(w_r, params.energy_cost)
    assert w_r == pytest.approx(25.106, abs=1e-3)
    assert profit == pytest.approx(25.0, abs=0.05)
    assert w_r / 18.0 == pytest.approx(1.39, abs=0.01)


def test_scalar_in_scalar_out_and_array_in_array_out():
    scalar = implied_wage(80.0, 0.05, 0.30, 1.00)
    assert isinstance(scalar, float) and not isinstance(scalar, np.ndarray)
    # Broadcasting: (3, 1) MP against (2,) error rates gives a (3, 2) wage table.
    table = implied_wage(np.array([[10.0], [20.0], [30.0]]), np.array([0.0, 0.5]), 0.30, 1.00)
    assert isinstance(table, np.ndarray) and table.shape == (3, 2)
    np.testing.assert_allclose(table[:, 0], [3.0, 6.0, 9.0])
    np.testing.assert_allclose(table[:, 1], [-2.0, -4.0, -6.0])
    assert mpl(np.array([1.0]), 1.0).shape == (1,)
    assert error_rate(np.zeros((2, 3)), 5.0).shape == (2, 3)
    assert profit_rate(np.ones(4), 0.1).shape == (4,)


def test_errors_above_attempts_raise_naming_both():
    with pytest.raises(ValueError, match="errors must be <= attempts"):
        error_rate([1.0, 6.0], [2.0, 5.0])


def test_mpl_rejects_negative_hours_rather_than_reading_zero():
    with pytest.raises(ValueError, match=r"hours must be finite and >= 0, got -1\.0"):
        mpl(3.0, -1.0)
    assert not math.isnan(mpl(0.0, 0.0))
