"""``v2p report``: ledger reading, section-9 guarantee checks, section-8 cash flows, the rho trend,
the figures and summary, the end-of-fit callback and the ``v2p`` dispatcher.

Ledgers are synthetic: rows accounted by the real :class:`ShiftAccountant` and written by the
real :class:`LedgerWriter`, with single cells planted where a test needs a violation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from v2p.callbacks import EconomicsCallback
from v2p.economics import ConstantWage, WageIndexer
from v2p.economics.ledger import LEDGER_COLUMNS, LedgerRow, LedgerWriter, ShiftAccountant
from v2p.economics.shift import ShiftCounts
from v2p.report import (
    CashFlowOptions,
    NoShiftsError,
    PartialRowWarning,
    bootstrap_captured_per_hour,
    check_guarantees,
    deflation_trend,
    linear_trend,
    npv_estimate,
    read_ledger,
    t_quantile,
    write_report,
)
from v2p.report import cashflow as cashflow_module
from v2p.report.callback import EconomicsReport
from v2p.report.cli import main as report_main
from v2p.report.plots import FIGURE_NAMES, figure_file
from v2p.report.summary import REPORT_FILE, spread_capped_shifts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADER = ",".join(LEDGER_COLUMNS) + "\n"
NAN = float("nan")


# ---------------------------------------------------------------------------- fixtures


def counts(completed: int, errors: int = 3, hours: float = 1.0) -> ShiftCounts:
    return ShiftCounts(
        hours, completed + errors, errors, completed, 0.30, 1.00, 0.10, 60.0, *[NAN] * 3
    )


def accounted(
    completed: list[int], delta_mpl_cust: float | None = None, pass_through: float = 0.5
) -> list[LedgerRow]:
    """Real ledger rows of shifts with these completed counts (3 errors each, w_h 18 $/hr)."""
    acc = ShiftAccountant(
        WageIndexer(ConstantWage(18.0), w_h_init=18.0, update_every=100),
        pass_through=pass_through,
    )
    return [
        acc.account(
            counts(c),
            episode=episode,
            global_step=10 * episode,
            source="platform",
            err_target=0.08,
            lam=0.01 * episode,
            delta_mpl_cust=delta_mpl_cust,
        )
        for episode, c in enumerate(completed)
    ]


def improving(n: int = 60) -> list[int]:
    """Completed counts of a robot that improves from well below parity to well above it."""
    return [round(float(c)) for c in np.linspace(45, 95, n)]


def noisy(n: int, seed: int) -> list[int]:
    return [int(c) for c in np.random.default_rng(seed).integers(50, 100, size=n)]


def write_ledger(path: Path, rows: list[LedgerRow]) -> Path:
    with LedgerWriter(path) as writer:
        for row in rows:
            writer.append(row)
    return path


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


# ---------------------------------------------------------------------------- reading


def test_read_ledger_round_trips_rows_and_types(tmp_path: Path) -> None:
    rows = accounted(improving(10), delta_mpl_cust=0.2)
    rows[4] = rows[4]._replace(novelty=1.5)
    ledger = read_ledger(write_ledger(tmp_path / "run" / "economics.csv", rows))
    assert len(ledger) == 10 and ledger.label == "run" and ledger.partial_line is None
    assert ledger["episode"].dtype == np.int64 and ledger["w_h"].dtype == np.float64
    assert ledger.sources == ("platform",)
    for name, value in rows[7].columns().items():
        got = ledger[name][7]
        assert math.isnan(got) if value is None else got == value, name
    # Empty optional cells are NaN, written ones read back exactly.
    assert np.isnan(ledger["novelty"][3]) and ledger["novelty"][4] == 1.5
    assert np.isnan(ledger["data_price"]).all()
    with pytest.raises(ValueError):
        ledger["w_h"][0] = 0.0  # read-only columns


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = write_ledger(tmp_path / "economics.csv", accounted(improving(5)))
    content = path.read_text()
    path.write_text(content[: len(content) - 25])  # the writer killed mid-row: no line end
    with pytest.warns(PartialRowWarning, match="line 6 has no line end"):
        ledger = read_ledger(path)
    assert len(ledger) == 4 and ledger.partial_line == 6
    assert list(ledger["episode"]) == [0, 1, 2, 3]


def test_short_last_line_with_line_end_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = write_ledger(tmp_path / "economics.csv", accounted(improving(5)))
    lines = lines_of(path)
    lines[-1] = ",".join(lines[-1].split(",")[:10]) + "\n"
    path.write_text("".join(lines))
    with pytest.warns(PartialRowWarning, match="line 6 has 10 of 29 fields"):
        assert len(read_ledger(path)) == 4


def test_a_short_line_before_the_last_is_an_error(tmp_path: Path) -> None:
    path = write_ledger(tmp_path / "economics.csv", accounted(improving(5)))
    lines = lines_of(path)
    lines[2] = ",".join(lines[2].split(",")[:10]) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match=r"line 3 has 10 fields, expected 29"):
        read_ledger(path)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("", "the file is empty"),
        (HEADER[:30], "a partial header only"),  # a header cut by a kill
        (HEADER, "the header only"),
        (HEADER.rstrip("\n"), "the header only"),
        (HEADER + "0,1,platform,1.0,6", "the header and a partial row only"),
    ],
)
def test_empty_and_header_only_ledgers_have_no_finished_shifts(
    tmp_path: Path, content: str, detail: str
) -> None:
    path = tmp_path / "economics.csv"
    path.write_text(content)
    with pytest.warns(PartialRowWarning) if "partial row" in detail else contextlib.nullcontext():
        with pytest.raises(NoShiftsError, match="no finished shifts yet") as error:
            read_ledger(path)
    assert detail in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (HEADER.replace(",captured,", ",capture,"), "column 25 is 'capture', expected 'captured'"),
        (HEADER.replace(",data_price", ""), "stops after 28 columns, missing 'data_price'"),
        (HEADER.replace("data_price", "data_price,extra"), "column 30 is an extra column 'extra'"),
        ("time,value\n", "column 1 is 'time', expected 'episode'"),
    ],
)
def test_wrong_header_names_the_first_differing_column(
    tmp_path: Path, header: str, problem: str
) -> None:
    rows = lines_of(write_ledger(tmp_path / "good.csv", accounted(improving(3))))[1:]
    path = tmp_path / "economics.csv"
    path.write_text(header + "".join(rows))
    with pytest.raises(ValueError, match="section-10 header") as error:
        read_ledger(path)
    assert problem in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("w_h", "abc", "a finite number"),
        ("w_h", "nan", "a finite number"),
        ("captured", "", "a finite number"),  # only the optional columns may be empty
        ("attempts", "7.5", "an integer"),
    ],
)
def test_malformed_value_names_file_line_column_and_value(
    tmp_path: Path, column: str, value: str, kind: str
) -> None:
    path = write_ledger(tmp_path / "economics.csv", accounted(improving(4)))
    lines = lines_of(path)
    cells = lines[2].rstrip("\n").split(",")
    cells[LEDGER_COLUMNS.index(column)] = value
    lines[2] = ",".join(cells) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(ValueError) as error:
        read_ledger(path)
    message = str(error.value)
    assert str(path) in message and "line 3" in message
    assert f"column {column!r}" in message and f"cannot read {value!r} as {kind}" in message


def test_missing_ledger_is_a_clear_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no ledger at"):
        read_ledger(tmp_path / "economics.csv")


# ---------------------------------------------------------------------------- guarantees


def test_guarantees_pass_on_accounted_rows(tmp_path: Path) -> None:
    rows = accounted(improving(40), delta_mpl_cust=0.3)
    ledger = read_ledger(write_ledger(tmp_path / "economics.csv", rows))
    report = check_guarantees(ledger)
    assert report.ok and report.rows_passed == report.rows == 40
    assert 0 < report["shares_sum_to_one"].checked < 40  # rows both above and below parity
    assert report["shares_sum_to_one"].checked + report["no_spread_no_split"].checked == 40
    assert (ledger["s_cust"] > 0).any()  # customer shares are exercised, not only s_plat = 1


def test_guarantees_catch_planted_violations_and_name_the_episodes(tmp_path: Path) -> None:
    rows = accounted(improving(30))
    above = [i for i, r in enumerate(rows) if r.spread > 0]
    a, b, c = above[0], above[3], above[6]
    rows[2] = rows[2]._replace(consumer_surplus=-0.5)
    rows[a] = rows[a]._replace(captured=rows[a].captured + 1.0)  # rebate + captured != SV
    rows[b] = rows[b]._replace(s_plat=1.2, s_cust=-0.2)  # sum still 1, both out of [0, 1]
    rows[c] = rows[c]._replace(customer_cost=rows[c].w_h + 0.01, deflation_ratio=1.001)
    rows[29] = rows[29]._replace(episode=27)  # a repeated shift
    report = check_guarantees(read_ledger(write_ledger(tmp_path / "economics.csv", rows)))
    assert report["surplus_non_negative"].failing_episodes == (2,)
    assert report["split_adds_up"].failing_episodes == (a,)
    assert report["shares_in_unit_interval"].failing_episodes == (b,)
    assert report["shares_sum_to_one"].ok  # -0.2 + 1.2 == 1
    assert report["cost_at_most_w_h"].failing_episodes == (c,)
    assert report["rho_at_most_one"].failing_episodes == (c,)
    assert report["episodes_consecutive"].failing_episodes == (27,)
    assert not report.ok and report.rows_passed == 30 - 5
    assert report["split_adds_up"].passed == 29


def test_guarantees_tolerate_rounding_but_not_more(tmp_path: Path) -> None:
    rows = accounted(improving(20))
    i = next(i for i, r in enumerate(rows) if r.spread > 0)
    row = rows[i]
    rows[i] = row._replace(captured=row.captured * (1 + 1e-14))  # an ulp-level difference
    report = check_guarantees(read_ledger(write_ledger(tmp_path / "economics.csv", rows)))
    assert report.ok
    rows[i] = row._replace(captured=row.captured + 1e-6)
    report = check_guarantees(read_ledger(write_ledger(tmp_path / "bad.csv", rows)))
    assert report["split_adds_up"].failing_episodes == (i,)


def test_shifts_that_sold_no_work_are_unpriced_and_pass(tmp_path: Path) -> None:
    # Section 6: MP_r = 0 leaves cost, surplus and rho empty; the price checks skip such a row,
    # and a row left empty although work was sold fails the check of its own.
    rows = accounted([0, *improving(9)])
    assert rows[0].customer_cost is None and rows[0].deflation_ratio is None
    report = check_guarantees(read_ledger(write_ledger(tmp_path / "economics.csv", rows)))
    assert report.ok and report["cost_at_most_w_h"].checked == 9
    assert report["priced_where_work_was_sold"].checked == 10
    rows[3] = rows[3]._replace(customer_cost=None)
    report = check_guarantees(read_ledger(write_ledger(tmp_path / "bad.csv", rows)))
    assert report["priced_where_work_was_sold"].failing_episodes == (3,)
    assert deflation_trend(read_ledger(tmp_path / "economics.csv")).n == 9


# ---------------------------------------------------------------------------- cash flows


def test_npv_against_a_hand_computation(tmp_path: Path) -> None:
    base = accounted([90, 90, 90])
    rows = [
        base[0]._replace(hours=1.0, captured=6.0),
        base[1]._replace(hours=0.5, captured=3.0),
        base[2]._replace(hours=0.5, captured=0.0),
    ]
    ledger = read_ledger(write_ledger(tmp_path / "economics.csv", rows))
    options = CashFlowOptions(robots=2, hours_per_year=1000, years=3, discount_rate=0.10)
    estimate = npv_estimate(ledger, options)
    per_hour = (6.0 + 3.0 + 0.0) / (1.0 + 0.5 + 0.5)  # 4.5 $/robot-hr: a ratio of sums
    annual = per_hour * 1000 * 2  # 9000 $/yr
    npv = annual / 1.1 + annual / 1.1**2 + annual / 1.1**3  # 8181.82 + 7438.02 + 6761.83
    assert estimate.captured_per_hour == pytest.approx(4.5, rel=1e-12)
    assert estimate.annual == pytest.approx(9000.0, rel=1e-12)
    assert estimate.npv == pytest.approx(npv, rel=1e-12)
    assert estimate.npv == pytest.approx(22381.67, abs=0.01)


def test_npv_reproduces_the_section_8_worked_check(tmp_path: Path) -> None:
    # 12.74 $/hr spread, s_plat 0.65, 1000 hr/yr -> 8,281 $/yr per robot; one year at r = 0.
    rows = [r._replace(hours=1.0, captured=12.74 * 0.65) for r in accounted([90] * 4)]
    ledger = read_ledger(write_ledger(tmp_path / "economics.csv", rows))
    options = CashFlowOptions(robots=1, hours_per_year=1000, years=1, discount_rate=0.0)
    estimate = npv_estimate(ledger, options)
    assert estimate.annual == pytest.approx(8281.0, rel=1e-12)
    assert estimate.npv == pytest.approx(8281.0, rel=1e-12)
    assert estimate.npv_p5 == estimate.npv_p95 == pytest.approx(8281.0)  # no spread, no band


def test_bootstrap_band_contains_the_estimate_and_is_reproducible(tmp_path: Path) -> None:
    ledger = read_ledger(write_ledger(tmp_path / "economics.csv", accounted(noisy(200, 1))))
    options = CashFlowOptions(bootstrap=500, seed=3)
    estimate = npv_estimate(ledger, options)
    assert estimate.npv_p5 < estimate.npv < estimate.npv_p95
    assert (
        estimate.captured_per_hour_p5 < estimate.captured_per_hour < estimate.captured_per_hour_p95
    )
    assert npv_estimate(ledger, options) == estimate
    assert npv_estimate(ledger, CashFlowOptions(bootstrap=500, seed=4)) != estimate


def test_bootstrap_does_not_depend_on_its_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    captured, hours = rng.uniform(0, 5, 50), np.ones(50)
    whole = bootstrap_captured_per_hour(captured, hours, 300, seed=9)
    monkeypatch.setattr(cashflow_module, "_BOOTSTRAP_CHUNK_CELLS", 7 * 50)
    assert np.array_equal(bootstrap_captured_per_hour(captured, hours, 300, seed=9), whole)
    # Each value is a ratio of sums over a resample, inside the data's range.
    assert whole.min() >= captured.min() and whole.max() <= captured.max()


def test_cash_flow_options_are_validated() -> None:
    with pytest.raises(ValueError, match="discount_rate"):
        CashFlowOptions(discount_rate=1.5)
    with pytest.raises(ValueError, match="bootstrap"):
        CashFlowOptions(bootstrap=0)
    with pytest.raises(ValueError, match="years"):
        CashFlowOptions(years=2.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- trend


@pytest.mark.parametrize(
    ("df", "quantile"), [(1, 12.7062), (2, 4.3027), (10, 2.2281), (30, 2.0423), (1e6, 1.9600)]
)
def test_t_quantile_matches_the_table(df: float, quantile: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-4)


def test_trend_ci_contains_the_true_slope_of_a_planted_line() -> None:
    x = np.arange(200.0)
    # One seeded draw (a 95% interval misses 1 draw in 20; the coverage test below checks the
    # rate itself).
    y = 0.9 - 2e-4 * x + np.random.default_rng(0).normal(0, 0.01, x.size)
    trend = linear_trend(x, y)
    assert trend.slope_low < -2e-4 < trend.slope_high
    assert trend.slope_high < 0
    lo, hi = trend.band(x)
    assert np.all(lo < trend.line(x)) and np.all(trend.line(x) < hi)


def test_trend_ci_covers_the_true_slope_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    x = np.arange(12.0)  # few points: a normal 1.96 instead of t(10) = 2.23 would under-cover
    covered = [
        (t := linear_trend(x, 0.5 + 0.01 * x + rng.normal(0, 0.05, x.size))).slope_low
        <= 0.01
        <= t.slope_high
        for _ in range(600)
    ]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_deflation_trend_is_negative_on_a_planted_deflating_run(tmp_path: Path) -> None:
    # Planted rho falling from 0.95 to 0.75: the structural deflation section 9.4 describes.
    rows = accounted(improving(80))
    noise = np.random.default_rng(2).normal(0, 0.01, len(rows))
    rows = [
        r._replace(deflation_ratio=0.95 - 0.0025 * r.episode + float(e))
        for r, e in zip(rows, noise, strict=True)
    ]
    trend = deflation_trend(read_ledger(write_ledger(tmp_path / "economics.csv", rows)))
    assert trend.slope_high < 0
    assert trend.slope_low < -0.0025 < trend.slope_high


def test_accounted_improving_run_deflates_once_rebates_reach_the_customer(
    tmp_path: Path,
) -> None:
    # Sections 5-6 as amended: priced per effective labor hour, with a pass-through, the
    # customer's surplus above parity is its rebate per ELH, so rho falls as the robot improves.
    for cust in (None, 0.5):
        rows = accounted(improving(60), delta_mpl_cust=cust)
        ledger = read_ledger(write_ledger(tmp_path / f"{cust}" / "economics.csv", rows))
        capped, with_spread = spread_capped_shifts(ledger)
        assert 0 < with_spread < len(ledger) and capped == 0
        assert np.all(ledger["consumer_surplus"][ledger["spread"] > 0] > 0)
        assert deflation_trend(ledger).slope_high < 0
    # pi = 0 and no customer data: nothing reaches the customer, who pays what humans would
    # cost (rho = 1) on every shift with a spread.
    rows = accounted(improving(60), pass_through=0.0)
    ledger = read_ledger(write_ledger(tmp_path / "monopoly" / "economics.csv", rows))
    capped, with_spread = spread_capped_shifts(ledger)
    assert 0 < with_spread and capped == with_spread


# ---------------------------------------------------------------------------- the report


def assert_report(out: Path, labels: list[str]) -> str:
    for name in FIGURE_NAMES:
        png = out / figure_file(name)
        assert png.read_bytes()[:8] == PNG_MAGIC, png
        assert png.stat().st_size > 5_000, png  # a drawn figure, not an empty canvas
    markdown = (out / REPORT_FILE).read_text()
    for name in FIGURE_NAMES:
        assert f"]({figure_file(name)})" in markdown
    for label in labels:
        assert f"**{label}**" in markdown
    return markdown


def test_cli_writes_figures_and_summary_for_one_log_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "version_0"
    write_ledger(run / "economics.csv", accounted(improving(60)))
    assert report_main([str(run), "--bootstrap", "100", "--robots", "3"]) == 0
    assert str(run / REPORT_FILE) in capsys.readouterr().out
    markdown = assert_report(run, ["version_0"])
    assert "| **rows passing every check** |  | **60/60** |" in markdown
    assert "3 robot(s), 2000 hr/yr, 5 years at a discount rate of 8.0%" in markdown
    ledger = read_ledger(run / "economics.csv")
    capped, with_spread = spread_capped_shifts(ledger)
    assert capped == 0 and with_spread > 0  # the pass-through reaches the customer
    assert "ρ = 1 on" not in markdown
    assert "ρ trends **down**" in markdown


def test_cli_writes_one_report_for_two_log_dirs_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a" / "version_0", tmp_path / "b" / "version_0"
    write_ledger(a / "economics.csv", accounted(improving(40)))
    write_ledger(b / "economics.csv", accounted(noisy(30, 2)))
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(a), str(b)])
    assert exit_info.value.code == 2 and "--out is required" in capsys.readouterr().err
    out = tmp_path / "compare"
    assert report_main([str(a), str(b), "--out", str(out), "--bootstrap", "100"]) == 0
    markdown = assert_report(out, ["a/version_0", "b/version_0"])
    assert "| shifts (episodes) | 40 (0–39) | 30 (0–29) |" in markdown


def test_report_of_a_ledger_being_written_and_of_planted_violations(tmp_path: Path) -> None:
    rows = accounted(improving(30))
    rows[4] = rows[4]._replace(consumer_surplus=-1.0)
    path = write_ledger(tmp_path / "run" / "economics.csv", rows)
    path.write_text(path.read_text()[:-40])
    with pytest.warns(PartialRowWarning):
        files = write_report([path], path.parent, CashFlowOptions(bootstrap=50))
    markdown = files.markdown.read_text()
    assert "29 finished shifts" in markdown and "line 31 was incomplete" in markdown
    assert "| consumer surplus >= 0 | 9.1 | 28/29 **FAIL** |" in markdown
    assert "consumer surplus >= 0: fails at episodes 4" in markdown


def test_cli_reports_a_ledger_problem_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "economics.csv").write_text(HEADER)
    assert report_main([str(tmp_path)]) == 1
    assert "no finished shifts yet" in capsys.readouterr().err
    assert report_main([str(tmp_path / "nowhere")]) == 1
    assert "no ledger at" in capsys.readouterr().err
    assert not (tmp_path / REPORT_FILE).exists()


# ---------------------------------------------------------------------------- callback


def fit_trainer(tmp_path: Path, callbacks: list, rank: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        callbacks=callbacks, log_dir=str(tmp_path), default_root_dir=str(tmp_path), global_rank=rank
    )


def test_callback_writes_the_report_beside_the_ledger(tmp_path: Path) -> None:
    economics = EconomicsCallback()
    report = EconomicsReport(bootstrap=50)
    trainer = fit_trainer(tmp_path, [economics, report])
    report.setup(trainer, None, "fit")
    economics.on_train_start(trainer, None)  # opens <log_dir>/economics.csv, as in a fit
    write_ledger(tmp_path / "economics.csv", accounted(improving(20)))
    report.on_fit_end(fit_trainer(tmp_path, [economics, report], rank=1), None)
    assert not (tmp_path / REPORT_FILE).exists()  # rank 1 writes nothing
    report.on_fit_end(trainer, None)
    economics.on_fit_end(trainer, None)
    assert_report(tmp_path, [tmp_path.name])


def test_callback_warns_when_the_ledger_breaks_a_guarantee(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    economics = EconomicsCallback()
    report = EconomicsReport(bootstrap=20)
    trainer = fit_trainer(tmp_path, [economics, report])
    economics.on_train_start(trainer, None)
    rows = accounted(improving(10))
    rows[3] = rows[3]._replace(consumer_surplus=-2.0)
    write_ledger(tmp_path / "economics.csv", rows)
    with caplog.at_level(logging.WARNING, logger="v2p.report.callback"):
        report.on_fit_end(trainer, None)
    economics.on_fit_end(trainer, None)
    assert "1 of 10 ledger rows break an ECONOMICS.md section-9 guarantee" in caplog.text
    assert (tmp_path / REPORT_FILE).exists()


def test_callback_warns_when_no_shift_finished(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    economics = EconomicsCallback()
    report = EconomicsReport()
    trainer = fit_trainer(tmp_path, [economics, report])
    economics.on_train_start(trainer, None)  # header only
    with caplog.at_level(logging.WARNING, logger="v2p.report.callback"):
        report.on_fit_end(trainer, None)
    economics.on_fit_end(trainer, None)
    assert "no finished shifts yet" in caplog.text
    assert not (tmp_path / REPORT_FILE).exists()


def test_callback_needs_an_economics_callback(tmp_path: Path) -> None:
    report = EconomicsReport()
    with pytest.raises(ValueError, match="EconomicsCallback"):
        report.setup(fit_trainer(tmp_path, [report]), None, "fit")
    with pytest.raises(ValueError, match="discount_rate"):
        EconomicsReport(discount_rate=-0.1)


# ---------------------------------------------------------------------------- dispatcher


def test_v2p_command_dispatches_report_and_everything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import v2p.cli
    from v2p.__main__ import main

    calls: list[list[str] | None] = []
    monkeypatch.setattr(v2p.cli, "main", lambda args=None: calls.append(args))
    assert main(["fit", "--config", "configs/x.yaml"]) == 0
    monkeypatch.setattr(sys, "argv", ["v2p", "validate", "--config", "y.yaml"])
    assert main() == 0
    assert calls == [["fit", "--config", "configs/x.yaml"], None]  # None: LightningCLI reads argv

    write_ledger(tmp_path / "economics.csv", accounted(improving(10)))
    assert main(["report", str(tmp_path), "--bootstrap", "20"]) == 0
    assert calls == [["fit", "--config", "configs/x.yaml"], None]  # report never reached it
    assert (tmp_path / REPORT_FILE).exists()
