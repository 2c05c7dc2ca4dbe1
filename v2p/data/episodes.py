"""Finished episodes (shifts) as typed records, accumulated from vector-env steps.

Economic envs report the step accounting declared by :class:`~v2p.envs.accounting.StepAccounting`
in ``info`` and produce a :class:`ShiftCounts` with every finished episode; any other gymnasium
env produces episodes without one, and the economics is skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from v2p.contracts import EpisodeRecord, ShiftCounts
from v2p.envs.accounting import read_accounting

# Summed over the episode's steps.
SHIFT_INFO_KEYS = ("attempts", "errors", "completed")
EXPECTED_INFO_KEYS = ("expected_profit", "expected_attempts", "expected_errors")
# Per-step constants of a site, kept from its latest step.
PRICE_INFO_KEYS = ("step_hours", "price_per_unit", "damage_cost", "energy_cost", "human_mp")


class EpisodeTracker:
    """Per-env running sums over the current episode, vectorised over N envs.

    ``env`` names the env in the error a step with a partial accounting record raises.
    """

    def __init__(self, num_envs: int, sources: np.ndarray, env: str = "the env") -> None:
        self.num_envs = num_envs
        self.sources = np.asarray(sources, dtype=np.int64)
        self.env = env
        self._sums: dict[str, np.ndarray] = {}
        self.reset_all()

    def reset_all(self) -> None:
        keys = ("length", "return", "random_steps", *SHIFT_INFO_KEYS, *EXPECTED_INFO_KEYS)
        self._sums = {key: np.zeros(self.num_envs) for key in keys}
        self._prices = {key: np.full(self.num_envs, np.nan) for key in PRICE_INFO_KEYS}

    def step(
        self,
        reward: np.ndarray,
        done: np.ndarray,
        info: dict[str, Any],
        random_actions: bool = False,
    ) -> list[EpisodeRecord]:
        """Add one step of every env; return records of the episodes that ended in it.
        ``random_actions``: the step's actions were the warm-up's, not the policy's.

        Raises ``KeyError`` when a site's accounting record is partial, or when a site that
        reported it before (its prices are known) reports none of it.
        """
        sums = self._sums
        sums["length"] += 1
        sums["return"] += reward
        sums["random_steps"] += float(random_actions)
        economic, record = read_accounting(info, self.num_envs, self.env)
        stopped = economic < ~np.isnan(self._prices["step_hours"])
        if stopped.any():
            site = int(np.flatnonzero(stopped)[0])
            raise KeyError(
                f"{self.env} reported the step accounting at site {site} (source "
                f"{int(self.sources[site])}) before but not in this step"
            )
        if record is not None:
            values = record._asdict()
            if economic.all():
                for key in SHIFT_INFO_KEYS + EXPECTED_INFO_KEYS:
                    sums[key] += values[key]
                for key in PRICE_INFO_KEYS:
                    self._prices[key] = np.asarray(values[key], dtype=np.float64)
            else:  # sources of which only some are economic (a ConcatVectorEnv)
                for key in SHIFT_INFO_KEYS + EXPECTED_INFO_KEYS:
                    sums[key][economic] += values[key][economic]
                for key in PRICE_INFO_KEYS:
                    self._prices[key][economic] = values[key][economic]
        if not done.any():
            return []
        records = [self._record(int(i), bool(economic[i])) for i in np.flatnonzero(done)]
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
            random_steps=int(sums["random_steps"][i]),
        )

    def state_dict(self) -> dict[str, dict[str, np.ndarray]]:
        return {
            "sums": {k: v.copy() for k, v in self._sums.items()},
            "prices": {k: v.copy() for k, v in self._prices.items()},
        }

    def load_state_dict(self, state: dict[str, dict[str, np.ndarray]]) -> None:
        self._sums = {k: np.array(v, dtype=np.float64) for k, v in state["sums"].items()}
        # Checkpoints from before random_steps was counted (2026-12-02): none counted.
        self._sums.setdefault("random_steps", np.zeros(self.num_envs))
        self._prices = {k: np.array(v, dtype=np.float64) for k, v in state["prices"].items()}
