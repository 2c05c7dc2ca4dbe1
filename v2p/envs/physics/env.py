"""``v2p/DishwashingPhysics-v0``: the dishwashing job in PyBullet, seen through a camera.

Same interface and economics as the synthetic dishwashing ids (ECONOMICS.md sections 1-2):
action ``(speed, care)``, reward = the step's profit rate [$/hr], ``steps`` steps per shift
ended by truncation, and ``info`` with the keys of :func:`v2p.envs.dishwashing.step_info` plus
``task_state``. What differs is where a step's outcome comes from:

- timing: one dish takes ``60 / attempt_rate`` seconds (section 2's attempt rate, used as the
  arm's cycle time so throughput is that of the other tasks); a step fits
  ``x = step_seconds / cycle`` dishes, ``floor(x)`` of them surely and one more with
  probability ``x - floor(x)``, so the expected count is exactly the section-2 rate. (Carrying
  unused seconds into the next step instead biased throughput up by ~20%: a slow pot step's
  leftover seconds were spent on the next rack's faster plates and glasses.)
- outcome: every dish is carried and placed in PyBullet (:class:`Scene`): it breaks when the
  summed contact normal force on it exceeds its strength, a wet dish can slip during the carry
  and fall into the sink, and a dish that comes to rest out of its slot is an error;
- expectations: ``p_err`` and ``expected_*`` come from the offline-measured calibration table
  (:mod:`v2p.envs.physics.calibration`), not from section 2's formula.

The synthetic error model's parameters (``p_min``, ``k_err``, ``q_speed``, ``q_care``) mean
nothing here, so setting them raises instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from v2p.envs.dishwashing import ACTION_SPACE, DishwashingSitesVectorEnv, step_info
from v2p.envs.dynamics import (
    ExpectedOutcome,
    ShiftSimulator,
    StepOutcome,
    attempt_rate,
    expected_outcome,
)
from v2p.envs.params import DishwashingParams
from v2p.envs.physics.calibration import CalibrationTable, load_table
from v2p.envs.physics.scene import EpisodeDraw, Scene, draw_episode
from v2p.envs.physics.sites import LocalSites, WorkerSites
from v2p.envs.render import FrameHistory
from v2p.validation import check_int

SYNTHETIC_ERROR_FIELDS = ("p_min", "k_err", "q_speed", "q_care")


def physics_expected_outcome(
    params: DishwashingParams,
    table: CalibrationTable,
    kind: np.ndarray,
    speed: np.ndarray,
    care: np.ndarray,
) -> ExpectedOutcome:
    """Expected per-hour outcome under the physics: section-2 throughput, measured ``p_err``.

    Same definitions as :func:`v2p.envs.dynamics.expected_outcome` (the wage uses the expected
    marginal product ``attempts * (1 - p_err)``), with the error probability read from the
    calibration table. Broadcasts.
    """
    return expected_outcome(params, kind, speed, care, error_model=table.error_probability)


def _task_params(task_kwargs: dict[str, Any]) -> DishwashingParams:
    defaults = {f.name: f.default for f in dataclasses.fields(DishwashingParams)}
    for name in SYNTHETIC_ERROR_FIELDS:
        if name in task_kwargs and task_kwargs[name] != defaults[name]:
            raise ValueError(
                f"{name}={task_kwargs[name]!r} is a parameter of the synthetic error model; in "
                "v2p/DishwashingPhysics-v0 the error probability comes from the simulation"
            )
    if "dish_kinds" in task_kwargs:
        raise ValueError(
            "dish_kinds is a parameter of the synthetic task; the physics env simulates the "
            "default kinds (v2p/envs/physics/kinds.py)"
        )
    return DishwashingParams(**task_kwargs)


class DishwashingPhysicsEnv(gym.Env[np.ndarray, np.ndarray]):
    """One site in PyBullet with camera clips ``(T, 3, H, W)`` uint8 as observations.

    Args:
        frames, height, width: clip shape (default (8, 3, 64, 64), as the synthetic video env).
        render_mode: ``"rgb_array"`` for :meth:`render` frames of ``render_size`` pixels.
        render_size: side of the ``render()`` frame (physics option; the observation camera
            is the same, only larger).
        **task_kwargs: fields of :class:`DishwashingParams` (economics, timing, dish mix).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        frames: int = 8,
        height: int = 64,
        width: int = 64,
        render_mode: str | None = None,
        render_size: int = 256,
        **task_kwargs: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, "
                f"got {render_mode!r}"
            )
        check_int("frames", frames, ge=1)
        check_int("height", height, ge=16)
        check_int("width", width, ge=16)
        check_int("render_size", render_size, ge=16)
        self.params = _task_params(task_kwargs)
        self.table = load_table()
        self.render_mode = render_mode
        self.render_size = render_size
        self.frame_shape = (height, width)
        # Bookkeeping and accounting (ShiftSimulator.record: counters, kind draws, the step's
        # section-1 outcome, the task_state layout); the counts come from the physics, never
        # from the simulator's Poisson/Binomial step.
        self.sim = ShiftSimulator(self.params, num_envs=1)
        self.scene = Scene()
        self.history = FrameHistory(1, frames, height, width)
        self.observation_space = spaces.Box(0, 255, (frames, 3, height, width), dtype=np.uint8)
        self.action_space = ACTION_SPACE
        self.episode: EpisodeDraw | None = None
        # Shift totals by cause: broken, slipped (broken or not), misaligned.
        self.breakdown = np.zeros(3, dtype=np.int64)

    # ------------------------------------------------------------------ gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.sim.reset(self.np_random)
        self.episode = draw_episode(self.np_random)
        self.breakdown[:] = 0
        self.history.fill(self._frame()[None])
        info = {"kind": int(self.sim.kind[0]), "task_state": self._task_state()}
        return self.history.clips()[0], info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        outcome = self.advance(action)
        info = {key: value[0].item() for key, value in step_info(self.params, outcome).items()}
        info["task_state"] = self._task_state()
        truncated = bool(self.sim.truncated[0])
        return self.history.clips()[0], float(outcome.profit[0]), False, truncated, info

    def render(self) -> np.ndarray | None:
        """An (H, W, 3) frame of the observation camera at ``render_size`` pixels."""
        if self.render_mode != "rgb_array":
            return None
        if self.episode is None:
            raise RuntimeError("call reset() before render()")
        frame = self._frame(self.render_size, self.render_size)
        return np.ascontiguousarray(frame.transpose(1, 2, 0))

    def close(self) -> None:
        self.scene.close()
        super().close()

    # ------------------------------------------------------------------ the physics step

    def advance(self, action: np.ndarray) -> StepOutcome:
        """Work one step at ``action``; counts as (1,) arrays (shared with the vector env)."""
        if self.episode is None:
            raise RuntimeError("call reset() before step()")
        if self.sim.truncated[0]:
            raise RuntimeError(f"the shift is over after {self.params.steps} steps; call reset()")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"action must have shape (2,) = (speed, care), got {action.shape}")
        if not np.isfinite(action).all():
            raise ValueError(f"action must be a finite (speed, care) pair, got {action.tolist()}")
        speed, care = np.clip(action, 0.0, 1.0)
        p, sim = self.params, self.sim
        kind = sim.kind.copy()
        dishes = p.step_seconds * float(attempt_rate(p, kind, speed, care)[0]) / 60.0
        whole = int(dishes)
        attempts = whole + int(self.np_random.random() < dishes - whole)
        errors = 0
        for _ in range(attempts):
            result = self.scene.attempt(int(kind[0]), speed, care, self.episode, self.np_random)
            errors += result.error
            self.breakdown += (result.broken, result.slipped, result.misaligned)
        expected = physics_expected_outcome(p, self.table, kind, speed, care)
        outcome = sim.record(
            kind, np.array([attempts]), np.array([errors]), expected, self.np_random
        )
        self.history.push(self._frame()[None])
        return outcome

    def _frame(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """The camera's view of the next rack, (3, H, W) uint8."""
        h, w = (height, width) if height is not None else self.frame_shape
        sim = self.sim
        progress = float(sim.t[0]) / self.params.steps
        return self.scene.render(int(sim.kind[0]), progress, int(sim.errors[0]), self.episode, w, h)

    def _task_state(self) -> np.ndarray:
        """The state vector behind the clip, float32 (K + 4,): the state env's layout."""
        return self.sim.state_observation()[0].copy()

    # ------------------------------------------------------------------ exact resume

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: every attempt starts from the scene's one
        snapshot, so the physics holds no state between steps beyond what is saved here."""
        if self.episode is None:
            raise RuntimeError("call reset() before state_dict()")
        return {
            "sim": self.sim.state_dict(),
            "episode": {k: np.array(v) for k, v in self.episode._asdict().items()},
            "breakdown": self.breakdown.copy(),
            "history": self.history.state_dict(),
            "rng": self.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sim.load_state_dict(state["sim"])
        self.episode = EpisodeDraw(**{k: np.asarray(v) for k, v in state["episode"].items()})
        self.breakdown[:] = np.asarray(state["breakdown"])
        self.history.load_state_dict(state["history"])
        self.np_random.bit_generator.state = state["rng"]


class DishwashingPhysicsVectorEnv(DishwashingSitesVectorEnv):
    """N physics sites with same-step autoreset, stepped in this process or, with
    ``workers > 1``, split over that many worker processes (:mod:`v2p.envs.physics.sites`).

    Registered as the vector entry point because gymnasium's sync vector env with SAME_STEP
    autoreset moves a finished shift's last step info into ``info["final_info"]`` and puts the
    reset info in its place, which would drop the last step's accounting from the ledger. Here,
    as in :class:`v2p.envs.dishwashing.DishwashingVectorEnv`, ``info`` is always the step's and
    ``info["final_obs"]`` holds the finished shift's last clip. Site ``i`` is seeded
    ``seed + i`` and keeps its own generator, so the worker count changes nothing but speed.
    """

    def __init__(self, num_envs: int = 1, workers: int = 1, **env_kwargs: Any) -> None:
        check_int("num_envs", num_envs, ge=1)
        check_int("workers", workers, ge=1)
        if workers == 1:
            self.sites = LocalSites(num_envs, env_kwargs)
            first = self.sites.envs[0]
        else:
            first = DishwashingPhysicsEnv(**env_kwargs)  # bad arguments raise here, not in a worker
            try:
                self.sites = WorkerSites(num_envs, env_kwargs, workers)
            finally:
                first.close()
        self.params = first.params
        self._init_sites(num_envs, first.observation_space)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        mask = self._reset_mask(options)
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, bool)
        seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        obs, kinds = self.sites.reset(seeds, mask)
        return obs, {"kind": kinds}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = self._check_actions(actions)
        step = self.sites.step(actions)
        info = self._step_info(self.params, step.outcome)
        if step.final_obs is not None:
            info["final_obs"] = step.final_obs
            info["_final_obs"] = step.truncated
        terminated = np.zeros(self.num_envs, dtype=bool)
        return step.obs, step.outcome.profit, terminated, step.truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self.sites.close()

    def state_dict(self) -> dict[str, Any]:
        return {"envs": self.sites.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["envs"]) != self.num_envs:
            raise ValueError(
                f"state holds {len(state['envs'])} envs, this vector env has {self.num_envs}"
            )
        self.sites.load_state_dict(state["envs"])
        self._started = True
