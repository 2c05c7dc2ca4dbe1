"""Finished episodes (shifts) as typed records, accumulated from vector-env steps.

Envs that report the dishwashing accounting in ``info`` (``attempts``, ``errors``,
``completed``, ``step_hours`` and the prices) produce a :class:`ShiftCounts` with every finished
episode; any other gymnasium env produces episodes without one, and the economics is skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from v2p.contracts import EpisodeRecord, ShiftCounts

# info keys an env must report, per step, for its episodes to be accounted as shifts.
SHIFT_INFO_KEYS = ("attempts", "errors", "completed")
# Per-step constants of a site; the shift's hours are its length times step_hours (a sum of
# 60 one-minute steps in floating point would give 1.0000000000000013 hours).
PRICE_INFO_KEYS = ("step_hours", "price_per_unit", "damage_cost", "energy_cost", "human_mp")
EXPECTED_INFO_KEYS = ("expected_profit", "expected_attempts", "expected_errors")


class EpisodeTracker:
    """Per-env running sums over the current episode, vectorised over N envs."""

    def __init__(self, num_envs: int, sources: np.ndarray) -> None:
        self.num_envs = num_envs
        self.sources = np.asarray(sources, dtype=np.int64)
        self._sums: dict[str, np.ndarray] = {}
        self.reset_all()

    def reset_all(self) -> None:
        keys = ("length", "return", *SHIFT_INFO_KEYS, *EXPECTED_INFO_KEYS)
        self._sums = {key: np.zeros(self.num_envs) for key in keys}
        self._prices = {key: np.full(self.num_envs, np.nan) for key in PRICE_INFO_KEYS}

    def step(
        self, reward: np.ndarray, done: np.ndarray, info: dict[str, Any]
    ) -> list[EpisodeRecord]:
        """Add one step of every env; return records of the episodes that ended in it."""
        sums = self._sums
        sums["length"] += 1
        sums["return"] += reward
        accounted = all(key in info for key in SHIFT_INFO_KEYS + PRICE_INFO_KEYS)
        if accounted:
            for key in SHIFT_INFO_KEYS:
                sums[key] += info[key]
            for key in PRICE_INFO_KEYS:
                self._prices[key] = np.asarray(info[key], dtype=np.float64)
            for key in EXPECTED_INFO_KEYS:
                sums[key] += info[key] if key in info else np.nan
        if not done.any():
            return []
        records = [self._record(int(i), accounted) for i in np.flatnonzero(done)]
        for values in sums.values():
            values[done] = 0.0
        return records

    def _record(self, i: int, accounted: bool) -> EpisodeRecord:
        sums = self._sums
        shift = None
        if accounted:
            shift = ShiftCounts(
                hours=float(sums["length"][i] * self._prices["step_hours"][i]),
                attempts=int(sums["attempts"][i]),
                errors=int(sums["errors"][i]),
                completed=int(sums["completed"][i]),
                **{key: float(self._prices[key][i]) for key in PRICE_INFO_KEYS[1:]},
                expected_profit=float(sums["expected_profit"][i] / sums["length"][i]),
                expected_attempts=float(sums["expected_attempts"][i]),
                expected_errors=float(sums["expected_errors"][i]),
            )
        return EpisodeRecord(
            env_index=i,
            source=int(self.sources[i]),
            length=int(sums["length"][i]),
            episode_return=float(sums["return"][i]),
            shift=shift,
        )

    def state_dict(self) -> dict[str, dict[str, np.ndarray]]:
        return {
            "sums": {k: v.copy() for k, v in self._sums.items()},
            "prices": {k: v.copy() for k, v in self._prices.items()},
        }

    def load_state_dict(self, state: dict[str, dict[str, np.ndarray]]) -> None:
        self._sums = {k: np.array(v, dtype=np.float64) for k, v in state["sums"].items()}
        self._prices = {k: np.array(v, dtype=np.float64) for k, v in state["prices"].items()}
