"""What a site shows the policy: the state vector, or a clip of synthetic camera frames.

An observation model wraps the batched simulator, so the single and vector envs of either
modality share one implementation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from v2p.envs.dynamics import ShiftSimulator
from v2p.envs.params import DISH_KINDS
from v2p.envs.render import DEFAULT_LIGHTING, FrameHistory, FrameRenderer


class StateObservation:
    """The simulator's state vector (see :meth:`ShiftSimulator.state_observation`)."""

    def __init__(self, sim: ShiftSimulator) -> None:
        self.sim = sim
        k = len(sim.params.dish_kinds)
        high = np.full(k + 4, np.inf, dtype=np.float32)
        high[: k + 1] = 1.0  # one-hot and progress are bounded; counts are not
        self.space = spaces.Box(low=0.0, high=high, dtype=np.float32)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Called after the simulator reset the masked sites."""

    def advance(self) -> None:
        """Called after every simulator step."""

    def observe(self) -> np.ndarray:
        return self.sim.state_observation()  # (N, K + 4)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state  # the state vector is a function of the simulator alone


class ClipObservation:
    """Clips of the last ``frames`` synthetic frames, uint8 (N, T, 3, H, W)."""

    def __init__(
        self,
        sim: ShiftSimulator,
        frames: int = 8,
        height: int = 64,
        width: int = 64,
        lighting: tuple[float, float, float] = DEFAULT_LIGHTING,
    ) -> None:
        if sim.params.dish_kinds != DISH_KINDS:
            raise ValueError(
                f"the camera draws the default dish kinds {[k.name for k in DISH_KINDS]} only; "
                f"dish_kinds {list(sim.params.kind_names)} needs the state observation"
            )
        self.sim = sim
        self.renderer = FrameRenderer(height, width, lighting=lighting)
        self.history = FrameHistory(sim.num_envs, frames, height, width)
        self.space = spaces.Box(0, 255, (frames, 3, height, width), dtype=np.uint8)
        self._frame = np.empty((sim.num_envs, 3, height, width), dtype=np.uint8)

    def _render(self) -> np.ndarray:
        sim = self.sim
        progress = sim.t / sim.params.steps
        return self.renderer.render(sim.kind, progress, sim.completed, sim.errors, out=self._frame)

    def reset(self, mask: np.ndarray | None = None) -> None:
        frame = self._render()
        self.history.fill(frame if mask is None else frame[mask], mask)

    def advance(self) -> None:
        self.history.push(self._render())

    def observe(self) -> np.ndarray:
        return self.history.clips()

    def state_dict(self) -> dict[str, Any]:
        return self.history.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history.load_state_dict(state)
