"""The quality constraint as a Lagrangian (ECONOMICS.md section 3)."""

from __future__ import annotations

from typing import Any

import numpy as np

from v2p.economics._numeric import Real, RealLike, scalar_or_array
from v2p.validation import check_int, check_real, check_scalar


def lagrangian_reward(profit: RealLike, err: RealLike, lam: RealLike, err_target: RealLike) -> Real:
    """Per-step reward ``r = profit - lambda * max(0, err - e*)`` [$/hr] (section 3).

    Replay stores ``profit`` and ``err`` separately so the penalty is recomputed with the
    current ``lam`` at sampling time rather than the one in force when the step was taken.
    """
    profit = check_real("profit", profit)
    err = check_real("err", err, ge=0, le=1)
    lam = check_real("lam", lam, ge=0)
    err_target = check_real("err_target", err_target, ge=0, le=1)
    return scalar_or_array(profit - lam * np.maximum(0.0, err - err_target))


def sla_target(
    episode: RealLike,
    init: float = 0.10,
    final: float = 0.06,
    curriculum_episodes: int = 600,
) -> Real:
    """Error target ``e*`` of an episode under the linear curriculum of section 3.

    ``e*`` moves linearly from ``init`` at episode 0 to ``final`` at ``curriculum_episodes``
    and stays at ``final`` after; ``curriculum_episodes == 0`` means ``final`` from the start.
    """
    episode = check_real("episode", episode, ge=0)
    init = check_scalar("init", init, ge=0, le=1)
    final = check_scalar("final", final, ge=0, le=1)
    curriculum_episodes = check_int("curriculum_episodes", curriculum_episodes, ge=0)
    if curriculum_episodes == 0:
        progress = np.ones_like(episode)
    else:
        progress = np.minimum(1.0, episode / curriculum_episodes)
    return scalar_or_array(init + (final - init) * progress)


class DualAscent:
    """Lagrange multiplier of the service level, updated once per finished shift (section 3).

    ``lambda <- max(0, lambda + eta * (err_shift - e*))``. ``lambda`` is the shadow price of
    quality in $/hr per unit of error rate.
    """

    def __init__(self, lambda_init: float = 0.0, eta: float = 0.01) -> None:
        self._lambda = check_scalar("lambda_init", lambda_init, ge=0)
        self._eta = check_scalar("eta", eta, ge=0)

    @property
    def value(self) -> float:
        """The current multiplier ``lambda``."""
        return self._lambda

    @property
    def eta(self) -> float:
        """The dual step size."""
        return self._eta

    def update(self, err_shift: float, err_target: float) -> float:
        """Take one dual step with the shift's error rate; return the new ``lambda``."""
        err_shift = check_scalar("err_shift", err_shift, ge=0, le=1)
        err_target = check_scalar("err_target", err_target, ge=0, le=1)
        self._lambda = max(0.0, self._lambda + self._eta * (err_shift - err_target))
        return self._lambda

    def state_dict(self) -> dict[str, float]:
        """The multiplier as a plain float, so it pickles into a checkpoint.

        ``eta`` is configuration, not state: a resumed run takes it from its constructor.
        """
        return {"lambda": self._lambda}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the multiplier saved by :meth:`state_dict`."""
        self._lambda = check_scalar("state['lambda']", state["lambda"], ge=0)
