"""The report's figures: one function per figure, one PNG each, every run on the same axes.

Figures are built with :class:`matplotlib.figure.Figure` directly rather than ``pyplot``: that
renders with Agg whatever backend the process has chosen, keeps no global figure registry (no
leak when a callback draws after every fit) and is safe off the main thread. Runs get the colours
``C0, C1, ...`` in order, the same in every figure. Per-shift quantities built from Poisson
counts (wages, error rate, profit) are drawn faint, with a rolling mean over them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray

from v2p.report.cashflow import CashFlowOptions, LinearTrend, NPVEstimate
from v2p.report.ledger_io import Ledger

SMOOTHING_SHIFTS = 20  # window of the rolling means drawn over noisy per-shift series
SHIFT_AXIS = "shift (episode)"
FIGURE_NAMES: tuple[str, ...] = (
    "wages",
    "errors",
    "profit",
    "spread",
    "customer",
    "deflation",
    "npv",
)
"""Figure keys, in the order the report shows them; files are ``economics_<key>.png``."""


def figure_file(name: str) -> str:
    """The PNG file name of figure ``name``."""
    return f"economics_{name}.png"


def rolling_mean(values: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """Trailing mean over ``window`` values (fewer at the start, so no value is dropped)."""
    cumulative = np.cumsum(np.concatenate(([0.0], np.asarray(values, dtype=np.float64))))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def _noisy(ax: Axes, x: NDArray, y: NDArray, color: str, label: str) -> None:
    window = min(SMOOTHING_SHIFTS, len(y))
    ax.plot(x, y, color=color, alpha=0.25, linewidth=0.7)
    ax.plot(
        x,
        rolling_mean(y, window),
        color=color,
        linewidth=1.6,
        label=f"{label} ({window}-shift mean)",
    )


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def _color(k: int) -> str:
    return f"C{k % 10}"


def plot_wages(
    ledgers: Sequence[Ledger],
    path: str | os.PathLike[str],
    markets: Sequence[Sequence[tuple[int, float]] | None] | None = None,
) -> Path:
    """Robot implied wage against the indexed human wage, and wage parity (sections 1, 4).

    ``markets``, per ledger, the market wage each indexer update read, as ``(shift, wage)``
    (:meth:`~v2p.economics.WageIndexer.market_history`), drawn as steps beside the index; a
    ledger read on its own does not know its market wage (None).
    """
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    wage_ax, parity_ax = fig.subplots(2, 1, sharex=True)
    markets = markets or [None] * len(ledgers)
    for k, (g, market) in enumerate(zip(ledgers, markets, strict=True)):
        x, color = g["episode"], _color(k)
        _noisy(wage_ax, x, g["w_hat_r"], color, f"{g.label}: robot wage w_r")
        wage_ax.plot(x, g["w_h"], color=color, linestyle="--", label=f"{g.label}: human wage w_h")
        if market:
            shifts, wages = zip(*market, strict=True)
            # Each update's wage holds until the next one, the last until the ledger ends.
            shifts, wages = [*shifts, int(x[-1])], [*wages, wages[-1]]
            wage_ax.step(
                shifts,
                wages,
                where="post",
                color=color,
                linestyle=":",
                linewidth=1.2,
                label=f"{g.label}: market wage (read at each index update)",
            )
        _noisy(parity_ax, x, g["wage_parity"], color, f"{g.label}: w_r / w_h")
    parity_ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":", label="parity")
    wage_ax.set(ylabel="wage [$/hr]", title="Robot implied wage vs the human wage benchmark")
    parity_ax.set(xlabel=SHIFT_AXIS, ylabel="wage parity w_r / w_h [ratio]")
    for ax in (wage_ax, parity_ax):
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_errors(ledgers: Sequence[Ledger], path: str | os.PathLike[str]) -> Path:
    """Error rate against the error target, with lambda on a second axis (section 3)."""
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    err_ax = fig.subplots()
    lam_ax = err_ax.twinx()
    for k, g in enumerate(ledgers):
        x, color = g["episode"], _color(k)
        _noisy(err_ax, x, g["err_rate"], color, f"{g.label}: error rate")
        err_ax.plot(x, g["err_target"], color=color, linestyle="--", label=f"{g.label}: target e*")
        lam_ax.plot(
            x, g["lambda"], color=color, linestyle=":", linewidth=1.4, label=f"{g.label}: λ"
        )
    err_ax.set(
        xlabel=SHIFT_AXIS,
        ylabel="error rate [fraction of attempts]",
        title="Error rate vs the service-level target, and its shadow price λ",
    )
    lam_ax.set_ylabel("λ [$/hr per unit of error rate]")
    handles, labels = err_ax.get_legend_handles_labels()
    more_handles, more_labels = lam_ax.get_legend_handles_labels()
    err_ax.legend(handles + more_handles, labels + more_labels, fontsize="small")
    err_ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_profit(ledgers: Sequence[Ledger], path: str | os.PathLike[str]) -> Path:
    """Profit rate and productivity parity over shifts (section 1)."""
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    profit_ax, prod_ax = fig.subplots(2, 1, sharex=True)
    for k, g in enumerate(ledgers):
        x, color = g["episode"], _color(k)
        _noisy(profit_ax, x, g["profit"], color, f"{g.label}: profit rate")
        _noisy(prod_ax, x, g["prod_parity"], color, f"{g.label}: MP_r / MP_h")
    prod_ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":", label="parity")
    profit_ax.set(
        ylabel="profit rate w_r - c_e [$/hr]", title="Profit rate and productivity parity"
    )
    prod_ax.set(xlabel=SHIFT_AXIS, ylabel="productivity parity MP_r / MP_h [ratio]")
    for ax in (profit_ax, prod_ax):
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_spread(ledgers: Sequence[Ledger], path: str | os.PathLike[str]) -> Path:
    """The spread's split over time: cumulative rebate to the customer, capture by the platform.

    Cumulative sums, because per-shift amounts are 0 on every shift below parity (section 5)
    and a per-shift plot of them is mostly spikes. The lower panel is the platform's share of the
    spread value so far.
    """
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    amount_ax, share_ax = fig.subplots(2, 1, sharex=True)
    for k, g in enumerate(ledgers):
        x, color = g["episode"], _color(k)
        captured, rebate = np.cumsum(g["captured"]), np.cumsum(g["rebate"])
        amount_ax.plot(x, captured, color=color, label=f"{g.label}: captured by the platform")
        amount_ax.plot(
            x, rebate, color=color, linestyle="--", label=f"{g.label}: rebate to customer"
        )
        value = captured + rebate
        share = np.divide(captured, value, out=np.full_like(value, np.nan), where=value > 0)
        share_ax.plot(x, share, color=color, label=f"{g.label}")
    amount_ax.set(ylabel="cumulative amount [$]", title="Spread value split: rebate and capture")
    share_ax.set(
        xlabel=SHIFT_AXIS,
        ylabel="platform share of spread value so far [fraction]",
        ylim=(-0.05, 1.05),
    )
    for ax in (amount_ax, share_ax):
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_customer(ledgers: Sequence[Ledger], path: str | os.PathLike[str]) -> Path:
    """Customer cost against the human wage, consumer surplus shaded (section 6).

    One panel per run: shaded areas of several runs on one axis would hide each other.
    """
    fig = Figure(figsize=(9, 1.0 + 3.0 * len(ledgers)), layout="constrained")
    axes = fig.subplots(len(ledgers), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for k, (ax, g) in enumerate(zip(axes, ledgers, strict=True)):
        x, color = g["episode"], _color(k)
        cost, w_h = g["customer_cost"], g["w_h"]
        ax.plot(x, w_h, color="black", linestyle="--", linewidth=1.0, label="human wage w_h")
        ax.plot(x, cost, color=color, linewidth=0.9, label="customer cost")
        ax.fill_between(
            x, cost, w_h, where=w_h > cost, color=color, alpha=0.3, label="consumer surplus"
        )
        ax.set(
            ylabel="[$ per effective labor hour]",
            title=f"{g.label}: customer cost per effective labor hour vs the human wage",
        )
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(SHIFT_AXIS)
    return _save(fig, path)


def plot_deflation(
    ledgers: Sequence[Ledger],
    trends: Sequence[LinearTrend | None],
    path: str | os.PathLike[str],
) -> Path:
    """The deflation ratio per shift with its least-squares trend and confidence band (9.4).

    ``trends[k]`` is the fit of ``ledgers[k]``, None when it has too few shifts for one.
    """
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    for k, (g, trend) in enumerate(zip(ledgers, trends, strict=True)):
        x, color = g["episode"], _color(k)
        ax.scatter(x, g["deflation_ratio"], s=5, color=color, alpha=0.35, label=f"{g.label}: ρ")
        if trend is None:
            continue
        grid = np.linspace(x.min(), x.max(), 200)
        lo, hi = trend.band(grid)
        per_1000 = 1000.0 * np.array([trend.slope, trend.slope_low, trend.slope_high])
        ax.plot(
            grid,
            trend.line(grid),
            color=color,
            linewidth=1.8,
            label=(
                f"{g.label}: trend {per_1000[0]:+.4f} per 1000 shifts "
                f"({trend.confidence:.0%} CI {per_1000[1]:+.4f} to {per_1000[2]:+.4f})"
            ),
        )
        ax.fill_between(grid, lo, hi, color=color, alpha=0.2)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.set(
        xlabel=SHIFT_AXIS,
        ylabel="deflation ratio ρ = cost / w_h [ratio]",
        title="Deflation ratio and its fitted trend (band: confidence of the fitted mean)",
    )
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_npv(
    ledgers: Sequence[Ledger],
    estimates: Sequence[NPVEstimate],
    options: CashFlowOptions,
    path: str | os.PathLike[str],
) -> Path:
    """Fleet NPV of each run with its bootstrap P5 to P95 band, side by side (section 8)."""
    fig = Figure(figsize=(max(5.0, 1.6 * len(ledgers) + 3.0), 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(ledgers))
    npv = np.array([e.npv for e in estimates])
    below = npv - np.array([e.npv_p5 for e in estimates])
    above = np.array([e.npv_p95 for e in estimates]) - npv
    ax.bar(x, npv, color=[_color(k) for k in range(len(ledgers))], alpha=0.8)
    ax.errorbar(
        x, npv, yerr=[below, above], fmt="none", ecolor="black", capsize=6, label="P5 to P95"
    )
    ax.set_xticks(x, [g.label for g in ledgers])
    ax.set(
        ylabel="fleet NPV [$]",
        title=(
            f"NPV of captured spread: {options.robots:g} robot(s), "
            f"{options.hours_per_year:g} hr/yr, {options.years} yr at {options.discount_rate:.1%}"
        ),
    )
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def write_figures(
    ledgers: Sequence[Ledger],
    trends: Sequence[LinearTrend | None],
    estimates: Sequence[NPVEstimate],
    options: CashFlowOptions,
    out_dir: str | os.PathLike[str],
    markets: Sequence[Sequence[tuple[int, float]] | None] | None = None,
) -> dict[str, Path]:
    """Every figure of the report into ``out_dir``, keyed by :data:`FIGURE_NAMES`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "wages": plot_wages(ledgers, out / figure_file("wages"), markets),
        "errors": plot_errors(ledgers, out / figure_file("errors")),
        "profit": plot_profit(ledgers, out / figure_file("profit")),
        "spread": plot_spread(ledgers, out / figure_file("spread")),
        "customer": plot_customer(ledgers, out / figure_file("customer")),
        "deflation": plot_deflation(ledgers, trends, out / figure_file("deflation")),
        "npv": plot_npv(ledgers, estimates, options, out / figure_file("npv")),
    }
    assert tuple(files) == FIGURE_NAMES, "FIGURE_NAMES must list every figure, in order"
    return files
