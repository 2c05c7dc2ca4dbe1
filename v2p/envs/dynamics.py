"""Dishwashing dynamics (ECONOMICS.md section 2), vectorised over any number of sites.

The same code steps one env (N = 1) and a batch of N envs, so single and batched envs cannot
drift apart, and the expected-value functions used for the ceiling are the ones the simulator
samples from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from v2p.economics.labor import implied_wage, profit_rate
from v2p.envs.params import DishwashingParams


def attempt_rate(
    params: DishwashingParams, kind: np.ndarray, speed: np.ndarray, care: np.ndarray
) -> np.ndarray:
    """Attempts per minute for racks of ``kind`` handled at ``(speed, care)``. Broadcasts."""
    table = params.kind_table
    base = np.maximum(0.1, table.base_rate[kind] * (0.5 + 0.5 * speed))
    return base * (1.0 - np.minimum(0.95, table.care_cost[kind]) * care)


def error_probability(
    params: DishwashingParams, kind: np.ndarray, speed: np.ndarray, care: np.ndarray
) -> np.ndarray:
    """Probability that one attempt breaks a dish. Broadcasts."""
    table = params.kind_table
    risk = table.k_err[kind] * speed**params.q_speed * (1.0 - care) ** params.q_care
    return np.clip(table.p_min[kind] + risk, 0.0, 0.5)


class ExpectedOutcome(NamedTuple):
    """Expected per-hour outcome of handling racks of one kind at one action."""

    attempts: np.ndarray  # attempts/hr
    errors: np.ndarray  # errors/hr
    p_err: np.ndarray  # error rate
    wage: np.ndarray  # robot implied wage [$/hr]
    profit: np.ndarray  # profit rate [$/hr]


def expected_outcome(
    params: DishwashingParams,
    kind: np.ndarray,
    speed: np.ndarray,
    care: np.ndarray,
    error_model: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> ExpectedOutcome:
    """Expected rates of one kind at ``(speed, care)``, from the section-1 formulas.

    The expected error rate of a step is ``p_err`` and the expected marginal product is
    ``attempts * (1 - p_err)`` per hour; the wage uses these expectations, which is how
    ECONOMICS.md section 2 defines the ceiling. ``error_model(kind, speed, care)`` replaces
    section 2's error probability (the physics env reads its measured table); broadcasts.
    """
    speed = np.clip(speed, 0.0, 1.0)
    care = np.clip(care, 0.0, 1.0)
    attempts = attempt_rate(params, kind, speed, care) * 60.0
    if error_model is None:
        p_err = error_probability(params, kind, speed, care)
    else:
        p_err = error_model(kind, speed, care)
    mp = attempts * (1.0 - p_err)
    wage = implied_wage(mp, p_err, params.price_per_unit, params.damage_cost)
    return ExpectedOutcome(
        attempts=attempts,
        errors=attempts * p_err,
        p_err=p_err,
        wage=wage,
        profit=profit_rate(wage, params.energy_cost),
    )


class StepOutcome(NamedTuple):
    """What happened at N sites in one step. Every field is shaped (N,)."""

    kind: np.ndarray  # int, the kind of rack that was handled
    attempts: np.ndarray  # int
    errors: np.ndarray  # int
    completed: np.ndarray  # int
    p_err: np.ndarray  # error probability of the action taken
    err_rate: np.ndarray  # errors / max(1, attempts) of this step
    profit: np.ndarray  # the step's profit rate [$/hr]: the reward
    expected: ExpectedOutcome  # the task model's expectation for the same kind and action


class ShiftSimulator:
    """N dishwashing sites stepped in lockstep with one random generator.

    State per site: the step index within the shift, the shift's cumulative counts, and the
    kind of the rack about to be handled (observed before acting).
    """

    def __init__(self, params: DishwashingParams, num_envs: int) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs!r}")
        self.params = params
        self.num_envs = num_envs
        self._kind_cdf = np.cumsum(params.kind_shares)
        self._kind_cdf[-1] = 1.0  # guard the last bin against float round-off
        self.kind = np.zeros(num_envs, dtype=np.int64)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.completed = np.zeros(num_envs, dtype=np.int64)
        self.attempts = np.zeros(num_envs, dtype=np.int64)
        self.errors = np.zeros(num_envs, dtype=np.int64)

    def draw_kinds(self, rng: np.random.Generator, n: int) -> np.ndarray:
        # Inverse-CDF sampling: one uniform per site, the same draw for a single env or a batch.
        return np.searchsorted(self._kind_cdf, rng.random(n), side="right")

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """Start a new shift at the sites in ``mask`` (all sites when None)."""
        idx = np.arange(self.num_envs) if mask is None else np.flatnonzero(mask)
        self.t[idx] = 0
        self.completed[idx] = 0
        self.attempts[idx] = 0
        self.errors[idx] = 0
        self.kind[idx] = self.draw_kinds(rng, idx.size)

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepOutcome:
        """Handle one rack at every site. ``actions`` is (N, 2) of (speed, care)."""
        p = self.params
        actions = np.asarray(actions, dtype=np.float64)
        if not np.isfinite(actions).all():
            raise ValueError(f"actions must be finite (speed, care) pairs, got {actions.tolist()}")
        actions = np.clip(actions, 0.0, 1.0)
        speed, care = actions[:, 0], actions[:, 1]
        kind = self.kind
        expected = expected_outcome(p, kind, speed, care)
        attempts = rng.poisson(expected.attempts * p.step_hours)
        errors = rng.binomial(attempts, expected.p_err)
        return self.record(kind, attempts, errors, expected, rng)

    def record(
        self,
        kind: np.ndarray,
        attempts: np.ndarray,
        errors: np.ndarray,
        expected: ExpectedOutcome,
        rng: np.random.Generator,
    ) -> StepOutcome:
        """Account one step whose counts were drawn elsewhere, and move to the next racks.

        The one place a step's counts become its outcome (section 1): ``completed``, ``err``,
        the profit-rate reward, the shift's running counts and the next kinds (one uniform per
        site from ``rng``). :meth:`step` draws the counts from section 2's model; the physics
        env gets them from PyBullet. Arrays are (N,); ``expected`` is the task model's
        expectation for the same kinds and actions, and supplies ``p_err``.
        """
        p = self.params
        completed = attempts - errors
        err_rate = errors / np.maximum(1, attempts)
        mp = completed / p.step_hours
        profit = profit_rate(
            implied_wage(mp, err_rate, p.price_per_unit, p.damage_cost), p.energy_cost
        )
        self.t += 1
        self.completed += completed
        self.attempts += attempts
        self.errors += errors
        self.kind = self.draw_kinds(rng, self.num_envs)
        return StepOutcome(
            kind, attempts, errors, completed, expected.p_err, err_rate, profit, expected
        )

    @property
    def truncated(self) -> np.ndarray:
        return self.t >= self.params.steps

    def state_observation(self) -> np.ndarray:
        """The state vector, (N, K + 4) float32.

        Layout: one-hot kind of the next rack (K), shift progress t/steps, then completed,
        attempts and errors so far. Counts are scaled by what a shift at the base rate
        handles, and errors by a tenth of that, so all entries are O(1).
        """
        p = self.params
        count_scale = p.base_rate * (p.step_seconds / 60.0) * p.steps
        k = len(p.dish_kinds)
        obs = np.zeros((self.num_envs, k + 4), dtype=np.float32)
        obs[np.arange(self.num_envs), self.kind] = 1.0
        obs[:, k] = self.t / p.steps
        obs[:, k + 1] = self.completed / count_scale
        obs[:, k + 2] = self.attempts / count_scale
        obs[:, k + 3] = self.errors / (0.1 * count_scale)
        return obs

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            name: getattr(self, name).copy()
            for name in ("kind", "t", "completed", "attempts", "errors")
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name, value in state.items():
            current = getattr(self, name)
            if np.shape(value) != current.shape:
                shape = np.shape(value)
                raise ValueError(
                    f"simulator state {name!r} has shape {shape}, expected {current.shape}"
                )
            current[...] = value
