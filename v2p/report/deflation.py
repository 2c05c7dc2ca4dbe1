"""What moved the deflation ratio: rho's trend per source, split by mechanism (ECONOMICS.md 6, 9.4).

Per effective labor hour (ELH) the customer saves ``surplus = w_h - cost`` and ``rho = 1 -
surplus / w_h``. With a spread, the customer's rebate ``R`` has two parts (section 5): its own
data's share ``s_cust * SV`` and the competitive pass-through of the platform's share, the rest
of ``R``. Spread over the ``H * q`` ELH the shift delivered (``q`` = productivity parity) they
lower the cost per ELH by ``rebate_data / (H q)`` and ``pass_through / (H q)``; what remains of
the surplus is the *price* term: the bill against the wage before any rebate (``p * MP_h -
w_h``, the damage the customer bears, fees, and the cap ``cost <= w_h``, which takes back
whatever would have made the cost exceed the wage). So per shift

    rho = 1 - rebate_data / (H q w_h) - pass_through / (H q w_h) - price / w_h

and the trend of rho is the sum of the trends of these three terms: the mechanism whose term
falls most is what moved rho. Shifts that sold no work (``q = 0``, empty cost) are left out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from v2p.report.cashflow import LinearTrend, linear_trend
from v2p.report.ledger_io import Ledger

MECHANISMS = ("rebates", "pass-through", "price and cap")


class SourceDeflation(NamedTuple):
    """rho's trend at one source, and each mechanism's part of it [rho per shift]."""

    source: str
    shifts: int  # shifts with a cost (work sold)
    trend: LinearTrend | None  # None: fewer than 3 such shifts
    parts: dict[str, float]  # slope of each mechanism's term; they add up to trend.slope
    capped: int  # shifts whose cost the cap held at w_h


def deflation_terms(ledger: Ledger) -> dict[str, np.ndarray]:
    """Per shift, each mechanism's (negative) contribution to rho, and the rows they cover."""
    cost, w_h = ledger["customer_cost"], ledger["w_h"]
    sold = np.isfinite(cost) & (ledger["prod_parity"] > 0)
    elh_wage = ledger["hours"] * ledger["prod_parity"] * w_h  # (n,) [$] the wage of the work sold
    with np.errstate(divide="ignore", invalid="ignore"):
        data = ledger["s_cust"] * ledger["spread_value"]
        rebates = -data / elh_wage
        pass_through = -(ledger["rebate"] - data) / elh_wage
        rho = cost / w_h
        price = rho - 1.0 - rebates - pass_through
    return {
        "rows": sold,
        "rho": rho,
        "rebates": rebates,
        "pass-through": pass_through,
        "price and cap": price,
    }


def deflation_by_source(ledger: Ledger, confidence: float = 0.95) -> list[SourceDeflation]:
    """rho's trend over episodes at each source, and the slope of each mechanism's term."""
    terms = deflation_terms(ledger)
    capped_rows = terms["rows"] & (ledger["customer_cost"] >= ledger["w_h"] * (1 - 1e-9))
    out = []
    for source in ledger.sources:
        rows = terms["rows"] & (ledger["source"] == source)
        episodes = ledger["episode"][rows].astype(np.float64)
        trend, parts = None, {}
        if rows.sum() >= 3 and np.unique(episodes).size >= 2:
            trend = linear_trend(episodes, terms["rho"][rows], confidence)
            for mechanism in MECHANISMS:
                parts[mechanism] = linear_trend(episodes, terms[mechanism][rows]).slope
        capped = int((capped_rows & rows).sum())
        out.append(SourceDeflation(source, int(rows.sum()), trend, parts, capped))
    return out


def _per_1000(value: float) -> str:
    return f"{value * 1000:+.4f}"


def mechanism_sentence(entry: SourceDeflation) -> str:
    """One sentence: rho's trend at the source with its CI, and what moved it."""
    trend = entry.trend
    name = f"`{entry.source}`"
    if trend is None:
        return f"{name}: {entry.shifts} shift(s) with work sold, too few for a trend."
    ci = f"{trend.confidence:.0%} CI [{_per_1000(trend.slope_low)}, {_per_1000(trend.slope_high)}]"
    slope = f"{_per_1000(trend.slope)} per 1000 shifts ({ci})"
    capped = f"; the cap held the cost at w_h on {entry.capped} shift(s)" if entry.capped else ""
    # A constant rho (every cost capped) fits a zero slope with a zero-width interval.
    if trend.slope_low <= 0 <= trend.slope_high or abs(trend.slope) < 1e-12:
        return f"{name}: no trend in ρ distinguishable from 0, {slope}: nothing moved it{capped}."
    direction = "down" if trend.slope < 0 else "up"
    # The mechanism whose term moved furthest in rho's direction.
    sign = 1.0 if trend.slope > 0 else -1.0
    mover = max(entry.parts, key=lambda m: sign * entry.parts[m])
    share = entry.parts[mover] / trend.slope
    return (
        f"{name}: ρ trends **{direction}**, {slope}, moved by the {mover} "
        f"({share:.0%} of the slope){capped}."
    )
