"""Check the ECONOMICS.md section-9 guarantees on every row of a ledger.

Each check is a per-row mask over the ledger; a row passes when no applicable check fails.
Section 9.3 (``captured`` non-decreasing in ``MP_r``) compares hypothetical inputs and 9.5 (bad
inputs raise) is about function calls: neither is a property of one ledger row, so both are left
to the economics tests; :func:`~v2p.report.ledger_io.read_ledger` already rejects non-finite
values. Section 10's "no shift lost, none twice" is checked as consecutive episode numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from v2p.report.ledger_io import Ledger

# Ledger floats are written with repr and read back exactly, so the only slack needed is the
# rounding of the accountant's own arithmetic (a few ulps of the amounts involved).
ATOL = 1e-9
RTOL = 1e-9


@dataclass(frozen=True)
class CheckResult:
    """One guarantee over a ledger: how many rows it applied to and which episodes broke it."""

    name: str
    section: str  # ECONOMICS.md section, e.g. "9.1"
    description: str
    checked: int  # rows the check applies to
    failing_episodes: tuple[int, ...]

    @property
    def passed(self) -> int:
        return self.checked - len(self.failing_episodes)

    @property
    def ok(self) -> bool:
        return not self.failing_episodes


@dataclass(frozen=True)
class GuaranteeReport:
    """Every check over one ledger, and how many rows passed all of them."""

    rows: int
    rows_passed: int
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return self.rows_passed == self.rows

    def __getitem__(self, name: str) -> CheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check {name!r}; the checks are {[c.name for c in self.checks]}")


def check_guarantees(ledger: Ledger, *, atol: float = ATOL, rtol: float = RTOL) -> GuaranteeReport:
    """Run every check on every row of ``ledger`` (ECONOMICS.md sections 5, 9 and 10).

    A value passes a comparison within ``atol + rtol * |value|``. Each :class:`CheckResult`
    lists the episode numbers of the rows that fail it, in ledger order.
    """
    g = ledger

    def differ(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.bool_]:
        return np.abs(a - b) > atol + rtol * np.maximum(np.abs(a), np.abs(b))

    every_row = np.ones(len(g), dtype=bool)
    # Cost, surplus and rho are empty (NaN) where a shift sold no work (section 6): nothing to
    # check there, and the count of checked rows says so.
    sold = ~np.isnan(g["customer_cost"])
    prices = ("customer_cost", "consumer_surplus", "deflation_ratio")
    priced = np.stack([~np.isnan(g[c]) for c in prices])  # (3, rows)
    has_spread = g["spread"] > 0
    shares = np.stack([g["s_cust"], g["s_plat"]])  # (2, rows)
    split = np.stack([g[c] for c in ("s_cust", "s_plat", "spread_value", "rebate", "captured")])
    episode = g["episode"]
    previous_plus_one = np.concatenate(([0], episode[:-1] + 1))  # a ledger starts at shift 0
    # (name, section, description, rows the check applies to, rows that fail it)
    checks = (
        (
            "surplus_non_negative",
            "9.1",
            "consumer surplus >= 0",
            ~np.isnan(g["consumer_surplus"]),
            g["consumer_surplus"] < -atol,
        ),
        (
            "cost_at_most_w_h",
            "9.1",
            "customer cost <= w_h",
            sold,
            g["customer_cost"] > g["w_h"] + atol + rtol * np.abs(g["w_h"]),
        ),
        (
            "split_adds_up",
            "9.2",
            "rebate + captured = spread value",
            every_row,
            differ(g["rebate"] + g["captured"], g["spread_value"]),
        ),
        (
            "shares_in_unit_interval",
            "9.2",
            "s_cust and s_plat in [0, 1]",
            every_row,
            np.any((shares < -atol) | (shares > 1 + atol), axis=0),
        ),
        (
            "shares_sum_to_one",
            "9.2",
            "s_cust + s_plat = 1 where a spread exists",
            has_spread,
            differ(g["s_cust"] + g["s_plat"], np.ones(len(g))),
        ),
        (
            "no_spread_no_split",
            "5",
            "no spread: shares and amounts all 0",
            ~has_spread,
            np.any(np.abs(split) > atol, axis=0),
        ),
        (
            "rho_at_most_one",
            "9.4",
            "deflation ratio <= 1",
            ~np.isnan(g["deflation_ratio"]),
            g["deflation_ratio"] > 1 + atol,
        ),
        (
            "priced_where_work_was_sold",
            "6",
            "cost, surplus and rho empty exactly where MP_r = 0",
            every_row,
            np.any(priced != (g["mp_r"] > 0), axis=0),
        ),
        (
            "episodes_consecutive",
            "10",
            "episodes 0, 1, 2, ...: no shift lost or repeated",
            every_row,
            episode != previous_plus_one,
        ),
    )
    any_failed = np.zeros(len(g), dtype=bool)
    results = []
    for name, section, description, scope, fails in checks:
        failed = scope & fails
        any_failed |= failed
        results.append(
            CheckResult(
                name=name,
                section=section,
                description=description,
                checked=int(scope.sum()),
                failing_episodes=tuple(int(e) for e in episode[failed]),
            )
        )
    return GuaranteeReport(rows=len(g), rows_passed=int((~any_failed).sum()), checks=tuple(results))
