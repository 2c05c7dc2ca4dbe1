"""Replay storage: what every layout keeps per transition, and the state-vector layout.

Arrays are numpy, laid out ``(per_env_capacity, num_envs, ...)`` as in Stable-Baselines3
``common/buffers.py``; a transition is addressed by its flat index ``slot * num_envs + env``.
A storage writes transitions and gathers the ones a sampler picked into a
:class:`ReplaySample`; it never draws random numbers (DrQ-v2's ``replay_buffer.py`` and TorchRL
keep storage and sampling apart in the same way).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from v2p.contracts import ReplaySample

__all__ = ["ArrayOps", "StateStorage", "TransitionStorage", "check_array", "take"]

# The per-transition fields every layout stores, in the order samples and state dicts list them.
TRANSITION_FIELDS = ("action", "reward", "err", "terminated", "source")


def take(array: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Entries of a ``(slots, num_envs, ...)`` array at ``flat = slot * num_envs + env``.

    Flat indices into the C-ordered storage make one `take` instead of a two-index gather.
    """
    return array.reshape(-1, *array.shape[2:]).take(flat, axis=0)


class ArrayOps:
    """The few array operations sampling needs, on the numpy storage (``device=None``) or on
    its torch mirror on a device, so one gather implementation serves both."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device

    def index(self, flat: np.ndarray) -> Any:
        return flat if self.device is None else torch.from_numpy(flat).to(self.device)

    def take(self, array: Any, flat: Any) -> Any:
        if self.device is None:
            return take(array, flat)
        return array.reshape(-1, *array.shape[2:]).index_select(0, flat)

    def arange(self, start: int, stop: int) -> Any:
        if self.device is None:
            return np.arange(start, stop)
        return torch.arange(start, stop, device=self.device)

    def stack(self, arrays: list[Any]) -> Any:
        return np.stack(arrays) if self.device is None else torch.stack(arrays)

    def maximum(self, a: Any, b: Any) -> Any:
        return np.maximum(a, b) if self.device is None else torch.maximum(a, b)

    def tensor(self, array: Any) -> torch.Tensor:
        if self.device is None:
            return torch.from_numpy(np.ascontiguousarray(array))
        return array if isinstance(array, torch.Tensor) else torch.from_numpy(array).to(self.device)


def check_array(
    name: str, value: np.ndarray, shape: tuple[int, ...], dtype: npt.DTypeLike
) -> np.ndarray:
    """``value`` as an array, if it has ``shape`` and casts safely to ``dtype``."""
    value = np.asarray(value)
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
    if not np.can_cast(value.dtype, dtype, casting="same_kind"):
        raise ValueError(
            f"{name} has dtype {value.dtype}, which does not cast safely to the stored "
            f"{np.dtype(dtype)}"
        )
    return value


class TransitionStorage:
    """Ring storage of the per-transition fields, shared by every layout.

    A layout (subclass) stores the observations: :meth:`_write_observations`,
    :meth:`layout_arrays`, :meth:`_sampled_names`, :meth:`_gather_observations`, and,
    where stored transitions can become unusable, :meth:`valid` and :meth:`lost_per_env`.
    """

    # Layout facts the buffer reports; a video layout overrides them.
    frame_feature_dim = 0
    clip_features = False
    frame_stack: int | None = None
    frame_capacity: int | None = None
    # Sampled arrays indexed by ring position rather than by slot.
    _ring_names: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        per_env_capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        obs_dtype: np.dtype,
    ) -> None:
        self.per_env_capacity = per_env_capacity
        self.num_envs = num_envs
        self.obs_shape = obs_shape
        self.action_dim = action_dim
        self.obs_dtype = obs_dtype
        n, n_env = per_env_capacity, num_envs
        self.pos = 0  # the slot the next add writes
        self.full = False
        self.action = np.zeros((n, n_env, action_dim), dtype=np.float32)
        self.reward = np.zeros((n, n_env), dtype=np.float32)
        self.err = np.zeros((n, n_env), dtype=np.float32)
        self.terminated = np.zeros((n, n_env), dtype=np.float32)
        self.source = np.zeros((n, n_env), dtype=np.int64)
        # Torch copies of the arrays sampling reads, on a device (see to_device); None: sample
        # from the numpy storage.
        self.device: torch.device | None = None
        self.mirror: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return (self.per_env_capacity if self.full else self.pos) * self.num_envs

    @property
    def is_empty(self) -> bool:
        """Whether nothing was ever added (so the layout may still change)."""
        return not self.full and self.pos == 0

    # ------------------------------------------------------------------- add

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        err: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        source: np.ndarray,
        episode_start: np.ndarray | None,
    ) -> int:
        """Store one transition per env (see :meth:`ReplayBuffer.add`); return its slot."""
        n_env = self.num_envs
        obs = check_array("obs", obs, (n_env, *self.obs_shape), self.obs_dtype)
        next_obs = check_array("next_obs", next_obs, (n_env, *self.obs_shape), self.obs_dtype)
        action = check_array("action", action, (n_env, self.action_dim), np.float32)
        reward = check_array("reward", reward, (n_env,), np.float32)
        err = check_array("err", err, (n_env,), np.float32)
        terminated = check_array("terminated", terminated, (n_env,), np.float32)
        source = check_array("source", source, (n_env,), np.int64)
        if episode_start is not None:
            episode_start = check_array("episode_start", episode_start, (n_env,), np.bool_)

        p = self.pos
        frames_written = self._write_observations(p, obs, next_obs, episode_start)
        self.action[p] = action
        self.reward[p] = reward
        self.err[p] = err
        self.terminated[p] = terminated
        self.source[p] = source
        if self.mirror is not None:
            self._copy_to_mirror(p, frames_written)
        self.pos = (p + 1) % self.per_env_capacity
        self.full = self.full or self.pos == 0
        return p

    def _write_observations(
        self,
        slot: int,
        obs: np.ndarray,
        next_obs: np.ndarray,
        episode_start: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Store the observations of the transitions at ``slot``; return the frame-ring
        positions written as (rows, envs), or None for layouts without a ring."""
        raise NotImplementedError

    # ---------------------------------------------------------------- arrays

    def arrays(self) -> dict[str, np.ndarray]:
        """The live storage arrays (not copies), transition fields first."""
        return self.transition_arrays() | self.layout_arrays()

    def transition_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in TRANSITION_FIELDS}

    def layout_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that hold the observations, and their bookkeeping."""
        raise NotImplementedError

    def _sampled_names(self) -> tuple[str, ...]:
        """The layout's arrays that sampling reads (the rest only checkpoints need)."""
        raise NotImplementedError

    def sampled_arrays(self) -> dict[str, np.ndarray]:
        """The storage arrays a sample reads (a subset of :meth:`arrays`)."""
        arrays = self.arrays()
        return {name: arrays[name] for name in (*TRANSITION_FIELDS, *self._sampled_names())}

    # --------------------------------------------------------------- validity

    def valid(self, flat: np.ndarray) -> np.ndarray | None:
        """Whether the transitions at ``flat`` can be served; None: all stored ones can."""
        return None

    def lost_per_env(self) -> np.ndarray:
        """``(num_envs,)``: how many of each env's oldest stored transitions cannot be served.

        Unusable transitions are always an env's oldest ones, so this count describes them all.
        """
        return np.zeros(self.num_envs, dtype=np.int64)

    def flat_by_age(self, env: np.ndarray, age: np.ndarray) -> np.ndarray:
        """Flat index of env ``env``'s ``age``-th oldest stored transition (0: the oldest)."""
        oldest = self.pos if self.full else 0
        return ((oldest + age) % self.per_env_capacity) * self.num_envs + env

    # ---------------------------------------------------------------- gather

    def gather(self, flat: np.ndarray, weight: np.ndarray | None) -> ReplaySample:
        """The transitions at flat indices ``flat`` (``(B,)``) as a sample of tensors.

        The one place where replay data becomes tensors: zero-copy views of the numpy
        storage, or gathers on the device mirror.
        """
        ops = ArrayOps(self.device if self.mirror is not None else None)
        arrays = self.mirror if self.mirror is not None else self.sampled_arrays()
        index = ops.index(flat.astype(np.int64, copy=False))
        obs, next_obs = self._gather_observations(arrays, index, ops)
        taken = {name: ops.tensor(ops.take(arrays[name], index)) for name in TRANSITION_FIELDS}
        return ReplaySample(
            obs=ops.tensor(obs),
            next_obs=ops.tensor(next_obs),
            **taken,
            index=ops.tensor(index),
            weight=None if weight is None else ops.tensor(weight),
        )

    def _gather_observations(
        self, arrays: dict[str, Any], flat: Any, ops: ArrayOps
    ) -> tuple[Any, Any]:
        raise NotImplementedError

    # ----------------------------------------------------------- device mirror

    def to_device(self, device: torch.device) -> None:
        """Copy what sampling reads to ``device`` and gather samples there from now on."""
        self.device = device
        self.mirror = {
            name: torch.from_numpy(array).to(device)
            for name, array in self.sampled_arrays().items()
        }

    def _copy_to_mirror(self, slot: int, written: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Copy one add to the mirror: row ``slot`` of the per-slot arrays (a layout with a
        frame ring copies the ring positions ``written`` itself)."""
        assert self.mirror is not None
        for name, array in self.sampled_arrays().items():
            if name not in self._ring_names:
                self.mirror[name][slot] = torch.from_numpy(array[slot]).to(self.device)


class StateStorage(TransitionStorage):
    """State observations: obs and next_obs stored whole, per transition."""

    def __init__(
        self,
        *,
        per_env_capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        obs_dtype: np.dtype,
    ) -> None:
        super().__init__(
            per_env_capacity=per_env_capacity,
            num_envs=num_envs,
            obs_shape=obs_shape,
            action_dim=action_dim,
            obs_dtype=obs_dtype,
        )
        shape = (self.per_env_capacity, self.num_envs, *self.obs_shape)
        self.obs = np.zeros(shape, dtype=self.obs_dtype)
        self.next_obs = np.zeros(shape, dtype=self.obs_dtype)

    def _write_observations(
        self,
        slot: int,
        obs: np.ndarray,
        next_obs: np.ndarray,
        episode_start: np.ndarray | None,
    ) -> None:
        self.obs[slot] = obs
        self.next_obs[slot] = next_obs

    def layout_arrays(self) -> dict[str, np.ndarray]:
        return {"obs": self.obs, "next_obs": self.next_obs}

    def _sampled_names(self) -> tuple[str, ...]:
        return ("obs", "next_obs")

    def _gather_observations(
        self, arrays: dict[str, Any], flat: Any, ops: ArrayOps
    ) -> tuple[Any, Any]:
        return ops.take(arrays["obs"], flat), ops.take(arrays["next_obs"], flat)
