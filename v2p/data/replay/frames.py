"""Video replay storage: each frame stored once, in a per-env ring, stacks rebuilt at sample time.

Observations ``(T, C, H, W)`` that are frame histories (obs at step t = the last T frames,
repeat-padded with the episode's first frame) share all but one frame with the next, so the
ring keeps each frame once and a sample gathers the stacks back (the DrQ-v2
``replay_buffer.py`` idea, vectorised over envs and batch). A video transition then costs about
one frame instead of ``2 * T`` frames (DESIGN.md, "Video replay memory").

:class:`FeatureStorage` keeps, instead of each frame's pixels, what a fixed encoder makes of it:
a per-frame trunk's features, or a frozen clip encoder's latent of the clip ending at the frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from v2p.data.replay.storage import ArrayOps, TransitionStorage, take

__all__ = ["FeatureStorage", "FrameStorage"]


class FrameStorage(TransitionStorage):
    """Frame pixels in a per-env ring of ``frame_capacity = per_env_capacity +
    per_env_capacity // 8 + 2 * T`` frames, with absolute (monotonic) frame counters.

    Each transition records the absolute index of its obs's newest frame, of its next_obs's
    newest frame and of its episode's first frame. An episode of length L writes L + 1 frames,
    so the ring holds every stored transition's frames as long as episodes last at least about
    8 steps. With shorter episodes the oldest stored transitions lose frames before their slot
    is reused; :meth:`valid` tells them apart so that samplers skip them and wrong frames are
    never returned: the buffer just holds fewer usable transitions than ``len(self)``.
    """

    _ring_names = ("frames",)

    def __init__(
        self,
        *,
        per_env_capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        obs_dtype: np.dtype,
        frame_stack: int,
    ) -> None:
        super().__init__(
            per_env_capacity=per_env_capacity,
            num_envs=num_envs,
            obs_shape=obs_shape,
            action_dim=action_dim,
            obs_dtype=obs_dtype,
        )
        n, n_env = per_env_capacity, num_envs
        self.frame_stack = frame_stack
        # Slack beyond one frame per transition: an episode of length L >= 8 writes at most
        # n / 8 extra reset frames over n transitions, plus up to T history frames of the
        # oldest transition and T of the newest.
        self.frame_capacity = n + n // 8 + 2 * frame_stack
        self.frames = self._allocate_ring()
        # Absolute frame indices, per transition.
        self.obs_frame = np.zeros((n, n_env), dtype=np.int64)
        self.next_obs_frame = np.zeros((n, n_env), dtype=np.int64)
        self.episode_first_frame = np.zeros((n, n_env), dtype=np.int64)
        # Per env: frames written so far and the absolute index of the running episode's
        # first frame.
        self.frame_count = np.zeros(n_env, dtype=np.int64)
        self.current_episode_first = np.zeros(n_env, dtype=np.int64)
        self._env_ids = np.arange(n_env)

    def _allocate_ring(self) -> np.ndarray:
        """``(frame_capacity, num_envs, *entry_shape)``: one entry per frame."""
        assert self.frame_capacity is not None
        return np.zeros((self.frame_capacity, self.num_envs, *self.obs_shape[1:]), self.obs_dtype)

    @property
    def window(self) -> int:
        """How many consecutive ring entries one observation reads."""
        assert self.frame_stack is not None
        return self.frame_stack

    # ------------------------------------------------------------------- add

    def _write_observations(
        self,
        slot: int,
        obs: np.ndarray,
        next_obs: np.ndarray,
        episode_start: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Append the new frames of one lockstep transition to the per-env rings; return the
        ring positions written, as (rows, envs)."""
        if episode_start is None:
            raise ValueError(
                "episode_start (bool array (num_envs,)) is required by a video buffer "
                "(frame_stack is set), got None"
            )
        assert self.frame_capacity is not None
        ring, count, envs = self.frame_capacity, self.frame_count, self._env_ids
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
        self.current_episode_first[started] = count[started]
        count[started] += 1
        self.obs_frame[slot] = count - 1
        rows = count % ring
        self.next_obs_frame[slot] = count
        self.episode_first_frame[slot] = self.current_episode_first
        count += 1
        # Written together so a frame encoder runs once per add, over every new frame.
        rows, envs = np.concatenate([reset_rows, rows]), np.concatenate([started, envs])
        self.frames[rows, envs] = self._stored_frames(obs, started, next_obs)
        self._remember_newest(next_obs)
        return rows, envs

    def _stored_frames(
        self, obs: np.ndarray, started: np.ndarray, next_obs: np.ndarray
    ) -> np.ndarray:
        """What the ring keeps of one add's new frames: the first frames of the episodes that
        start (envs ``started`` of ``obs``) and the newest frames of ``next_obs``, in that
        order."""
        return np.concatenate([obs[started, -1], next_obs[:, -1]])

    def _newest_raw_frames(self, envs: np.ndarray) -> np.ndarray:
        """The last frame added for each of ``envs``, as pixels."""
        assert self.frame_capacity is not None
        return self.frames[(self.frame_count[envs] - 1) % self.frame_capacity, envs]

    def _remember_newest(self, next_obs: np.ndarray) -> None:
        """Keep what :meth:`_newest_raw_frames` needs beyond the ring (pixels: nothing)."""

    def _copy_to_mirror(self, slot: int, written: tuple[np.ndarray, np.ndarray] | None) -> None:
        super()._copy_to_mirror(slot, written)
        assert self.mirror is not None and written is not None
        rows, envs = written
        new = torch.from_numpy(self.frames[rows, envs]).to(self.device)
        self.mirror["frames"][torch.from_numpy(rows), torch.from_numpy(envs)] = new

    # ---------------------------------------------------------------- arrays

    def layout_arrays(self) -> dict[str, np.ndarray]:
        return {
            "frames": self.frames,
            "obs_frame": self.obs_frame,
            "next_obs_frame": self.next_obs_frame,
            "episode_first_frame": self.episode_first_frame,
            "frame_count": self.frame_count,
            "current_episode_first": self.current_episode_first,
        }

    def _sampled_names(self) -> tuple[str, ...]:
        return ("frames", "obs_frame", "next_obs_frame", "episode_first_frame")

    # --------------------------------------------------------------- validity

    def valid(self, flat: np.ndarray) -> np.ndarray:
        """Whether every frame the transitions at ``flat`` need is still in the ring."""
        assert self.frame_capacity is not None
        oldest_needed = np.maximum(
            take(self.obs_frame, flat) - (self.window - 1),
            take(self.episode_first_frame, flat),
        )
        # The ring of env e holds the absolute frames [count_e - frame_capacity, count_e).
        return oldest_needed >= self.frame_count[flat % self.num_envs] - self.frame_capacity

    def lost_per_env(self) -> np.ndarray:
        """Per env, the oldest stored transitions that lost frames, by bisection over age.

        Within an env, the oldest frame a transition needs never decreases with the
        transition's age (obs frames and episode starts only move forward), while the ring's
        oldest frame is one per env: the unusable transitions are a prefix of each env's, and
        O(log n) validity checks per env find it.
        """
        per_env = len(self) // self.num_envs
        lo = np.zeros(self.num_envs, dtype=np.int64)  # lost >= lo
        hi = np.full(self.num_envs, per_env, dtype=np.int64)  # lost <= hi
        while (lo < hi).any():
            mid = (lo + hi) // 2
            usable = self.valid(self.flat_by_age(self._env_ids, np.minimum(mid, per_env - 1)))
            open_ = lo < hi
            hi = np.where(open_ & usable, mid, hi)
            lo = np.where(open_ & ~usable, mid + 1, lo)
        return lo

    # ---------------------------------------------------------------- gather

    def _gather_observations(
        self, arrays: dict[str, Any], flat: Any, ops: ArrayOps
    ) -> tuple[Any, Any]:
        """Rebuild obs and next_obs clips ``(B, T, *frame_shape)`` in one gather."""
        assert self.frame_capacity is not None
        stacks = self._gather_windows(arrays, flat, ops)
        return stacks[0], stacks[1]  # each a contiguous (B, T, *frame_shape)

    def _gather_windows(self, arrays: dict[str, Any], flat: Any, ops: ArrayOps) -> Any:
        """``(2, B, window, *entry_shape)``: the ring entries obs and next_obs read."""
        assert self.frame_capacity is not None
        steps = ops.arange(1 - self.window, 1)  # (window,) offsets from the newest frame
        newest = ops.stack(
            [ops.take(arrays["obs_frame"], flat), ops.take(arrays["next_obs_frame"], flat)]
        )
        # (2, B, window) absolute indices; clamping at the episode's first frame repeat-pads the
        # start of an episode exactly as the env does.
        first = ops.take(arrays["episode_first_frame"], flat)[None, :, None]
        frame_idx = ops.maximum(newest[:, :, None] + steps, first)
        envs = (flat % self.num_envs)[None, :, None]
        frames = (frame_idx % self.frame_capacity) * self.num_envs + envs
        return ops.take(arrays["frames"], frames.reshape(-1)).reshape(
            *frames.shape, *arrays["frames"].shape[2:]
        )


class FeatureStorage(FrameStorage):
    """A frame ring that holds what a fixed encoder makes of each frame, not its pixels.

    ``encode`` with ``clip=False``: raw frames ``(K, *frame_shape)`` -> float features ``(K,
    dim)``, and samples are stacks ``(B, T, dim)``; with ``clip=True``: clips ``(K, T,
    *frame_shape)`` -> latents ``(K, dim)``, stored at each clip's newest frame, and samples
    are the latents ``(B, dim)`` of obs and next_obs. Each env's newest raw frame is kept apart,
    since the ring no longer holds pixels to check episode continuity against.
    """

    def __init__(
        self,
        *,
        per_env_capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        obs_dtype: np.dtype,
        frame_stack: int,
        encode: Callable[[np.ndarray], np.ndarray],
        dim: int,
        clip: bool,
    ) -> None:
        self.frame_feature_dim = dim
        self.clip_features = clip
        self._encode = encode
        super().__init__(
            per_env_capacity=per_env_capacity,
            num_envs=num_envs,
            obs_shape=obs_shape,
            action_dim=action_dim,
            obs_dtype=obs_dtype,
            frame_stack=frame_stack,
        )
        self.newest_frame = np.zeros((num_envs, *obs_shape[1:]), obs_dtype)

    def _allocate_ring(self) -> np.ndarray:
        assert self.frame_capacity is not None
        return np.zeros(
            (self.frame_capacity, self.num_envs, self.frame_feature_dim), dtype=np.float32
        )

    @property
    def window(self) -> int:
        """One latent per clip: an observation reads a single ring entry."""
        return 1 if self.clip_features else super().window

    def _stored_frames(
        self, obs: np.ndarray, started: np.ndarray, next_obs: np.ndarray
    ) -> np.ndarray:
        """The features of the new frames, or the latents of the clips they end (whole
        clips are gathered only for those)."""
        frames = super()._stored_frames(obs, started, next_obs)
        inputs = np.concatenate([obs[started], next_obs]) if self.clip_features else frames
        features = np.asarray(self._encode(inputs), dtype=np.float32)
        expected = (len(frames), self.frame_feature_dim)
        if features.shape != expected:
            what = "clip" if self.clip_features else "frame"
            raise ValueError(
                f"the {what} encoder returned features of shape {features.shape} for "
                f"{len(frames)} {what}s, expected {expected}"
            )
        return features

    def _newest_raw_frames(self, envs: np.ndarray) -> np.ndarray:
        return self.newest_frame[envs]

    def _remember_newest(self, next_obs: np.ndarray) -> None:
        self.newest_frame[:] = next_obs[:, -1]

    def layout_arrays(self) -> dict[str, np.ndarray]:
        return super().layout_arrays() | {"newest_frame": self.newest_frame}

    def _gather_observations(
        self, arrays: dict[str, Any], flat: Any, ops: ArrayOps
    ) -> tuple[Any, Any]:
        if not self.clip_features:
            return super()._gather_observations(arrays, flat, ops)
        latents = self._gather_windows(arrays, flat, ops)[:, :, 0]  # (2, B, dim)
        return latents[0], latents[1]
