"""The report's data-attribution section, from the attribution.csv beside a ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.test_report import accounted, improving, write_ledger
from v2p.contracts import AttributionEvaluation
from v2p.economics.attribution_file import read_attribution_table, write_attribution_table
from v2p.report import write_report
from v2p.report.summary import REPORT_FILE

NAMES = ("platform", "pots", "same", "corrupt")


def evaluation(step: int, contributions: list[float]) -> AttributionEvaluation:
    # With every source's data each site reaches 80 units/hr; without k's, 80 - C_k at k's.
    site_mpl = [[80.0] * 4] + [[80.0 - (c if j == k else 0.0) for j in range(4)]
                               for k, c in enumerate(contributions)]  # fmt: skip
    return AttributionEvaluation(step, 10 * step, site_mpl, contributions)


def run_folder(tmp_path: Path) -> Path:
    write_ledger(tmp_path / "economics.csv", accounted(improving(), delta_mpl_cust=0.0))
    evaluations = [
        evaluation(1000, [1.0, 30.0, 0.5, -0.3]),
        evaluation(2000, [0.5, 45.0, -0.4, -6.0]),
    ]
    write_attribution_table(tmp_path / "attribution.csv", evaluations, NAMES, {"platform"})
    return tmp_path


def test_attribution_table_round_trips(tmp_path):
    folder = run_folder(tmp_path)
    series = read_attribution_table(folder / "attribution.csv")
    assert [s.source for s in series] == list(NAMES)
    assert [s.customer for s in series] == [False, True, True, True]
    assert series[1].contribution == [30.0, 45.0] and series[1].env_steps == [10000, 20000]
    assert series[3].mpl_with == [80.0, 80.0]
    (folder / "bad.csv").write_text("episode,source\n1,a\n")
    with pytest.raises(ValueError, match="is not an attribution table"):
        read_attribution_table(folder / "bad.csv")


def test_report_plots_contributions_and_names_only_clearly_harmful_customers(tmp_path):
    folder = run_folder(tmp_path)
    files = write_report([folder / "economics.csv"], folder)
    assert files.figures["attribution"].exists()
    text = (folder / REPORT_FILE).read_text()
    assert "## Data attribution" in text and "| pots | customer | +45.00 |" in text
    # corrupt is 6 units/hr below 0 (7.5% of its sites' 80): harmful. same's -0.4 is within
    # the 1% band of evaluation noise: not named.
    harmful = next(line for line in text.splitlines() if line.startswith("Harmful:"))
    assert "**corrupt** (-6.00 units/hr, below 0 in 2 of 2 evaluations)" in harmful
    assert "same" not in harmful and "pots" not in harmful


def test_a_ledger_without_an_attribution_table_gets_no_section(tmp_path):
    write_ledger(tmp_path / "economics.csv", accounted(improving()))
    files = write_report([tmp_path / "economics.csv"], tmp_path)
    assert "attribution" not in files.figures
    assert "Data attribution" not in (tmp_path / REPORT_FILE).read_text()
