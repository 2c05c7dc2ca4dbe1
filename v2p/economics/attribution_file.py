"""``<log_dir>/attribution.csv``: every evaluation of every source's contribution.

One row per (evaluation, source), rewritten whole (atomically) at every evaluation from the
model's history, which its checkpoint restores, so a resumed run's table is the
uninterrupted run's. The ledger's ``delta_mpl_cust`` holds what was credited (never
negative); this table holds what was measured, negative contributions included.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import NamedTuple

from v2p.contracts import AttributionEvaluation

ATTRIBUTION_FILE = "attribution.csv"  # beside the ledger, in the run's log directory
COLUMNS = (
    "global_step",
    "env_steps",
    "source",
    "customer",
    "mpl_with",
    "mpl_without",
    "contribution",
)


def write_attribution_table(
    path: Path,
    evaluations: Sequence[AttributionEvaluation],
    source_names: Sequence[str],
    platform_sources: Collection[str],
) -> None:
    """Write ``path`` from ``evaluations``: per source, the expected MPL at its own sites with
    every source's data and without its own, and their difference [units/hr]."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for e in evaluations:
            for k, name in enumerate(source_names):
                with_k, without_k = e.site_mpl[0][k], e.site_mpl[1 + k][k]
                customer = int(name not in platform_sources)
                writer.writerow(
                    [
                        e.global_step,
                        e.env_steps,
                        name,
                        customer,
                        with_k,
                        without_k,
                        e.contributions[k],
                    ]
                )
    os.replace(tmp, path)


class SourceAttribution(NamedTuple):
    """One source's measured contributions, oldest evaluation first."""

    source: str
    customer: bool
    env_steps: list[int]
    mpl_with: list[float]  # [units/hr] at its own sites, with every source's data
    contribution: list[float]  # [units/hr] at its own sites


def read_attribution_table(path: str | os.PathLike[str]) -> list[SourceAttribution]:
    """Each source's series from an attribution table, in the table's source order."""
    path = Path(path)
    series: dict[str, SourceAttribution] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(
                f"{str(path)!r} is not an attribution table: its header is "
                f"{reader.fieldnames}, expected {list(COLUMNS)}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                name = row["source"]
                entry = series.setdefault(
                    name, SourceAttribution(name, row["customer"] == "1", [], [], [])
                )
                entry.env_steps.append(int(row["env_steps"]))
                entry.mpl_with.append(float(row["mpl_with"]))
                entry.contribution.append(float(row["contribution"]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{str(path)!r} line {line}: {exc}") from None
    return list(series.values())
