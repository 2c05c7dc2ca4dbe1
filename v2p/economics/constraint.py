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


class PIDLagrangian:
    """PID Lagrange multiplier of the service level, updated once per finished shift (section 3).

    Stooke, Achiam and Abbeel, "Responsive Safety in Reinforcement Learning by PID Lagrangian
    Methods" (ICML 2020); OmniSafe's ``omnisafe/common/pid_lagrange.py`` is the reference
    implementation. With the gap ``g = err_shift - e*`` of each shift::

        g_s    = ema * g + (1 - ema) * g_s_prev        (g_s starts at 0)
        I     <- max(0, I + g)
        D      = max(0, g_s - g_s_prev)
        lambda = max(0, lambda_init + k_p * g_s + k_i * I + k_d * D)

    ``ema`` is the weight of the newest gap, as ``alpha`` is the wage indexer's: 1 is no
    smoothing. The integral is kept scaled by its gain, ``k_i * I`` (as OmniSafe keeps it):
    for ``k_i >= 0``, ``k_i * max(0, I + g) == max(0, k_i * I + k_i * g)``, and this form makes
    ``k_p = k_d = 0``, ``lambda_init = 0`` reproduce :class:`DualAscent` with ``eta = k_i``
    bit for bit. One difference from :class:`DualAscent` for ``lambda_init > 0``: dual ascent
    clips ``lambda`` itself at 0, so it can fall below its start, while here the integral is
    clipped and, with ``k_p = 0``, ``lambda_init`` is a floor. The two agree while every
    partial sum of the gaps is >= 0.

    The defaults are the gains measured to hold the error target on the binding state task and
    the physics task (section 3; docs/benchmarks.md, "PID Lagrangian"): plain dual ascent
    (``k_p = k_d = 0``) with ``k_i = 20``, and no smoothing. ``K_p = 2,000`` with an EMA of 0.1
    held the target too, at 5 points less held profit on the physics task (its proportional
    term turns the warm-up's random-action shifts into lambda 448). ``lambda`` is in $/hr per
    unit of error rate.
    """

    def __init__(
        self,
        lambda_init: float = 0.0,
        k_p: float = 0.0,
        k_i: float = 20.0,
        k_d: float = 0.0,
        ema: float = 1.0,
    ) -> None:
        self._lambda_init = check_scalar("lambda_init", lambda_init, ge=0)
        self._k_p = check_scalar("k_p", k_p, ge=0)
        self._k_i = check_scalar("k_i", k_i, ge=0)
        self._k_d = check_scalar("k_d", k_d, ge=0)
        self._ema = check_scalar("ema", ema, ge=0, le=1)
        self._integral = 0.0  # k_i * I
        self._gap_smooth = 0.0  # g_s
        self._gap_smooth_prev = 0.0  # g_s before the last update
        self._lambda = self._lambda_init

    @property
    def value(self) -> float:
        """The current multiplier ``lambda``."""
        return self._lambda

    @property
    def integral(self) -> float:
        """The integral term ``k_i * I`` (>= 0)."""
        return self._integral

    @property
    def gap_smooth(self) -> float:
        """The smoothed gap ``g_s`` after the last update."""
        return self._gap_smooth

    def update(self, err_shift: float, err_target: float) -> float:
        """One PID step with the shift's error rate against its target; return ``lambda``."""
        err_shift = check_scalar("err_shift", err_shift, ge=0, le=1)
        err_target = check_scalar("err_target", err_target, ge=0, le=1)
        gap = err_shift - err_target
        gap_smooth = self._ema * gap + (1.0 - self._ema) * self._gap_smooth
        self._integral = max(0.0, self._integral + self._k_i * gap)
        derivative = max(0.0, gap_smooth - self._gap_smooth)
        self._gap_smooth_prev, self._gap_smooth = self._gap_smooth, gap_smooth
        self._lambda = max(
            0.0,
            self._lambda_init + self._k_p * gap_smooth + self._integral + self._k_d * derivative,
        )
        return self._lambda

    def state_dict(self) -> dict[str, float]:
        """The controller's state as plain floats, so it pickles into a checkpoint.

        The gains, ``ema`` and ``lambda_init`` are configuration: a resumed run takes them from
        its constructor. ``integral`` is ``k_i * I``.
        """
        return {
            "integral": self._integral,
            "gap_smooth": self._gap_smooth,
            "gap_smooth_prev": self._gap_smooth_prev,
            "lambda": self._lambda,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`, or a :class:`DualAscent` state.

        A :class:`DualAscent` state holds only ``lambda``; it is read as an integral term of
        ``lambda - lambda_init`` (at least 0) with no smoothed gap, which continues the dual
        ascent exactly when ``k_p = k_d = 0`` and ``lambda_init = 0``.
        """
        lam = check_scalar("state['lambda']", state["lambda"], ge=0)
        if "integral" not in state:
            integral, gap_smooth, gap_smooth_prev = max(0.0, lam - self._lambda_init), 0.0, 0.0
        else:
            integral = check_scalar("state['integral']", state["integral"], ge=0)
            gap_smooth = check_scalar("state['gap_smooth']", state["gap_smooth"], ge=-1, le=1)
            gap_smooth_prev = check_scalar(
                "state['gap_smooth_prev']", state["gap_smooth_prev"], ge=-1, le=1
            )
        self._integral, self._gap_smooth, self._gap_smooth_prev = (
            integral,
            gap_smooth,
            gap_smooth_prev,
        )
        self._lambda = lam
