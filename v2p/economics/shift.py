"""The finished shift, as the ledger takes it in (ECONOMICS.md section 1)."""

from __future__ import annotations

from typing import NamedTuple

PLATFORM = "platform"
"""The name of the platform's own data source: the default source of every env, and the one
the platform never pays itself for (ECONOMICS.md section 7)."""


class ShiftCounts(NamedTuple):
    """What a finished shift needs for the ledger (ECONOMICS.md section 1)."""

    hours: float
    attempts: int
    errors: int
    completed: int
    price_per_unit: float
    damage_cost: float
    energy_cost: float
    human_mp: float
    # Task-model expectations of the actions taken (every economic env reports them, see
    # v2p.envs.accounting; NaN where a caller has none): the mean expected profit rate over
    # the shift's steps, and expected attempts and errors.
    expected_profit: float
    expected_attempts: float
    expected_errors: float
