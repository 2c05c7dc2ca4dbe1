"""The one-page Markdown summary of one or more runs' ledgers, and the whole report's writer.

:func:`write_report` is what the ``v2p report`` command and the end-of-fit callback call: it
reads each ledger, checks the section-9 guarantees, estimates the section-8 cash flows and the
section-9.4 deflation trend, draws the figures and writes ``economics_report.md`` beside them.
The summary states what the ledger says, including where the spec's own formulas make a
quantity degenerate (rho = 1 whenever a spread exists).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from v2p.economics.attribution_file import SourceAttribution
from v2p.report.attribution import attribution_beside, attribution_lines, plot_attribution
from v2p.report.cashflow import (
    CashFlowOptions,
    LinearTrend,
    NPVEstimate,
    deflation_trend,
    npv_estimate,
)
from v2p.report.deflation import deflation_by_source, mechanism_sentence
from v2p.report.guarantees import GuaranteeReport, check_guarantees
from v2p.report.ledger_io import Ledger, read_ledger
from v2p.report.plots import FIGURE_NAMES, figure_file, write_figures

REPORT_FILE = "economics_report.md"
HEADLINE_WINDOW = 100  # headline means are over the last this-many shifts
FAILING_EPISODES_SHOWN = 10
_RHO_CAPPED_TOL = 1e-9


@dataclass(frozen=True)
class RunAnalysis:
    """Everything the report says about one ledger."""

    ledger: Ledger
    guarantees: GuaranteeReport
    npv: NPVEstimate
    trend: LinearTrend | None  # None: fewer than 3 shifts

    @property
    def label(self) -> str:
        return self.ledger.label


class ReportFiles(NamedTuple):
    """What :func:`write_report` wrote."""

    markdown: Path
    figures: dict[str, Path]
    runs: list[RunAnalysis]


def analyse(ledger: Ledger, options: CashFlowOptions) -> RunAnalysis:
    """Guarantees (section 9), fleet NPV (section 8) and rho trend (section 9.4) of a ledger."""
    sold = int((~np.isnan(ledger["deflation_ratio"])).sum())  # rho is empty where none sold
    trend = deflation_trend(ledger) if sold >= 3 else None
    return RunAnalysis(ledger, check_guarantees(ledger), npv_estimate(ledger, options), trend)


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short distinct names for runs: the shortest trailing parts of their folders that differ.

    ``a/version_0`` and ``b/version_0`` become ``a/version_0`` and ``b/version_0``; a single run,
    or runs in differently named folders, keep just the folder name.
    """
    folders = [Path(p).resolve().parent.parts for p in paths]
    depth = max((len(parts) for parts in folders), default=1)
    for k in range(1, depth + 1):
        labels = ["/".join(parts[-k:]) for parts in folders]
        if len(set(labels)) == len(labels):
            return labels
    # Several paths to ledgers in the same folder (e.g. economics.rank1.csv): use the files.
    return [str(Path(p)) for p in paths]


def write_report(
    ledger_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: CashFlowOptions | None = None,
    markets: Sequence[Sequence[tuple[int, float]] | None] | None = None,
) -> ReportFiles:
    """Read the ledgers, analyse them and write the figures and the Markdown into ``out_dir``.

    ``markets``: per ledger, the market wage its wage index read at each update, when known
    (the report written at the end of a fit knows it; ``v2p report`` on a ledger alone not).

    Raises what :func:`~v2p.report.ledger_io.read_ledger` raises (``NoShiftsError`` for a
    ledger without a finished shift), before anything is written.
    """
    if not ledger_paths:
        raise ValueError("ledger_paths must name at least one ledger")
    options = CashFlowOptions() if options is None else options
    paths = [Path(p) for p in ledger_paths]
    ledgers = [
        read_ledger(path, label) for path, label in zip(paths, run_labels(paths), strict=True)
    ]
    runs = [analyse(ledger, options) for ledger in ledgers]
    out = Path(out_dir)
    trends, npvs = [r.trend for r in runs], [r.npv for r in runs]
    figures = write_figures(ledgers, trends, npvs, options, out, markets)
    attributions = [attribution_beside(ledger) for ledger in ledgers]
    measured = [(g.label, a) for g, a in zip(ledgers, attributions, strict=True) if a]
    if measured:
        figures["attribution"] = plot_attribution(measured, out / figure_file("attribution"))
    markdown = out / REPORT_FILE
    summary = render_summary(runs, options, figures, out, attributions)
    markdown.write_text(summary, encoding="utf-8")
    return ReportFiles(markdown, figures, runs)


# ---------------------------------------------------------------------------- rendering


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _ratio(value: float) -> str:
    return f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def spread_capped_shifts(ledger: Ledger) -> tuple[int, int]:
    """``(capped, with_spread)``: shifts with a spread, and how many of them have ``rho == 1``.

    Under sections 5 and 6 as amended 2026-12-01 (cost per effective labor hour, pass-through
    ``pi``), a spread gives ``rho < 1`` unless nothing of it reaches the customer (``pi = 0``
    and no customer data: ``cost = p * MP_h``, which is ``w_h`` at the defaults) or a base fee
    or floor margin lifts the bill to the cap.
    """
    with_spread = ledger["spread"] > 0
    capped = with_spread & (ledger["deflation_ratio"] >= 1.0 - _RHO_CAPPED_TOL)
    return int(capped.sum()), int(with_spread.sum())


def _headline_rows(runs: Sequence[RunAnalysis]) -> list[list[str]]:
    def last(run: RunAnalysis, column: str) -> float:
        values = run.ledger[column][-HEADLINE_WINDOW:]
        values = values[np.isfinite(values)]  # the price cells of shifts that sold no work
        return float(values.mean()) if values.size else float("nan")

    rows: list[tuple[str, Callable[[RunAnalysis], str]]] = [
        ("shifts (episodes)", lambda r: f"{len(r.ledger)} ({_episode_range(r.ledger)})"),
        ("robot wage w_r [$/hr]", lambda r: _money(last(r, "w_hat_r"))),
        ("human wage w_h, last shift [$/hr]", lambda r: _money(float(r.ledger["w_h"][-1]))),
        ("wage parity w_r / w_h", lambda r: _ratio(last(r, "wage_parity"))),
        ("productivity parity MP_r / MP_h", lambda r: _ratio(last(r, "prod_parity"))),
        ("profit rate [$/hr]", lambda r: _money(last(r, "profit"))),
        (
            "error rate / target",
            lambda r: f"{last(r, 'err_rate'):.3f} / {last(r, 'err_target'):.3f}",
        ),
        ("λ, last shift [$/hr per unit error]", lambda r: f"{r.ledger['lambda'][-1]:.4g}"),
        (
            "shifts with a spread, all shifts",
            lambda r: f"{int((r.ledger['spread'] > 0).sum())} of {len(r.ledger)}",
        ),
        ("spread value, total [$]", lambda r: _money(float(r.ledger["spread_value"].sum()))),
        ("rebate to customers, total [$]", lambda r: _money(float(r.ledger["rebate"].sum()))),
        (
            "captured by the platform, total [$]",
            lambda r: _money(float(r.ledger["captured"].sum())),
        ),
        (
            "consumer surplus [$ per effective labor hour]",
            lambda r: _money(last(r, "consumer_surplus")),
        ),
        ("deflation ratio ρ", lambda r: _ratio(last(r, "deflation_ratio"))),
    ]
    return [[name, *(cell(run) for run in runs)] for name, cell in rows]


def _episode_range(ledger: Ledger) -> str:
    episodes = ledger["episode"]
    return f"{episodes[0]}–{episodes[-1]}"


def _trend_sentence(run: RunAnalysis) -> str:
    trend = run.trend
    if trend is None:
        return f"**{run.label}**: {len(run.ledger)} shift(s), too few for a trend (3 needed)."
    ci = f"{trend.confidence:.0%} CI"
    if trend.slope_low > 0:
        verdict = (
            f"ρ trends **up** ({ci} above 0): not the downward trend (structural deflation) "
            "section 9.4 expects"
        )
    elif trend.slope_high < 0:
        verdict = f"ρ trends **down** ({ci} below 0), as section 9.4 expects"
    else:
        verdict = f"no trend in ρ distinguishable from 0 ({ci} contains 0)"
    sentence = f"**{run.label}**: {verdict}."
    capped, with_spread = spread_capped_shifts(run.ledger)
    if capped:
        g = run.ledger
        rho_one = int((g["deflation_ratio"] >= 1.0 - _RHO_CAPPED_TOL).sum())
        with_surplus = int((g["consumer_surplus"] > 0).sum())
        sentence += (
            f" ρ = 1 on {rho_one} of {len(g)} shifts, {capped} of the {with_spread} with a "
            "spread among them: there the cost per effective labor hour is capped at w_h "
            "(section 6), because no rebate reached the customer (pass-through 0 and no "
            "customer data) or a base fee or floor margin lifted the bill; consumer surplus "
            f"is positive on {with_surplus} shifts here."
        )
    return sentence


def render_summary(
    runs: Sequence[RunAnalysis],
    options: CashFlowOptions,
    figures: Mapping[str, Path],
    out_dir: str | os.PathLike[str],
    attributions: Sequence[Sequence[SourceAttribution] | None] | None = None,
) -> str:
    """The one-page Markdown: runs, headline numbers, guarantees, cash flows, rho, data
    attribution (runs with an ``attribution.csv``), figures."""
    labels = [run.label for run in runs]
    out = Path(out_dir)
    lines = [f"# Economics report: {', '.join(labels)}", ""]
    for run in runs:
        g = run.ledger
        partial = (
            f"; line {g.partial_line} was incomplete (a run still writing?) and is skipped"
            if g.partial_line is not None
            else ""
        )
        lines.append(
            f"- **{run.label}**: `{g.path}`, {len(g)} finished shifts, global steps "
            f"{g['global_step'][0]}–{g['global_step'][-1]}, source(s) {', '.join(g.sources)}"
            f"{partial}."
        )

    lines += ["", f"## Headline numbers (means over the last {HEADLINE_WINDOW} shifts)", ""]
    lines += _table(["", *labels], _headline_rows(runs))

    lines += ["", "## Guarantees (ECONOMICS.md section 9, checked on every row)", ""]
    checks = runs[0].guarantees.checks
    guarantee_rows = [
        [
            f"{check.description}",
            check.section,
            *(
                f"{r.guarantees[check.name].passed}/{r.guarantees[check.name].checked}"
                + ("" if r.guarantees[check.name].ok else " **FAIL**")
                for r in runs
            ),
        ]
        for check in checks
    ]
    guarantee_rows.append(
        [
            "**rows passing every check**",
            "",
            *(f"**{r.guarantees.rows_passed}/{r.guarantees.rows}**" for r in runs),
        ]
    )
    lines += _table(["check", "section", *labels], guarantee_rows)
    for run in runs:
        for check in run.guarantees.checks:
            if not check.ok:
                shown = ", ".join(map(str, check.failing_episodes[:FAILING_EPISODES_SHOWN]))
                more = len(check.failing_episodes) - FAILING_EPISODES_SHOWN
                lines.append(
                    f"- {run.label}, {check.description}: fails at episodes {shown}"
                    + (f" and {more} more" if more > 0 else "")
                )
    lines += [
        "",
        "Sections 9.3 (capture non-decreasing in MP_r) and 9.5 (bad inputs raise) are properties "
        "of the economics functions, tested in `tests/economics`; no single row can show them.",
    ]

    lines += ["", "## Cash flows (section 8)", ""]
    cash_rows = [
        [
            "captured per robot-hour [$/hr] (P5–P95)",
            *(
                f"{_money(r.npv.captured_per_hour)} ({_money(r.npv.captured_per_hour_p5)}–"
                f"{_money(r.npv.captured_per_hour_p95)})"
                for r in runs
            ),
        ],
        ["fleet cash flow [$/yr]", *(_money(r.npv.annual) for r in runs)],
        [
            "fleet NPV [$] (P5–P95)",
            *(
                f"**{_money(r.npv.npv)}** ({_money(r.npv.npv_p5)}–{_money(r.npv.npv_p95)})"
                for r in runs
            ),
        ],
    ]
    lines += _table(["", *labels], cash_rows)
    lines += [
        "",
        f"Options: {options.robots:g} robot(s), {options.hours_per_year:g} hr/yr, "
        f"{options.years} years at a discount rate of {options.discount_rate:.1%}; band: "
        f"bootstrap over shifts, {options.bootstrap} resamples, seed {options.seed}. The rate is "
        "Σ captured / Σ hours over every shift of the run, learning included: the run's average, "
        "not its final policy's.",
    ]

    lines += ["", "## Deflation ratio ρ = cost / w_h (sections 6 and 9.4)", ""]
    trend_rows = [
        [
            "trend per 1000 shifts",
            *(f"{1000 * r.trend.slope:+.4f}" if r.trend else "—" for r in runs),
        ],
        [
            "95% CI per 1000 shifts",
            *(
                f"{1000 * r.trend.slope_low:+.4f} to {1000 * r.trend.slope_high:+.4f}"
                if r.trend
                else "—"
                for r in runs
            ),
        ],
    ]
    lines += _table(["", *labels], trend_rows)
    lines += [""] + [f"- {_trend_sentence(run)}" for run in runs]
    lines += ["", "Per source, and what moved ρ (module `v2p.report.deflation`):", ""]
    for run in runs:
        prefix = f"**{run.label}**, " if len(runs) > 1 else ""
        lines += [f"- {prefix}{mechanism_sentence(e)}" for e in deflation_by_source(run.ledger)]
    lines += [
        "",
        "ρ = 1 − (customer-data rebates + pass-through) / (H · q · w_h) − price term, per "
        "shift; each mechanism's share is its term's slope over ρ's. Least squares of ρ on "
        "episode, exact Student-t quantile (n − 2 d.f.). It assumes "
        "independent shifts; a learning run's shifts are correlated, so the true uncertainty "
        "is wider.",
    ]

    attributions = attributions or [None] * len(runs)
    measured = [(run, a) for run, a in zip(runs, attributions, strict=True) if a]
    if measured:
        lines += ["", "## Data attribution: what each source's data did (section 7.1)", ""]
        for run, series in measured:
            lines += [*attribution_lines(run.label, run.ledger, series), ""]

    links = [
        f"[{name}]({os.path.relpath(figures[name], out)})"
        for name in (*FIGURE_NAMES, "attribution")
        if name in figures
    ]
    lines += ["", "## Figures", "", " · ".join(links), ""]
    return "\n".join(lines)
