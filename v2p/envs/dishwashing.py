"""Gymnasium envs of the dishwashing job: one site (``gymnasium.make``) or N (``make_vec``).

Action ``Box(0, 1, (2,))`` = ``(speed, care)``; reward = the step's profit rate [$/hr]; a shift
is ``steps`` steps and ends by truncation. ``info`` carries the step's kind, counts, ``p_err``,
``err_rate`` and the economics needed to account for the shift (ECONOMICS.md section 1), as
declared by :class:`~v2p.envs.accounting.StepAccounting`.
Constructor keyword arguments are the fields of :class:`DishwashingParams`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from v2p.envs.accounting import step_accounting
from v2p.envs.dynamics import ShiftSimulator, StepOutcome
from v2p.envs.observations import ClipObservation, StateObservation
from v2p.envs.params import DishwashingParams
from v2p.envs.render import DEFAULT_LIGHTING, FrameRenderer, check_lighting

ObservationModel = StateObservation | ClipObservation
ACTION_SPACE = spaces.Box(0.0, 1.0, (2,), dtype=np.float32)


def step_info(params: DishwashingParams, outcome: StepOutcome) -> dict[str, np.ndarray]:
    """Per-site info arrays (N,) of one step: the rack's kind and the step's accounting
    (:class:`~v2p.envs.accounting.StepAccounting`, whose fields are the keys)."""
    return {"kind": outcome.kind, **step_accounting(params, outcome)._asdict()}


def make_observation_model(
    sim: ShiftSimulator,
    clip_shape: tuple[int, int, int] | None,
    lighting: tuple[float, float, float] = DEFAULT_LIGHTING,
) -> ObservationModel:
    """The state vector when ``clip_shape`` is None, else clips of (frames, height, width)
    rendered under ``lighting``."""
    if clip_shape is None:
        return StateObservation(sim)
    return ClipObservation(sim, *clip_shape, lighting=lighting)


class _SimulatorState:
    """Checkpointable state shared by the single and vector envs: simulator, observation, RNG."""

    _clip_shape: tuple[int, int, int] | None = None  # set by the video envs
    _lighting: tuple[float, float, float] = DEFAULT_LIGHTING  # set by the video envs
    sim: ShiftSimulator
    observation_model: ObservationModel
    np_random: np.random.Generator

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the env exactly where it is (for exact resume)."""
        return {
            "sim": self.sim.state_dict(),
            "observation": self.observation_model.state_dict(),
            "rng": self.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sim.load_state_dict(state["sim"])
        self.observation_model.load_state_dict(state["observation"])
        self.np_random.bit_generator.state = state["rng"]


class DishwashingEnv(_SimulatorState, gym.Env[np.ndarray, np.ndarray]):
    """One dishwashing site with a state-vector observation (``v2p/Dishwashing-v0``)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **task_kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, "
                f"got {render_mode!r}"
            )
        self.params = DishwashingParams(**task_kwargs)
        self.sim = ShiftSimulator(self.params, num_envs=1)
        self.observation_model = make_observation_model(self.sim, self._clip_shape, self._lighting)
        self.observation_space = self.observation_model.space
        self.action_space = ACTION_SPACE
        self.render_mode = render_mode
        self._viewer: FrameRenderer | None = None
        self._started = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.sim.reset(self.np_random)
        self.observation_model.reset()
        self._started = True
        info = {"kind": int(self.sim.kind[0]), "task_state": self._task_state()}
        return self.observation_model.observe()[0], info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self.sim.truncated[0]:
            raise RuntimeError(f"the shift is over after {self.params.steps} steps; call reset()")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"action must have shape (2,) = (speed, care), got {action.shape}")
        outcome = self.sim.step(action[None], self.np_random)
        self.observation_model.advance()
        info = {key: value[0].item() for key, value in step_info(self.params, outcome).items()}
        info["task_state"] = self._task_state()
        obs = self.observation_model.observe()[0]
        return obs, float(outcome.profit[0]), False, bool(self.sim.truncated[0]), info

    def _task_state(self) -> np.ndarray:
        """The state vector behind the observation (float32 (K + 4,)), also for video envs:
        recordings keep it so a linear probe can score what an encoder saw."""
        return self.sim.state_observation()[0].copy()

    def render(self) -> np.ndarray | None:
        """An (H, W, 3) picture of the site: the synthetic camera frame at 256x256."""
        if self.render_mode != "rgb_array":
            return None
        if self._viewer is None:
            self._viewer = FrameRenderer(256, 256, lighting=self._lighting)
        sim = self.sim
        frame = self._viewer.render(sim.kind, sim.t / self.params.steps, sim.completed, sim.errors)
        return np.ascontiguousarray(frame[0].transpose(1, 2, 0))


class DishwashingSitesVectorEnv(VectorEnv):
    """What every V2P vector env of dishwashing sites shares: spaces, same-step autoreset, the
    reset mask, action checks and the per-site step info (the synthetic and physics envs)."""

    metadata: ClassVar[dict[str, Any]] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": [],
    }

    def _init_sites(self, num_envs: int, single_observation_space: spaces.Space) -> None:
        self.num_envs = num_envs
        self.single_observation_space = single_observation_space
        self.single_action_space = ACTION_SPACE
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._all_sites = np.ones(num_envs, dtype=bool)
        self._started = False

    def _reset_mask(self, options: dict[str, Any] | None) -> np.ndarray | None:
        """The sites to reset (None: all); marks the env started."""
        mask = None if options is None else options.get("reset_mask")
        if mask is not None and not self._started:
            raise ValueError("the first reset must reset every site; pass no reset_mask")
        self._started = True
        return mask

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, 2):
            raise ValueError(
                f"actions must have shape ({self.num_envs}, 2) = (num_envs, (speed, care)), "
                f"got {actions.shape}"
            )
        return actions

    def _step_info(self, params: DishwashingParams, outcome: StepOutcome) -> dict[str, Any]:
        """:func:`step_info` with gymnasium's per-key masks (every site reports every key)."""
        info: dict[str, Any] = step_info(params, outcome)
        for key in list(info):
            info[f"_{key}"] = self._all_sites
        return info


class DishwashingVectorEnv(_SimulatorState, DishwashingSitesVectorEnv):
    """N dishwashing sites stepped together with numpy arrays, no Python loop over sites.

    Autoreset is same-step: when a shift ends, the returned observation already starts the
    next shift and ``info["final_obs"]`` (masked by ``info["_final_obs"]``) holds the last
    observation of the finished one, which is what a replay buffer needs as ``next_obs``.
    """

    def __init__(self, num_envs: int = 1, **task_kwargs: Any) -> None:
        self.params = DishwashingParams(**task_kwargs)
        self.sim = ShiftSimulator(self.params, num_envs)
        self.observation_model = make_observation_model(self.sim, self._clip_shape, self._lighting)
        self._init_sites(num_envs, self.observation_model.space)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        mask = self._reset_mask(options)
        self.sim.reset(self.np_random, mask)
        self.observation_model.reset(mask)
        return self.observation_model.observe(), {"kind": self.sim.kind.copy()}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = self._check_actions(actions)
        outcome = self.sim.step(actions, self.np_random)
        self.observation_model.advance()
        truncated = self.sim.truncated.copy()
        info = self._step_info(self.params, outcome)
        if truncated.any():
            info["final_obs"] = self.observation_model.observe()
            info["_final_obs"] = truncated
            self.sim.reset(self.np_random, truncated)
            self.observation_model.reset(truncated)
        obs = self.observation_model.observe()
        terminated = np.zeros(self.num_envs, dtype=bool)
        return obs, outcome.profit, terminated, truncated, info


class DishwashingVideoEnv(DishwashingEnv):
    """One site seen through synthetic camera clips ``(T, 3, H, W)`` uint8.

    ``lighting``: RGB gains of the camera's palette (see :class:`FrameRenderer`); the default
    ``(1, 1, 1)`` is the standard scene.
    """

    def __init__(
        self,
        frames: int = 8,
        height: int = 64,
        width: int = 64,
        render_mode: str | None = None,
        lighting: tuple[float, float, float] = DEFAULT_LIGHTING,
        **task_kwargs: Any,
    ) -> None:
        self._clip_shape = (frames, height, width)
        self._lighting = check_lighting(lighting)
        super().__init__(render_mode=render_mode, **task_kwargs)


class DishwashingVideoVectorEnv(DishwashingVectorEnv):
    """N sites seen through synthetic camera clips, (N, T, 3, H, W) uint8, under ``lighting``
    (as :class:`DishwashingVideoEnv`)."""

    def __init__(
        self,
        num_envs: int = 1,
        frames: int = 8,
        height: int = 64,
        width: int = 64,
        lighting: tuple[float, float, float] = DEFAULT_LIGHTING,
        **task_kwargs: Any,
    ) -> None:
        self._clip_shape = (frames, height, width)
        self._lighting = check_lighting(lighting)
        super().__init__(num_envs=num_envs, **task_kwargs)
