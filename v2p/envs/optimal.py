"""The ceiling every learning result is judged against (ECONOMICS.md section 2).

Each step's outcome depends only on that step's kind and action, so the best policy picks the
best expected ``(speed, care)`` per kind by grid search. With an error target the kinds are
coupled through the shift's error rate (total expected errors over total expected attempts);
the constrained optimum is found with the dual: for a multiplier ``mu`` each kind maximises
``profit - mu * (errors - e* * attempts)`` on its own, and ``mu`` is bisected until the mix
meets the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from v2p.envs.dynamics import expected_outcome
from v2p.envs.params import DishwashingParams


@dataclass(frozen=True)
class MixOutcome:
    """Expected outcome of a shift under per-kind actions."""

    profit: float  # share-weighted expected profit rate [$/hr]
    wage: float  # share-weighted expected implied wage [$/hr]
    err_rate: float  # expected errors / expected attempts over the shift


@dataclass(frozen=True)
class OptimalPolicy:
    """Best per-kind actions, and the best single action for a policy blind to the kind."""

    actions: dict[str, tuple[float, float]]  # kind -> (speed, care), for kinds in the mix
    profit: float  # expected profit rate [$/hr]: the ceiling
    err_rate: float
    wage: float
    wage_parity: float  # wage / human_wage
    multiplier: float  # dual multiplier of the error target (0 when it does not bind)
    blind_action: tuple[float, float]
    blind_profit: float
    blind_err_rate: float


def mix_outcome(params: DishwashingParams, speed: np.ndarray, care: np.ndarray) -> MixOutcome:
    """Expected shift outcome when kind k is handled at ``(speed[k], care[k])``. Both (K,)."""
    kinds = np.arange(len(params.dish_kinds))
    out = expected_outcome(params, kinds, np.asarray(speed), np.asarray(care))
    shares = params.kind_shares
    return MixOutcome(
        profit=float(shares @ out.profit),
        wage=float(shares @ out.wage),
        err_rate=float((shares @ out.errors) / max(shares @ out.attempts, 1e-12)),
    )


def optimal_policy(
    params: DishwashingParams,
    err_target: float | None = None,
    grid: int = 201,
    human_wage: float = 18.0,
) -> OptimalPolicy:
    """Grid-search ceiling of the task, optionally under the error target ``err_target``.

    Raises ValueError when no action on the grid meets the target.
    """
    if grid < 2:
        raise ValueError(f"grid must be >= 2 points per axis, got {grid!r}")
    if err_target is not None and not 0.0 <= err_target <= 1.0:
        raise ValueError(f"err_target must be in [0, 1], got {err_target!r}")
    if not human_wage > 0:
        raise ValueError(f"human_wage must be > 0, got {human_wage!r}")
    axis = np.linspace(0.0, 1.0, grid)
    speed, care = (a.ravel() for a in np.meshgrid(axis, axis, indexing="ij"))  # (G*G,)
    kinds = np.arange(len(params.dish_kinds))[:, None]
    out = expected_outcome(params, kinds, speed[None], care[None])  # each (K, G*G)
    shares = params.kind_shares
    target = 1.0 if err_target is None else err_target

    def per_kind_best(mu: float) -> np.ndarray:  # (K,) grid index per kind
        return np.argmax(out.profit - mu * (out.errors - target * out.attempts), axis=1)

    def shift_err(best: np.ndarray) -> float:
        errors, attempts = out.errors[kinds[:, 0], best], out.attempts[kinds[:, 0], best]
        return float((shares @ errors) / max(shares @ attempts, 1e-12))

    mu = 0.0
    best = per_kind_best(mu)
    if shift_err(best) > target:
        lo, hi = 0.0, 1.0
        while shift_err(per_kind_best(hi)) > target:
            hi *= 2.0
            if hi > 1e9:
                raise ValueError(f"no action on the grid meets err_target={err_target!r}")
        for _ in range(60):  # bisection to float precision of the multiplier
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if shift_err(per_kind_best(mid)) > target else (lo, mid)
        mu, best = hi, per_kind_best(hi)

    mix = mix_outcome(params, speed[best], care[best])
    blind = _best_blind_action(out, shares, target)
    blind_mix = mix_outcome(
        params, np.full(len(shares), speed[blind]), np.full(len(shares), care[blind])
    )
    return OptimalPolicy(
        actions={
            name: (float(speed[best[k]]), float(care[best[k]]))
            for k, name in enumerate(params.kind_names)
            if shares[k] > 0
        },
        profit=mix.profit,
        err_rate=mix.err_rate,
        wage=mix.wage,
        wage_parity=mix.wage / human_wage,
        multiplier=mu,
        blind_action=(float(speed[blind]), float(care[blind])),
        blind_profit=blind_mix.profit,
        blind_err_rate=blind_mix.err_rate,
    )


def _best_blind_action(out, shares: np.ndarray, target: float) -> int:
    """Grid index of the best single action for every kind that meets the target."""
    profit = shares @ out.profit  # (G*G,)
    err = (shares @ out.errors) / np.maximum(shares @ out.attempts, 1e-12)
    feasible = err <= target
    if not feasible.any():
        raise ValueError(f"no single action on the grid meets err_target={target!r}")
    return int(np.argmax(np.where(feasible, profit, -np.inf)))
