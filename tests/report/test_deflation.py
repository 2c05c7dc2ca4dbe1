"""The report names what moved the deflation ratio (ECONOMICS.md sections 6 and 9.4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from v2p.economics import ConstantWage, WageIndexer
from v2p.economics.ledger import LedgerWriter, ShiftAccountant
from v2p.economics.shift import ShiftCounts
from v2p.report import read_ledger
from v2p.report.deflation import (
    MECHANISMS,
    deflation_by_source,
    deflation_terms,
    mechanism_sentence,
)

NAN = float("nan")


def ledger_of(tmp_path: Path, pass_through: float, delta_mpl_cust: float | None, n: int = 40):
    """An improving robot (completed 70 -> 95, above parity) at one customer site."""
    accountant = ShiftAccountant(
        WageIndexer(ConstantWage(18.0), w_h_init=18.0, inflation_adj=False),
        pass_through=pass_through,
    )
    path = tmp_path / "economics.csv"
    with LedgerWriter(path) as writer:
        for episode, completed in enumerate(np.linspace(70, 95, n).round().astype(int)):
            shift = ShiftCounts(
                1.0, completed + 2, 2, int(completed), 0.30, 1.0, 0.1, 60.0, NAN, NAN, NAN
            )
            writer.append(
                accountant.account(
                    shift,
                    episode=episode,
                    global_step=episode,
                    source="customer",
                    err_target=0.06,
                    lam=0.0,
                    delta_mpl_cust=delta_mpl_cust,
                )
            )
    return read_ledger(path)


def test_the_terms_add_up_to_rho(tmp_path):
    ledger = ledger_of(tmp_path, 0.5, 0.3)
    terms = deflation_terms(ledger)
    rows = terms["rows"]
    total = 1.0 + sum(terms[m][rows] for m in MECHANISMS)
    np.testing.assert_allclose(total, ledger["deflation_ratio"][rows], rtol=0, atol=1e-12)


def test_pass_through_alone_moves_rho_down(tmp_path):
    (entry,) = deflation_by_source(ledger_of(tmp_path, 0.5, None))
    assert entry.trend.slope_high < 0
    assert entry.parts["rebates"] == pytest.approx(0.0, abs=1e-15)
    sentence = mechanism_sentence(entry)
    assert "trends **down**" in sentence and "moved by the pass-through" in sentence


def test_with_no_competitor_only_the_customers_own_data_rebates_move_rho(tmp_path):
    # s_cust = 0.05 / the smoothed MPL change, which grows as the robot speeds up: the data
    # share, and so the rebate per effective labor hour, shrinks and rho rises.
    (entry,) = deflation_by_source(ledger_of(tmp_path, 0.0, 0.05))
    assert entry.trend.slope_low > 0
    assert entry.parts["rebates"] == pytest.approx(entry.trend.slope, rel=1e-9)
    assert "trends **up**" in mechanism_sentence(entry)
    assert "moved by the rebates (100% of the slope)" in mechanism_sentence(entry)


def test_with_no_rebate_and_no_pass_through_nothing_moves_rho(tmp_path):
    (entry,) = deflation_by_source(ledger_of(tmp_path, 0.0, None))
    assert entry.capped == entry.shifts  # the cap holds every cost at w_h
    sentence = mechanism_sentence(entry)
    assert "nothing moved it" in sentence and "the cap held the cost at w_h" in sentence


def test_the_report_plots_the_market_wage_beside_the_index_when_it_is_known(tmp_path):
    from v2p.report.summary import write_report

    ledger_of(tmp_path, 0.5, None)
    without = write_report([tmp_path / "economics.csv"], tmp_path / "a").figures["wages"]
    market = [(9, 18.0), (19, 30.0)]  # far from w_h, so the step must show in the figure
    files = write_report([tmp_path / "economics.csv"], tmp_path / "b", markets=[market])
    assert files.figures["wages"].read_bytes() != without.read_bytes()
    with pytest.raises(ValueError, match="zip"):  # one market series per ledger
        write_report([tmp_path / "economics.csv"], tmp_path / "c", markets=[None, None])
