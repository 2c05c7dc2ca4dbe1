"""Labelled steps for the inverse dynamics model: :class:`StepDataModule`.

A *step* of a recorded episode is the frames around one action: the newest ``clip_len``
frames of the observation the action was taken at, and the frame it produced (VPT's IDM,
Baker et al. 2022, sees frames on both sides of the action it predicts). A window is
``clip_len + 1`` frames, ``frames[k + T - clip_len : k + T + 1]`` of an episode whose
recording has clips of ``T`` frames (:mod:`v2p.data.recording`).

Episodes are split into train and validation by the hash of their ids, as
:class:`~v2p.data.clips.ClipDataModule` splits them, so the validation R^2 is on episodes the
model never saw. The training steps of epoch ``e`` are drawn from ``default_rng([seed, e])``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from v2p.data.clips import Episode, load_episodes, split_episodes
from v2p.data.recording import MANIFEST_NAME
from v2p.data.rollout import make_env
from v2p.validation import check_int, check_scalar

__all__ = ["StepBatch", "StepDataModule", "step_windows"]


class StepBatch(NamedTuple):
    frames: torch.Tensor  # (B, clip_len + 1, C, S, S) uint8: the window around each action
    action: torch.Tensor  # (B, A) float32: the action taken (NaN where the recording has none)
    # (B,) float32 the step's reward and its cost (error rate); NaN where none was recorded.
    reward: torch.Tensor
    cost: torch.Tensor


def step_windows(episode: Episode, clip_len: int) -> np.ndarray:
    """The frame index (into ``episode.frames``) of each step's window start, (L,) int64."""
    if clip_len > episode.clip_len and episode.clip_len > 1:
        raise ValueError(
            f"episode {episode.episode_id}: windows of clip_len {clip_len} frames need "
            f"recorded clips of at least that many; it has {episode.clip_len}"
        )
    # Step k's observation ends at frame k + T - 1 (T the recording's clip length; a video
    # file's every frame is one, T = 1); its window starts clip_len - 1 frames before.
    first = episode.clip_len - clip_len if episode.clip_len > 1 else 0
    steps = len(episode.frames) - max(episode.clip_len, clip_len)
    return first + np.arange(max(steps, 0), dtype=np.int64)


class _Store:
    """Every episode's frames in one array, and the gather that makes a StepBatch."""

    def __init__(self, episodes: Sequence[Episode], clip_len: int, action_dim: int) -> None:
        self.clip_len = clip_len
        self.frames = np.concatenate([e.frames for e in episodes])
        offsets = np.concatenate([[0], np.cumsum([len(e.frames) for e in episodes])[:-1]])
        windows = [
            offset + step_windows(e, clip_len) for offset, e in zip(offsets, episodes, strict=True)
        ]
        self.window_start = windows  # per episode, global frame index of each step's window

        def per_step(values: list, shape: tuple[int, ...]) -> list[np.ndarray]:
            """Each episode's values per step, NaN where the recording has none."""
            return [
                v if v is not None else np.full((len(w), *shape), np.nan)
                for v, w in zip(values, windows, strict=True)
            ]

        self.actions = per_step([e.actions for e in episodes], (action_dim,))
        self.rewards = per_step([e.rewards for e in episodes], ())
        self.costs = per_step([e.costs for e in episodes], ())

    def gather(self, pairs: np.ndarray) -> StepBatch:
        """Pairs (B, 2) of (episode, step) -> their windows and actions."""
        starts = np.array([self.window_start[e][k] for e, k in pairs], dtype=np.int64)
        index = starts[:, None] + np.arange(self.clip_len + 1)

        def take(values):
            return torch.from_numpy(np.stack([values[e][k] for e, k in pairs]).astype(np.float32))

        return StepBatch(
            torch.from_numpy(self.frames[index]),
            take(self.actions),
            take(self.rewards),
            take(self.costs),
        )


class _Batches(Dataset):
    def __init__(self, store: _Store, batches: list[np.ndarray] | None = None) -> None:
        self.store, self.batches = store, batches

    def __len__(self) -> int:
        return len(self.batches or [])

    def __getitem__(self, key: Any) -> StepBatch:
        return self.store.gather(self.batches[key] if self.batches is not None else key)


class _RandomSteps(Sampler):
    def __init__(
        self, counts: np.ndarray, episodes: np.ndarray, total: int, batch_size: int, seed: int
    ) -> None:
        self.cum = np.cumsum(counts)
        self.episodes, self.total, self.batch_size, self.seed = episodes, total, batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.total / self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        flat = rng.integers(0, self.cum[-1], self.total)
        which = np.searchsorted(self.cum, flat, side="right")
        step = flat - np.concatenate([[0], self.cum])[which]
        pairs = np.stack([self.episodes[which], step], axis=1)
        for i in range(0, self.total, self.batch_size):
            yield pairs[i : i + self.batch_size]


class StepDataModule(L.LightningDataModule):
    """Labelled steps of recordings (``v2p record``) for the inverse dynamics model.

    Args:
        paths: recording folders whose episodes have actions.
        clip_len: frames of the observation the model sees before each action (the window is
            one more: the frame after it).
        frame_size: S; frames are center-cropped and resized to S x S.
        batch_size: steps per batch.
        steps_per_epoch: training steps drawn per epoch.
        val_fraction: share of the episodes held out for validation.
        seed: the split and the draws.
    """

    def __init__(
        self,
        paths: Sequence[str],
        clip_len: int = 4,
        frame_size: int = 64,
        batch_size: int = 64,
        steps_per_epoch: int = 6400,
        val_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name in ("clip_len", "frame_size", "batch_size", "steps_per_epoch"):
            check_int(name, locals()[name], ge=1)
        check_scalar("val_fraction", val_fraction, ge=0.0, le=0.9)
        if isinstance(paths, str) or not paths:
            raise ValueError(f"paths must be a non-empty list of recording folders, got {paths!r}")
        self.save_hyperparameters()
        self.paths = [str(p) for p in paths]
        self.clip_len, self.frame_size, self.batch_size = clip_len, frame_size, batch_size
        self.steps_per_epoch, self.val_fraction, self.seed = steps_per_epoch, val_fraction, seed
        manifests = [_manifest(Path(p)) for p in self.paths]
        channels = {m["frame_shape"][0] for m in manifests}
        if len(channels) > 1:
            raise ValueError(f"the recordings' frames disagree on channels: {sorted(channels)}")
        self.observation_shape = (clip_len + 1, channels.pop(), frame_size, frame_size)
        # The action box of the recorded env, for the model's labels (linked at instantiation).
        env = make_env(manifests[0]["env_id"], manifests[0].get("env_kwargs", {}))
        self.action_low = env.action_space.low.astype(float).tolist()
        self.action_high = env.action_space.high.astype(float).tolist()
        self.action_dim = len(self.action_low)
        env.close()
        self._store: _Store | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._store is not None:
            return
        episodes = load_episodes(self.paths, frame_size=self.frame_size)
        unlabelled = [e.episode_id for e in episodes if e.actions is None]
        unlabelled += [
            e.episode_id for e in episodes if e.actions is not None and np.isnan(e.actions).any()
        ]
        if unlabelled:
            raise ValueError(
                f"the inverse dynamics model learns from recorded actions; episodes "
                f"{unlabelled[:3]} have none (an action-free recording or a video is what "
                "`v2p label` labels, not what trains it)"
            )
        dims = {int(e.actions.shape[1]) for e in episodes}
        if dims != {self.action_dim}:
            raise ValueError(
                f"the recordings' actions have sizes {sorted(dims)}; their env acts in "
                f"{self.action_dim}-D"
            )
        self.train_episodes, self.val_episodes = split_episodes(
            [e.episode_id for e in episodes], self.val_fraction, self.seed
        )
        self._store = _Store(episodes, self.clip_len, self.action_dim)

    def _counts(self, episodes: np.ndarray) -> np.ndarray:
        return np.array([len(self._store.window_start[e]) for e in episodes], dtype=np.int64)

    def train_dataloader(self) -> DataLoader:
        sampler = _RandomSteps(
            self._counts(self.train_episodes),
            self.train_episodes,
            self.steps_per_epoch,
            self.batch_size,
            self.seed,
        )
        return DataLoader(_Batches(self._store), sampler=sampler, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        pairs = np.array(
            [(e, k) for e in self.val_episodes for k in range(self._counts([e])[0])], np.int64
        ).reshape(-1, 2)
        batches = [pairs[i : i + self.batch_size] for i in range(0, len(pairs), self.batch_size)]
        return DataLoader(_Batches(self._store, batches), batch_size=None, shuffle=False)


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(
            f"{str(folder)!r} is not a recording folder (no {MANIFEST_NAME}); the inverse "
            f"dynamics model trains on labelled recordings: v2p record --out {folder}"
        )
    return json.loads(path.read_text())
