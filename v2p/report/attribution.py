"""The report's data-attribution section: each source's measured contribution, the credit it
was paid, and which sources did harm (ECONOMICS.md section 7.1).

It reads ``attribution.csv`` beside a ledger (written by the EconomicsCallback when the model
measures attributions); a ledger without one gets no section.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from v2p.economics.attribution_file import (
    ATTRIBUTION_FILE,
    SourceAttribution,
    read_attribution_table,
)
from v2p.report.ledger_io import Ledger

# A contribution within this fraction of the site's MPL of 0 is not called harm: evaluation
# noise (the bench's seed-to-seed spread of worthless sources is about 1% of their sites' MPL).
HARM_BAND = 0.01


def attribution_beside(ledger: Ledger) -> list[SourceAttribution] | None:
    """The attribution table beside a ledger's file, or None if it has none."""
    path = Path(ledger.path).with_name(ATTRIBUTION_FILE)
    return read_attribution_table(path) if path.exists() else None


def harmful_sources(series: Sequence[SourceAttribution]) -> list[SourceAttribution]:
    """Customer sources whose latest measured contribution is below 0 by more than
    :data:`HARM_BAND` of their sites' MPL: their data lowers the MPL at their own sites."""
    return [
        s
        for s in series
        if s.customer and s.contribution and s.contribution[-1] < -HARM_BAND * s.mpl_with[-1]
    ]


def attribution_lines(label: str, ledger: Ledger, series: Sequence[SourceAttribution]) -> list[str]:
    """The Markdown of one run's attribution: a table per source and the harmful ones named."""
    credited = {
        source: float(np.nansum(ledger["delta_mpl_cust"][ledger["source"] == source]))
        for source in ledger.sources
    }
    rows = []
    for s in series:
        values = np.asarray(s.contribution)
        rows.append(
            f"| {s.source} | {'customer' if s.customer else 'platform'} | {values[-1]:+.2f} | "
            f"{values.max():+.2f} | {int((values < 0).sum())} of {len(values)} | "
            + (f"{credited.get(s.source, 0.0):.2f} |" if s.customer else "— |")
        )
    lines = [
        f"**{label}**: expected MPL at each source's own sites with every source's data minus "
        "without its own, from the leave-one-source-out heads, at each evaluation.",
        "",
        "| source | kind | latest contribution, units/hr | highest | evaluations below 0 | "
        "credited Σ ΔMPL_cust |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    harmful = harmful_sources(series)
    if harmful:
        named = ", ".join(
            f"**{s.source}** ({s.contribution[-1]:+.2f} units/hr, below 0 in "
            f"{sum(v < 0 for v in s.contribution)} of {len(s.contribution)} evaluations)"
            for s in harmful
        )
        lines.append(
            f"Harmful: {named}. Data named here lowers the MPL at its own sites and is "
            "credited nothing for it (section 7.1 clips ΔMPL_cust at 0)."
        )
    else:
        lines.append(
            f"No customer's latest contribution is below 0 by more than {HARM_BAND:.0%} of its "
            "sites' MPL (evaluation noise): none is named harmful."
        )
    return lines


def plot_attribution(
    runs: Sequence[tuple[str, Sequence[SourceAttribution]]], path: str | os.PathLike[str]
) -> Path:
    """Each source's contribution at its own sites over training, one panel per run."""
    fig = Figure(figsize=(9, 1.0 + 3.2 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    for ax, (label, series) in zip(axes, runs, strict=True):
        for k, s in enumerate(series):
            style = "-" if s.customer else ":"
            ax.plot(
                s.env_steps, s.contribution, style, marker="o", markersize=3, color=f"C{k % 10}",
                label=s.source,
            )  # fmt: skip
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set(
            xlabel="env steps",
            ylabel="contribution [units/hr]",
            title=f"{label}: each source's contribution to the MPL at its own sites",
        )
        ax.legend(fontsize="small", ncol=2)
        ax.grid(alpha=0.3)
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out
