""":class:`ReplayBuffer`: one storage layout and two samplers behind the API the data module uses.

It validates what comes in, picks the layout (:class:`StateStorage`, :class:`FrameStorage`,
:class:`FeatureStorage`), routes each sample to the uniform or the prioritised sampler, and
saves and restores them (the state checks and the side file are in
:mod:`~v2p.data.replay.checkpoint`)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from v2p.contracts import ReplaySample
from v2p.data.replay.checkpoint import STATE_VERSION, check_state, read_npz, write_npz
from v2p.data.replay.frames import FeatureStorage, FrameStorage
from v2p.data.replay.samplers import PrioritisedSampler, UniformSampler
from v2p.data.replay.storage import StateStorage, TransitionStorage

__all__ = ["ReplayBuffer"]


def _is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def _positive_int(name: str, value: object) -> int:
    if not _is_positive_int(value):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class ReplayBuffer:
    """Replay over ``capacity`` transitions from ``num_envs`` lockstepped envs, drawn
    uniformly or by priority.

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
            frames are then stored once and stacks rebuilt at sample time (see
            :class:`~v2p.data.replay.frames.FrameStorage`). ``None`` stores whole observations.
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
        layout = {
            "per_env_capacity": self.per_env_capacity,
            "num_envs": self.num_envs,
            "obs_shape": self.obs_shape,
            "action_dim": self.action_dim,
            "obs_dtype": self.obs_dtype,
        }
        self._storage: TransitionStorage = (
            StateStorage(**layout)
            if frame_stack is None
            else FrameStorage(**layout, frame_stack=frame_stack)
        )
        self._uniform = UniformSampler()
        self._prioritised = PrioritisedSampler(
            per_env_capacity=self.per_env_capacity, num_envs=self.num_envs
        )

    # ------------------------------------------------------------- layout

    @property
    def frame_capacity(self) -> int | None:
        """Frames each env's ring holds (video), or None (states)."""
        return self._storage.frame_capacity

    @property
    def frame_feature_dim(self) -> int:
        """Size of the stored frame features or clip latents; 0: pixels or states."""
        return self._storage.frame_feature_dim

    @property
    def clip_features(self) -> bool:
        """Whether the ring holds whole-clip latents (samples ``(B, dim)``)."""
        return self._storage.clip_features

    @property
    def device(self) -> torch.device | None:
        """Where samples are gathered (see :meth:`to_device`); None: from the numpy storage."""
        return self._storage.device

    # Storage arrays that tests read directly, under the names the single-class buffer gave
    # them.
    @property
    def _mirror(self) -> dict[str, torch.Tensor] | None:
        return self._storage.mirror

    @property
    def _source(self) -> np.ndarray:
        return self._storage.source

    @property
    def _frames(self) -> np.ndarray:
        return self._video_storage().frames

    @property
    def _frame_count(self) -> np.ndarray:
        return self._video_storage().frame_count

    def _video_storage(self) -> FrameStorage:
        if not isinstance(self._storage, FrameStorage):
            raise AttributeError("a state buffer (frame_stack=None) has no frame ring")
        return self._storage

    # ------------------------------------------------------------------ size

    def __len__(self) -> int:
        """Transitions stored (for video, some of the oldest may have lost frames)."""
        return len(self._storage)

    @property
    def full(self) -> bool:
        """Whether every slot holds a transition, so each `add` overwrites the oldest."""
        return self._storage.full

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
        overwrote = self._storage.full
        slot = self._storage.add(
            obs, action, reward, err, next_obs, terminated, source, episode_start
        )
        self._prioritised.added(slot, overwrote)

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
        if not self._storage.is_empty or self._storage.mirror is not None:
            raise RuntimeError(
                "store_frame_features must be called on an empty buffer, before to_device()"
            )
        self._storage = FeatureStorage(
            per_env_capacity=self.per_env_capacity,
            num_envs=self.num_envs,
            obs_shape=self.obs_shape,
            action_dim=self.action_dim,
            obs_dtype=self.obs_dtype,
            frame_stack=self.frame_stack,
            encode=encode,
            dim=_positive_int("dim", dim),
            clip=bool(clip),
        )

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
        if len(self) == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer; add transitions first")
        weight = None
        if priority_alpha is not None:
            flat, weight = self._prioritised.draw(
                batch_size, self._storage, generator, priority_alpha, priority_beta
            )
        else:
            flat = self._uniform.draw(batch_size, self._storage, generator)
        return self._storage.gather(flat, weight)

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Set the priorities (> 0) of the transitions at flat ``index`` (from a sample)."""
        self._prioritised.update(index, priority)

    def to_device(self, device: str | torch.device) -> None:
        """Keep a copy of what sampling reads on ``device``, and gather samples there.

        Each :meth:`add` then copies only the new transition (and frames) to the device, so a
        sample needs no host-to-device copy of its batch. The numpy storage stays the one that
        checkpoints read and write; indices are still drawn on the host, from the same
        generator, so samples are the same as without the mirror.
        """
        self._storage.to_device(torch.device(device))

    # ----------------------------------------------------------- checkpoints

    def _config(self) -> dict[str, np.ndarray]:
        return {
            "version": np.asarray(STATE_VERSION, dtype=np.int64),
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
        """The live arrays a checkpoint holds (not copies): storage and priorities."""
        return {
            **self._storage.transition_arrays(),
            "priority": self._prioritised.priority,
            **self._storage.layout_arrays(),
        }

    def _pointers(self) -> dict[str, np.ndarray]:
        return {
            "pos": np.asarray(self._storage.pos, dtype=np.int64),
            "full": np.asarray(self._storage.full, dtype=np.bool_),
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """Config, storage, pointers and counters as numpy arrays.

        Storage arrays are copied so later `add` calls do not alter the returned state; for a
        big buffer prefer :meth:`save`, which writes the live arrays without a copy.
        """
        arrays = {k: v.copy() for k, v in self._arrays().items()}
        return {**self._config(), **self._pointers(), **arrays}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict`, validated against this buffer's construction.

        The prioritised sampler's sum tree is derived state: it is rebuilt from the restored
        priorities at the next prioritised draw.
        """
        arrays = self._arrays()
        state = check_state(
            state,
            config=self._config(),
            arrays=arrays,
            per_env_capacity=self.per_env_capacity,
        )
        for key, live in arrays.items():
            np.copyto(live, state[key])
        self._prioritised.restored()
        if self._storage.mirror is not None:
            assert self._storage.device is not None
            self._storage.to_device(self._storage.device)
        self._storage.pos = int(state["pos"])
        self._storage.full = bool(state["full"])

    def save(self, path: str | os.PathLike[str], token: str = "") -> None:
        """Write the buffer to ``path`` as an uncompressed ``.npz`` (exactly that file name).

        ``token`` is stored beside the arrays (``state["token"]`` when read back), so a caller
        can tell which save a file came from. Writes to a temporary file first and renames it,
        so an interrupted save never leaves a truncated file where a good one was.
        """
        write_npz(path, {**self._config(), **self._pointers(), **self._arrays()}, token)

    @staticmethod
    def read_state(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
        """The state dict stored in a file written by :meth:`save`.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: ``path`` is not a readable ``.npz``.
        """
        return read_npz(path)

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
