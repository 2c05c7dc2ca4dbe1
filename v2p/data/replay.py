"""Replay memory for N environments stepped in lockstep by a batched (vector) env.

Storage is numpy, laid out ``(per_env_capacity, num_envs, ...)`` as in Stable-Baselines3
``common/buffers.py``; samples come out as a typed :class:`ReplaySample` of CPU tensors (Lightning
moves the batch to the device).

Two storage layouts share one API:

* state observations (``frame_stack=None``): obs and next_obs are stored per transition;
* video observations (``frame_stack=T``, ``obs_shape=(T, C, H, W)``): the clips are frame
  histories, so each frame is stored once, in a per-env ring, and the stacks are rebuilt at sample
  time (the DrQ-v2 ``replay_buffer.py`` idea, vectorised over envs and batch). A video transition
  then costs about one frame instead of ``2 * T`` frames (DESIGN.md, "Video replay memory").
  With :meth:`ReplayBuffer.store_frame_features` the ring holds, instead of each frame's
  pixels, what a fixed encoder makes of it: a per-frame trunk's features (samples are
  ``(B, T, feature_dim)``), or a whole frozen clip encoder's latent of the clip that ends at
  the frame (``clip=True``; samples are ``(B, feature_dim)``).

Checkpoints of a big buffer go to a side file (:meth:`ReplayBuffer.save` /
:meth:`ReplayBuffer.load`, an uncompressed ``.npz``) rather than being pickled into the Lightning
checkpoint.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from v2p.contracts import ReplayFeatures, ReplaySample

__all__ = ["ReplayBuffer", "ReplayFeatures", "ReplaySample"]

# Bumped whenever the layout of `state_dict` changes, so an old side file fails loudly.
_STATE_VERSION = 1


def _take(array: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Entries of a ``(slots, num_envs, ...)`` array at ``flat = slot * num_envs + env``.

    Flat indices into the C-ordered storage make one `take` instead of a two-index gather.
    """
    return array.reshape(-1, *array.shape[2:]).take(flat, axis=0)


class _ArrayOps:
    """The few array operations sampling needs, on the numpy storage (``device=None``) or on
    its torch mirror on a device, so one gather implementation serves both."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device

    def index(self, flat: np.ndarray) -> Any:
        return flat if self.device is None else torch.from_numpy(flat).to(self.device)

    def take(self, array: Any, flat: Any) -> Any:
        if self.device is None:
            return _take(array, flat)
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


def _layout_name(state: dict[str, np.ndarray]) -> str:
    """What a replay state's frame ring holds, in words."""
    if int(state["frame_features"]) == 0:
        return "frame pixels"
    return "clip latents" if bool(state["clip_features"]) else "frame features"


def _is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def _positive_int(name: str, value: object) -> int:
    if not _is_positive_int(value):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class ReplayBuffer:
    """Uniform replay over ``capacity`` transitions from ``num_envs`` lockstepped envs.

    Args:
        capacity: transitions kept in total across envs; each env keeps the newest
            ``capacity // num_envs`` of its own (the remainder is unused, as in SB3).
        num_envs: N, the leading dimension of every :meth:`add` argument.
        obs_shape: shape of one observation, e.g. ``(obs_dim,)`` or ``(T, C, H, W)``.
        action_dim: size of the flat float action.
        obs_dtype: storage dtype of observations (``np.uint8`` for video, ``np.float32`` for
            states); samples keep it.
        frame_stack: T for video observations ``(T, C, H, W)`` that are frame histories
            (obs at step t = the last T frames, repeat-padded with the episode's first frame);
            frames are then stored once and stacks rebuilt at sample time. ``None`` stores
            whole observations.

    Video layout: per env a ring of ``frame_capacity = per_env_capacity + per_env_capacity // 8
    + 2 * T`` frames with absolute (monotonic) frame counters. Each transition records the
    absolute index of its obs's newest frame, of its next_obs's newest frame and of its
    episode's first frame. An episode of length L writes L + 1 frames, so the ring holds every
    stored transition's frames as long as episodes last at least about 8 steps. With shorter
    episodes the oldest stored transitions lose frames before their slot is reused; sampling
    then skips them (a validity mask), so wrong frames are never returned: the buffer just
    holds fewer usable transitions than ``len(self)``.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        obs_dtype: npt.DTypeLike = np.float32,
        frame_stack: int | None = None,
    ) -> None:
        self.capacity = _positive_int("capacity", capacity)
        self.num_envs = _positive_int("num_envs", num_envs)
        if self.capacity < self.num_envs:
            raise ValueError(
                f"capacity must be >= num_envs (one transition per env at least), "
                f"got capacity={capacity} < num_envs={num_envs}"
            )
        if not isinstance(obs_shape, (tuple, list)) or not (
            len(obs_shape) > 0 and all(_is_positive_int(d) for d in obs_shape)
        ):
            raise ValueError(
                f"obs_shape must be a non-empty tuple of positive ints, got {obs_shape!r}"
            )
        self.obs_shape: tuple[int, ...] = tuple(int(d) for d in obs_shape)
        self.action_dim = _positive_int("action_dim", action_dim)
        self.obs_dtype = np.dtype(obs_dtype)
        if frame_stack is not None:
            frame_stack = _positive_int("frame_stack", frame_stack)
            if len(self.obs_shape) < 2 or self.obs_shape[0] != frame_stack:
                raise ValueError(
                    f"frame_stack={frame_stack} needs obs_shape=(frame_stack, *frame_shape), "
                    f"got obs_shape={self.obs_shape}"
                )
        self.frame_stack: int | None = frame_stack

        self.per_env_capacity = self.capacity // self.num_envs
        n, n_env = self.per_env_capacity, self.num_envs
        self._pos = 0
        self._full = False
        self._action = np.zeros((n, n_env, self.action_dim), dtype=np.float32)
        self._reward = np.zeros((n, n_env), dtype=np.float32)
        self._err = np.zeros((n, n_env), dtype=np.float32)
        self._terminated = np.zeros((n, n_env), dtype=np.float32)
        self._source = np.zeros((n, n_env), dtype=np.int64)
        # Sampling priorities (used by prioritised draws only); a new transition gets the
        # largest priority so far, so it is likely to be drawn, and scored, soon.
        self._priority = np.ones((n, n_env), dtype=np.float32)
        self._max_priority = 1.0
        if self.frame_stack is None:
            self.frame_capacity: int | None = None
            self._obs = np.zeros((n, n_env, *self.obs_shape), dtype=self.obs_dtype)
            self._next_obs = np.zeros((n, n_env, *self.obs_shape), dtype=self.obs_dtype)
        else:
            # Slack beyond one frame per transition: an episode of length L >= 8 writes at most
            # n / 8 extra reset frames over n transitions, plus up to T history frames of the
            # oldest transition and T of the newest.
            self.frame_capacity = n + n // 8 + 2 * self.frame_stack
            frame_shape = self.obs_shape[1:]
            self._frames = np.zeros((self.frame_capacity, n_env, *frame_shape), self.obs_dtype)
            # Absolute frame indices, per transition.
            self._obs_frame = np.zeros((n, n_env), dtype=np.int64)
            self._next_obs_frame = np.zeros((n, n_env), dtype=np.int64)
            self._episode_first_frame = np.zeros((n, n_env), dtype=np.int64)
            # Per env: frames written so far and the absolute index of the running episode's
            # first frame.
            self._frame_count = np.zeros(n_env, dtype=np.int64)
            self._current_episode_first = np.zeros(n_env, dtype=np.int64)
        # Frame features instead of pixels (store_frame_features): their size, whether they
        # are whole-clip latents, the function that makes them, and each env's newest raw
        # frame (the ring no longer holds pixels).
        self.frame_feature_dim = 0
        self.clip_features = False
        self._encode_frames: Callable[[np.ndarray], np.ndarray] | None = None
        self._newest_frame: np.ndarray | None = None
        self._env_ids = np.arange(n_env)
        # Torch copies of the arrays sampling reads, on a device (see to_device); None: sample
        # from the numpy storage.
        self.device: torch.device | None = None
        self._mirror: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ size

    def __len__(self) -> int:
        """Transitions stored (for video, some of the oldest may have lost frames)."""
        return (self.per_env_capacity if self._full else self._pos) * self.num_envs

    @property
    def full(self) -> bool:
        """Whether every slot holds a transition, so each `add` overwrites the oldest."""
        return self._full

    @property
    def nbytes(self) -> int:
        """Bytes of storage held by the buffer's arrays."""
        return sum(a.nbytes for a in self._arrays().values())

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
        episode_start: np.ndarray | None = None,
    ) -> None:
        """Store one transition per env; every argument has leading dim N = ``num_envs``.

        Args:
            obs: ``(N, *obs_shape)``.
            action: ``(N, action_dim)``.
            reward: ``(N,)`` env reward.
            err: ``(N,)`` constraint cost (error count/rate) of the step.
            next_obs: ``(N, *obs_shape)`` the true next observation: for an episode that just
                ended, the final observation, not the auto-reset one.
            terminated: ``(N,)`` true termination only: pass False for a time-limit
                truncation, whose target still bootstraps.
            source: ``(N,)`` int id of the data source of each env.
            episode_start: ``(N,)`` bool, True where ``obs`` is the first observation of an
                episode. Required for video buffers (it tells which frames are new); ignored by
                state buffers. An env that has never been added to starts an episode anyway.
        """
        n_env = self.num_envs
        obs = self._check("obs", obs, (n_env, *self.obs_shape), self.obs_dtype)
        next_obs = self._check("next_obs", next_obs, (n_env, *self.obs_shape), self.obs_dtype)
        action = self._check("action", action, (n_env, self.action_dim), np.float32)
        reward = self._check("reward", reward, (n_env,), np.float32)
        err = self._check("err", err, (n_env,), np.float32)
        terminated = self._check("terminated", terminated, (n_env,), np.float32)
        source = self._check("source", source, (n_env,), np.int64)
        if episode_start is not None:
            episode_start = self._check("episode_start", episode_start, (n_env,), np.bool_)

        p = self._pos
        frames_written = None
        if self.frame_stack is None:
            self._obs[p] = obs
            self._next_obs[p] = next_obs
        else:
            if episode_start is None:
                raise ValueError(
                    "episode_start (bool array (num_envs,)) is required by a video buffer "
                    "(frame_stack is set), got None"
                )
            frames_written = self._add_frames(obs, next_obs, episode_start)
        self._action[p] = action
        self._reward[p] = reward
        self._err[p] = err
        self._terminated[p] = terminated
        self._source[p] = source
        self._priority[p] = self._max_priority
        if self._mirror is not None:
            self._copy_to_mirror(p, frames_written)
        self._pos = (p + 1) % self.per_env_capacity
        self._full = self._full or self._pos == 0

    def store_frame_features(
        self, encode: Callable[[np.ndarray], np.ndarray], dim: int, clip: bool = False
    ) -> None:
        """Store what a fixed encoder makes of every frame instead of its pixels.

        ``encode`` must be a fixed function (a frozen encoder): each frame is encoded once,
        when it is added. Call this on an empty buffer, before :meth:`to_device`.

        Args:
            encode: with ``clip=False``, raw frames ``(K, *frame_shape)`` -> float features
                ``(K, dim)`` (a per-frame trunk); samples return stacks ``(B, T, dim)``. With
                ``clip=True``, clips ``(K, T, *frame_shape)`` -> latents ``(K, dim)`` (a whole
                frozen clip encoder), stored at each clip's newest frame; samples return the
                latents ``(B, dim)`` of obs and next_obs.
            dim: the size of what ``encode`` returns per frame or clip.
            clip: encode whole clips rather than single frames.
        """
        if self.frame_stack is None:
            raise ValueError(
                "store_frame_features needs a video buffer (frame_stack set); this one stores "
                f"whole observations of shape {self.obs_shape}"
            )
        if self._frame_count.any() or self._mirror is not None:
            raise RuntimeError(
                "store_frame_features must be called on an empty buffer, before to_device()"
            )
        assert self.frame_capacity is not None
        self.frame_feature_dim = _positive_int("dim", dim)
        self.clip_features = bool(clip)
        self._frames = np.zeros((self.frame_capacity, self.num_envs, dim), dtype=np.float32)
        self._newest_frame = np.zeros((self.num_envs, *self.obs_shape[1:]), self.obs_dtype)
        self._encode_frames = encode

    @property
    def _window(self) -> int:
        """How many consecutive ring entries one observation reads: T, or 1 for clip latents."""
        assert self.frame_stack is not None
        return 1 if self.clip_features else self.frame_stack

    def _stored_frames(
        self, obs: np.ndarray, started: np.ndarray, next_obs: np.ndarray
    ) -> np.ndarray:
        """What the ring keeps of one add's new frames: the first frames of the episodes that
        start (envs ``started`` of ``obs``) and the newest frames of ``next_obs``, in that
        order. Their pixels, their features, or the latents of the clips they end (whole
        clips are gathered only for those)."""
        frames = np.concatenate([obs[started, -1], next_obs[:, -1]])
        if self._encode_frames is None:
            return frames
        inputs = np.concatenate([obs[started], next_obs]) if self.clip_features else frames
        features = np.asarray(self._encode_frames(inputs), dtype=np.float32)
        expected = (len(frames), self.frame_feature_dim)
        if features.shape != expected:
            what = "clip" if self.clip_features else "frame"
            raise ValueError(
                f"the {what} encoder returned features of shape {features.shape} for "
                f"{len(frames)} {what}s, expected {expected}"
            )
        return features

    def _newest_raw_frames(self, envs: np.ndarray) -> np.ndarray:
        """The last frame added for each of ``envs``, as pixels."""
        if self._newest_frame is not None:
            return self._newest_frame[envs]
        assert self.frame_capacity is not None
        return self._frames[(self._frame_count[envs] - 1) % self.frame_capacity, envs]

    # ----------------------------------------------------------- device mirror

    def _sampled_arrays(self) -> dict[str, np.ndarray]:
        """The storage arrays a sample reads (a subset of :meth:`_arrays`)."""
        names = ["action", "reward", "err", "terminated", "source"]
        if self.frame_stack is None:
            names += ["obs", "next_obs"]
        else:
            names += ["frames", "obs_frame", "next_obs_frame", "episode_first_frame"]
        arrays = self._arrays()
        return {name: arrays[name] for name in names}

    def to_device(self, device: str | torch.device) -> None:
        """Keep a copy of what sampling reads on ``device``, and gather samples there.

        Each :meth:`add` then copies only the new transition (and frames) to the device, so a
        sample needs no host-to-device copy of its batch. The numpy storage stays the one that
        checkpoints read and write; indices are still drawn on the host, from the same
        generator, so samples are the same as without the mirror.
        """
        self.device = torch.device(device)
        self._mirror = {
            name: torch.from_numpy(array).to(self.device)
            for name, array in self._sampled_arrays().items()
        }

    def _copy_to_mirror(self, slot: int, frames: tuple[np.ndarray, np.ndarray] | None) -> None:
        assert self._mirror is not None
        for name, array in self._sampled_arrays().items():
            if name != "frames":
                self._mirror[name][slot] = torch.from_numpy(array[slot]).to(self.device)
        if frames is not None:
            rows, envs = frames
            new = torch.from_numpy(self._frames[rows, envs]).to(self.device)
            self._mirror["frames"][torch.from_numpy(rows), torch.from_numpy(envs)] = new

    def _add_frames(
        self, obs: np.ndarray, next_obs: np.ndarray, episode_start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Append the new frames of one lockstep transition to the per-env rings; return the
        ring positions written, as (rows, envs)."""
        assert self.frame_capacity is not None
        ring, count, envs = self.frame_capacity, self._frame_count, self._env_ids
        starts = episode_start | (count == 0)
        continuing = np.flatnonzero(~starts)
        if continuing.size:
            # A continuing episode's obs must end with the frame its previous next_obs ended
            # with; otherwise the caller lost track of an episode boundary.
            last = self._newest_raw_frames(continuing)
            same = (last == obs[continuing, -1]).reshape(continuing.size, -1).all(axis=1)
            if not same.all():
                bad = continuing[~same].tolist()
                raise ValueError(
                    f"obs of env(s) {bad} does not continue the previous next_obs; pass "
                    f"episode_start=True where obs is the first observation of an episode"
                )
        started = np.flatnonzero(starts)
        # The reset clip is the first frame repeated T times: store that frame once.
        reset_rows = count[started] % ring
        self._current_episode_first[started] = count[started]
        count[started] += 1
        p = self._pos
        self._obs_frame[p] = count - 1
        rows = count % ring
        self._next_obs_frame[p] = count
        self._episode_first_frame[p] = self._current_episode_first
        count += 1
        # Written together so a frame encoder runs once per add, over every new frame.
        rows, envs = np.concatenate([reset_rows, rows]), np.concatenate([started, envs])
        self._frames[rows, envs] = self._stored_frames(obs, started, next_obs)
        if self._newest_frame is not None:
            self._newest_frame[:] = next_obs[:, -1]
        return rows, envs

    @staticmethod
    def _check(
        name: str, value: np.ndarray, shape: tuple[int, ...], dtype: npt.DTypeLike
    ) -> np.ndarray:
        value = np.asarray(value)
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
        if not np.can_cast(value.dtype, dtype, casting="same_kind"):
            raise ValueError(
                f"{name} has dtype {value.dtype}, which does not cast safely to the stored "
                f"{np.dtype(dtype)}"
            )
        return value

    # ---------------------------------------------------------------- sample

    def sample(
        self,
        batch_size: int,
        generator: np.random.Generator,
        priority_alpha: float | None = None,
        priority_beta: float = 0.4,
    ) -> ReplaySample:
        """Draw ``batch_size`` transitions with replacement, using ``generator``.

        Uniformly by default. With ``priority_alpha``, transition ``i`` is drawn with
        probability ``P(i) = p_i^alpha / sum_j p_j^alpha`` (prioritised replay, Schaul et al.
        2016) and carries the importance weight ``(N P(i))^-beta``, divided by the batch's
        largest so weights only scale updates down.
        """
        batch_size = _positive_int("batch_size", batch_size)
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"generator must be a numpy.random.Generator, got {type(generator)}")
        stored = len(self)
        if stored == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer; add transitions first")
        weight = None
        if priority_alpha is not None:
            flat, weight = self._draw_prioritised(
                batch_size, stored, generator, priority_alpha, priority_beta
            )
        elif self.frame_stack is None:
            flat = generator.integers(0, stored, size=batch_size)
        else:
            flat = self._draw_valid(batch_size, stored, generator)
        # The one place where replay data becomes tensors: zero-copy views of the numpy
        # storage, or gathers on the device mirror.
        ops = _ArrayOps(self.device if self._mirror is not None else None)
        arrays = self._mirror if self._mirror is not None else self._sampled_arrays()
        index = ops.index(flat.astype(np.int64, copy=False))
        if self.frame_stack is None:
            obs, next_obs = ops.take(arrays["obs"], index), ops.take(arrays["next_obs"], index)
        else:
            obs, next_obs = self._gather_stacks(arrays, index, ops)
        fields = ("action", "reward", "err", "terminated", "source")
        taken = {name: ops.tensor(ops.take(arrays[name], index)) for name in fields}
        return ReplaySample(
            obs=ops.tensor(obs),
            next_obs=ops.tensor(next_obs),
            **taken,
            index=ops.tensor(index),
            weight=None if weight is None else ops.tensor(weight),
        )

    def _draw_prioritised(
        self,
        batch_size: int,
        stored: int,
        generator: np.random.Generator,
        alpha: float,
        beta: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices drawn by priority, and their normalised importance weights."""
        p = self._priority.reshape(-1)[:stored].astype(np.float64) ** alpha
        if self.frame_stack is not None:  # transitions whose frames left the ring: never
            p[~self._valid(np.arange(stored))] = 0.0
        p /= p.sum()
        flat = generator.choice(stored, size=batch_size, p=p)
        weight = (stored * p[flat]) ** -beta
        return flat, (weight / weight.max()).astype(np.float32)

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Set the priorities (> 0) of the transitions at flat ``index`` (from a sample)."""
        priority = np.asarray(priority, dtype=np.float32)
        if not (np.isfinite(priority).all() and (priority > 0).all()):
            raise ValueError(f"priorities must be finite and > 0, got {priority}")
        self._priority.reshape(-1)[np.asarray(index)] = priority
        self._max_priority = max(self._max_priority, float(priority.max()))

    def _valid(self, flat: np.ndarray) -> np.ndarray:
        """Whether every frame the transitions at ``flat`` need is still in the ring."""
        oldest_needed = np.maximum(
            _take(self._obs_frame, flat) - (self._window - 1),
            _take(self._episode_first_frame, flat),
        )
        # The ring of env e holds the absolute frames [count_e - frame_capacity, count_e).
        return oldest_needed >= self._frame_count[flat % self.num_envs] - self.frame_capacity

    def _draw_valid(
        self, batch_size: int, stored: int, generator: np.random.Generator
    ) -> np.ndarray:
        """Uniform flat indices over the transitions whose frames are all still in the ring.

        Rejection sampling keeps the draw uniform over valid transitions. Every env writes at
        most two frames per transition and a transition needs at most T + 1 of them, so the
        newest (frame_capacity - T - 1) / 2, about per_env_capacity * 9 / 16, of each env's
        transitions are always valid (and the newest one always is): a round accepts about half
        its draws or more, even with one-step episodes.
        """
        assert self.frame_stack is not None and self.frame_capacity is not None
        accepted: list[np.ndarray] = []
        n_accepted = 0
        while n_accepted < batch_size:
            flat = generator.integers(0, stored, size=batch_size - n_accepted)
            valid = self._valid(flat)
            accepted.append(flat[valid])
            n_accepted += int(valid.sum())
        return accepted[0] if len(accepted) == 1 else np.concatenate(accepted)

    def _gather_stacks(self, arrays: dict[str, Any], flat: Any, ops: _ArrayOps) -> tuple[Any, Any]:
        """Rebuild obs and next_obs clips ``(B, T, *frame_shape)`` in one gather (clip
        latents: ``(B, dim)``, the entries of the newest frames)."""
        assert self.frame_stack is not None and self.frame_capacity is not None
        steps = ops.arange(1 - self._window, 1)  # (T,) offsets from the newest frame
        newest = ops.stack(
            [ops.take(arrays["obs_frame"], flat), ops.take(arrays["next_obs_frame"], flat)]
        )
        # (2, B, T) absolute indices; clamping at the episode's first frame repeat-pads the start
        # of an episode exactly as the env does.
        first = ops.take(arrays["episode_first_frame"], flat)[None, :, None]
        frame_idx = ops.maximum(newest[:, :, None] + steps, first)
        envs = (flat % self.num_envs)[None, :, None]
        frames = (frame_idx % self.frame_capacity) * self.num_envs + envs
        stacks = ops.take(arrays["frames"], frames.reshape(-1)).reshape(
            *frames.shape, *arrays["frames"].shape[2:]
        )
        if self.clip_features:
            stacks = stacks[:, :, 0]  # (2, B, dim): one latent per observation
        return stacks[0], stacks[1]  # each a contiguous (B, T, *frame_shape)

    # ----------------------------------------------------------- checkpoints

    def _config(self) -> dict[str, np.ndarray]:
        return {
            "version": np.asarray(_STATE_VERSION, dtype=np.int64),
            "capacity": np.asarray(self.capacity, dtype=np.int64),
            "num_envs": np.asarray(self.num_envs, dtype=np.int64),
            "obs_shape": np.asarray(self.obs_shape, dtype=np.int64),
            "action_dim": np.asarray(self.action_dim, dtype=np.int64),
            "obs_dtype": np.asarray(self.obs_dtype.str),
            "frame_stack": np.asarray(self.frame_stack or 0, dtype=np.int64),
            "frame_features": np.asarray(self.frame_feature_dim, dtype=np.int64),
            "clip_features": np.asarray(self.clip_features, dtype=np.bool_),
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        """The live storage arrays (not copies)."""
        arrays = {
            "action": self._action,
            "reward": self._reward,
            "err": self._err,
            "terminated": self._terminated,
            "source": self._source,
            "priority": self._priority,
        }
        if self.frame_stack is None:
            arrays.update(obs=self._obs, next_obs=self._next_obs)
        else:
            arrays.update(
                frames=self._frames,
                obs_frame=self._obs_frame,
                next_obs_frame=self._next_obs_frame,
                episode_first_frame=self._episode_first_frame,
                frame_count=self._frame_count,
                current_episode_first=self._current_episode_first,
            )
        if self._newest_frame is not None:
            arrays.update(newest_frame=self._newest_frame)
        return arrays

    def _pointers(self) -> dict[str, np.ndarray]:
        return {
            "pos": np.asarray(self._pos, dtype=np.int64),
            "full": np.asarray(self._full, dtype=np.bool_),
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """Config, storage, pointers and counters as numpy arrays.

        Storage arrays are copied so later `add` calls do not alter the returned state; for a
        big buffer prefer :meth:`save`, which writes the live arrays without a copy.
        """
        arrays = {k: v.copy() for k, v in self._arrays().items()}
        return {**self._config(), **self._pointers(), **arrays}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict`, validated against this buffer's construction."""
        if "frame_features" not in state:  # saved before frame features existed: pixels
            state = {**state, "frame_features": np.asarray(0, dtype=np.int64)}
        if "clip_features" not in state:  # saved before clip latents existed
            state = {**state, "clip_features": np.asarray(False)}
        for key, expected in self._config().items():
            if key not in state:
                raise ValueError(f"replay state is missing field {key!r}")
            got = np.asarray(state[key])
            if got.shape != expected.shape or not np.array_equal(got, expected):
                hint = ""
                if key in ("frame_features", "clip_features"):
                    # SACModule's cache_frame_features and freeze_encoder decide the layout.
                    hint = (
                        f": the state stores {_layout_name(state)}; resume with the model's "
                        "cache_frame_features and freeze_encoder as the run had them"
                    )
                raise ValueError(
                    f"replay state field {key!r} is {got.tolist()!r}, but this buffer was built "
                    f"with {expected.tolist()!r}{hint}"
                )
        arrays = self._arrays()
        if "priority" not in state:  # saved before prioritised replay existed: all equal
            state = {**state, "priority": np.ones_like(self._priority)}
        for key, live in arrays.items():
            if key not in state:
                raise ValueError(f"replay state is missing field {key!r}")
            got = np.asarray(state[key])
            if got.shape != live.shape or got.dtype != live.dtype:
                raise ValueError(
                    f"replay state field {key!r} has shape {got.shape} and dtype {got.dtype}, "
                    f"expected shape {live.shape} and dtype {live.dtype}"
                )
        for key in ("pos", "full"):
            if key not in state or np.asarray(state[key]).shape != ():
                raise ValueError(f"replay state field {key!r} must be a scalar")
        pos = int(state["pos"])
        if not 0 <= pos < self.per_env_capacity:
            raise ValueError(
                f"replay state field 'pos' is {pos}, expected 0 <= pos < {self.per_env_capacity}"
            )
        for key, live in arrays.items():
            np.copyto(live, state[key])
        self._max_priority = float(self._priority.max())
        if self._mirror is not None:
            self.to_device(self.device)
        self._pos = pos
        self._full = bool(state["full"])

    def save(self, path: str | os.PathLike[str], token: str = "") -> None:
        """Write the buffer to ``path`` as an uncompressed ``.npz`` (exactly that file name).

        ``token`` is stored beside the arrays (``state["token"]`` when read back), so a caller
        can tell which save a file came from. Writes to a temporary file first and renames it,
        so an interrupted save never leaves a truncated file where a good one was.
        """
        path = os.fspath(path)
        tmp = f"{path}.tmp"
        try:
            with open(tmp, "wb") as f:
                arrays = {**self._config(), **self._pointers(), **self._arrays()}
                np.savez(f, **arrays, token=np.asarray(token))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @staticmethod
    def read_state(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
        """The state dict stored in a file written by :meth:`save`.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: ``path`` is not a readable ``.npz``.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"replay buffer file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
            raise ValueError(f"replay buffer file {path} is corrupt or not an .npz: {e}") from e

    def load(self, path: str | os.PathLike[str]) -> None:
        """Load a file written by :meth:`save` into this buffer.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: ``path`` is not a readable ``.npz`` or does not match this buffer.
        """
        state = self.read_state(path)
        try:
            self.load_state_dict(state)
        except ValueError as e:
            raise ValueError(f"replay buffer file {os.fspath(path)}: {e}") from e
