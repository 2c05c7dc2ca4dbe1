"""Section 8: fleet cash flows, with the worked check of the spec."""

import numpy as np
import pytest

from v2p.economics import allocate_spread, annual_cash_flow, fleet_npv
from v2p.report.cashflow import captured_per_hour


def test_worked_check_of_section_8():
    # 12.74 $/hr spread * s_plat 0.65 = 8.281 $/hr captured; * 1000 hr/yr = 8,281 $/yr.
    captured_per_hour = 12.74 * 0.65
    assert annual_cash_flow(captured_per_hour, 1000.0) == pytest.approx(8281.0)
    assert annual_cash_flow(captured_per_hour, 1000.0, robots=10) == pytest.approx(82810.0)


@pytest.mark.parametrize(("pass_through", "annual"), [(0.0, 8281.0), (0.5, 4140.50)])
def test_worked_check_of_section_8_from_the_allocation(pass_through, annual):
    # A 12.74 $/hr spread (w_r = 30.74 against w_h = 18) over ten one-hour shifts, s_plat 0.65
    # (s_cust = 0.35 / (1 - 1e-6 + 1e-6)); the captured spread per robot-hour is the report's
    # sum(captured) / sum(hours), then 1000 hr/yr for one robot.
    hours = np.ones(10)
    alloc = allocate_spread(
        np.full(10, 30.74), 18.0, hours, 0.35, 1.0 - 1e-6, pass_through=pass_through
    )
    np.testing.assert_allclose(alloc.s_plat, 0.65, rtol=1e-12)
    np.testing.assert_allclose(alloc.spread, 12.74, rtol=1e-12)
    rate = captured_per_hour(alloc.captured, hours)  # (1 - pi) * 0.65 * 12.74
    assert annual_cash_flow(rate, 1000.0) == pytest.approx(annual, rel=1e-12)


def test_npv_three_years_at_ten_percent_by_hand():
    # 8281/1.1 + 8281/1.21 + 8281/1.331 = 7528.1818 + 6843.8017 + 6221.6379 = 20593.6213
    npv = fleet_npv(12.74 * 0.65, 1000.0, robots=1, years=3, discount_rate=0.10)
    assert npv == pytest.approx(20593.6213, abs=1e-3)
    assert fleet_npv(12.74 * 0.65, 1000.0, 4, 3, 0.10) == pytest.approx(4 * 20593.6213, abs=1e-2)


def test_npv_edge_cases_and_vectorisation():
    assert fleet_npv(5.0, 1000.0, 1, 0, 0.1) == 0.0
    # r = 0: plain sum of undiscounted years.
    assert fleet_npv(5.0, 1000.0, 2, 4, 0.0) == pytest.approx(40000.0)
    # A tiny rate agrees with the sum written out, without cancellation.
    years, rate = 7, 1e-12
    by_sum = sum(1000.0 / (1 + rate) ** y for y in range(1, years + 1))
    assert fleet_npv(1.0, 1000.0, 1, years, rate) == pytest.approx(by_sum, rel=1e-12)
    npvs = fleet_npv(1.0, 100.0, 1, np.array([1, 2, 3]), 0.25)
    np.testing.assert_allclose(npvs, [80.0, 80.0 + 64.0, 80.0 + 64.0 + 51.2])


def test_years_must_be_whole():
    with pytest.raises(ValueError, match="years must be finite and whole"):
        fleet_npv(1.0, 1.0, 1, 2.5, 0.1)
