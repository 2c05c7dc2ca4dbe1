"""The per-step accounting an economic env reports in ``info`` (ECONOMICS.md section 1).

:class:`StepAccounting` is the contract between the dishwashing envs and the ledger: its fields
are the ``info`` keys a step of an economic env carries, each an (N,) array over the sites.
The synthetic and the physics envs both build it with :func:`step_accounting`, and the episode
tracker reads it back with :func:`read_accounting`, which checks it on every step.

An env is economic at a site when its step reports the record there (any of its keys, under
gymnasium's ``_key`` mask where present); it must then report every key, or the step raises
naming the missing one. An env that reports none of them (gymnasium's ``Pendulum-v1``) is not
economic: its episodes carry no shift and its error rate is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from v2p.envs.dynamics import StepOutcome
from v2p.envs.params import DishwashingParams


class StepAccounting(NamedTuple):
    """One step's accounting at N sites; each field is an ``info`` key holding an (N,) array."""

    attempts: np.ndarray  # int
    errors: np.ndarray  # int
    completed: np.ndarray  # int, attempts - errors
    p_err: np.ndarray  # error probability of the action taken
    err_rate: np.ndarray  # errors / max(1, attempts) of this step
    # Expectations of the same kind and action under the task model, so evaluation can report
    # the policy's expected profit without Poisson noise hiding a gap.
    expected_profit: np.ndarray  # [$/hr]
    expected_attempts: np.ndarray  # over the step
    expected_errors: np.ndarray  # over the step
    # The site's economic constants, per site so that sites with different task parameters can
    # be accounted side by side; a shift's hours are its length times step_hours (a sum of 60
    # one-minute steps in floating point would give 1.0000000000000013 hours).
    step_hours: np.ndarray  # [hr]
    price_per_unit: np.ndarray  # [$]
    damage_cost: np.ndarray  # [$]
    energy_cost: np.ndarray  # [$/hr]
    human_mp: np.ndarray  # [units/hr]


ACCOUNTING_KEYS: tuple[str, ...] = StepAccounting._fields
"""The ``info`` keys of an economic env's step."""


def step_accounting(params: DishwashingParams, outcome: StepOutcome) -> StepAccounting:
    """The record of one step of N sites that share ``params``."""
    n = outcome.kind.shape[0]
    return StepAccounting(
        attempts=outcome.attempts,
        errors=outcome.errors,
        completed=outcome.completed,
        p_err=outcome.p_err,
        err_rate=outcome.err_rate,
        expected_profit=outcome.expected.profit,
        expected_attempts=outcome.expected.attempts * params.step_hours,
        expected_errors=outcome.expected.errors * params.step_hours,
        step_hours=np.full(n, params.step_hours),
        price_per_unit=np.full(n, params.price_per_unit),
        damage_cost=np.full(n, params.damage_cost),
        energy_cost=np.full(n, params.energy_cost),
        human_mp=np.full(n, params.human_mp),
    )


class SiteAccounting(NamedTuple):
    """What :func:`read_accounting` found in one vector-env step."""

    economic: np.ndarray  # (N,) bool: the sites that reported the record
    record: StepAccounting | None  # None when no site did; else values valid where economic


def read_accounting(info: Mapping[str, Any], num_envs: int, env: str) -> SiteAccounting:
    """The step accounting in a vector env's ``info``, checked site by site.

    ``env`` names the env in the error. Raises ``KeyError`` when a site reports some of the
    record's keys but not all: a partial record would silently leave its shift unaccounted or
    its expectations unknown.
    """
    masks = {key: _reported(info, key, num_envs) for key in ACCOUNTING_KEYS if key in info}
    economic = np.zeros(num_envs, dtype=bool)
    for mask in masks.values():
        economic |= mask
    if not economic.any():
        return SiteAccounting(economic, None)
    for key in ACCOUNTING_KEYS:
        lacking = economic if key not in masks else economic & ~masks[key]
        if lacking.any():
            site = int(np.flatnonzero(lacking)[0])
            raise KeyError(
                f"{env} reports the step accounting at site {site} but its info lacks {key!r}: "
                f"an economic env reports every key of v2p.envs.accounting.StepAccounting "
                f"{list(ACCOUNTING_KEYS)} on every step"
            )
    return SiteAccounting(economic, StepAccounting(*(np.asarray(info[k]) for k in ACCOUNTING_KEYS)))


def error_rates(info: Mapping[str, Any], num_envs: int, env: str) -> np.ndarray:
    """Each site's error rate this step, (N,) float32: 0 where the env is not economic."""
    economic, record = read_accounting(info, num_envs, env)
    if record is None:
        return np.zeros(num_envs, dtype=np.float32)
    return np.where(economic, record.err_rate, 0.0).astype(np.float32)


def _reported(info: Mapping[str, Any], key: str, num_envs: int) -> np.ndarray:
    """The sites whose ``info[key]`` holds a value: gymnasium's ``_key`` mask, else all."""
    mask = info.get(f"_{key}")
    if mask is None:
        return np.ones(num_envs, dtype=bool)
    return np.asarray(mask, dtype=bool)
