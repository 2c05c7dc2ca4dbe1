"""Clip pairs for self-supervised encoder pretraining: :class:`ClipDataModule`.

Sources (``paths``), each read whole into memory in :meth:`ClipDataModule.setup`:

* a recording folder of ``v2p record`` (``manifest.json`` + ``shard_*.npz``; the format is in
  :mod:`v2p.data.recording`), or one shard file of such a folder;
* a folder of video files (not recursive), or one video file: each file is one episode, decoded
  with PyAV to RGB, without task states.

Frames are center-cropped to a square and resized (bilinear, antialiased) to
``frame_size x frame_size`` once, at load time. Frames smaller than ``frame_size`` are refused
rather than upsampled.

A batch is a :class:`ClipBatch` of ``(anchor, positive)`` clip pairs from one episode, the
positive starting 1..``max_gap`` frames after the anchor (the temporal-contrastive positives of
Sermanet et al. 2018, TCN, and CURL/ATC-style pretraining). Clips are rebuilt from the stored
frames at sample time (one numpy gather per batch), as the replay buffer does.

Anchors of a recording only start where the anchor's newest frame is an observation's newest
frame (``start >= recording clip_len - clip_len``), so every recorded anchor has a task state.
Every episode needs at least ``first anchor + clip_len + max_gap`` frames; a shorter one is an
error that names its file, since silently dropping episodes would skew the split.

Split: an episode is in validation when a hash of ``(seed, episode id)`` falls below
``val_fraction``. The id is ``<folder name>/<file name>[#<episode in shard>]``, so the split does
not depend on the order of ``paths``, on other files, or on where the folder is mounted. If the
hash puts no episode in validation (few episodes), the lowest-hashed one goes there, and the
highest-hashed one always stays in training.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import av
import lightning as L
import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from v2p.data.recording import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME
from v2p.encoders.augment import random_shift  # re-exported: pretraining's augmentation
from v2p.validation import check_int, check_scalar

__all__ = [
    "VIDEO_EXTENSIONS",
    "ClipBatch",
    "ClipDataModule",
    "Episode",
    "load_episodes",
    "random_shift",
    "resize_frames",
]

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm")
_SHARD_KEYS = ("frames", "episode_starts", "actions", "rewards", "step_starts")
_RESIZE_CHUNK = 256  # frames resized at a time: bounds the float32 copy interpolate makes


class ClipBatch(NamedTuple):
    """Anchor/positive clip pairs; both clips of a pair come from the same episode."""

    anchor: torch.Tensor  # (B, T, C, H, W) uint8
    positive: torch.Tensor  # (B, T, C, H, W) uint8, starts 1..max_gap frames after the anchor
    # (B, D) float32 task state at the anchor's newest observation; rows of episodes without
    # task states are NaN; (B, 0) when no source has task states.
    state: torch.Tensor
    episode: torch.Tensor  # (B,) int64 global episode index, to mask same-episode negatives
    # (B, A) float32 action taken at the anchor's newest observation and (B,) float32 its
    # reward, for outcome prediction; NaN rows where there is none (video files, an episode's
    # last observation); (B, 0) actions when no source recorded actions.
    action: torch.Tensor
    reward: torch.Tensor
    # (B,) int64 the anchor's first frame within its episode, and (B,) int64 the positive's
    # gap after it: clips of one episode far apart in time are negatives of each other.
    time: torch.Tensor
    gap: torch.Tensor


class Episode(NamedTuple):
    """One episode's frames, for training, probes and benchmarks.

    Observation ``k`` (k = 0 the reset) is the clip ``frames[k : k + clip_len]``; ``states[k]``
    is its task state. Video files are episodes with ``clip_len = 1`` (every frame is an
    observation) and ``states = None``.
    """

    frames: np.ndarray  # (F, C, S, S) uint8, at frame_size S
    states: np.ndarray | None  # (F - clip_len + 1, D) float32, or None
    actions: np.ndarray | None  # (F - clip_len, A) float32: the action at observation k, or None
    rewards: np.ndarray | None  # (F - clip_len,) float32: its reward, or None
    source: str  # the manifest's data source, or "video"
    clip_len: int  # T of the recording
    episode_id: str  # stable id (module docstring), the key of the train/val split
    # (F - clip_len,) float32 each step's constraint cost and bool its termination; None for
    # video files and recordings made before they were stored (v2p.data.recording).
    costs: np.ndarray | None = None
    terminated: np.ndarray | None = None


class _Source(NamedTuple):
    """One file to read, as known from headers alone (read in ``ClipDataModule.__init__``)."""

    path: Path
    is_video: bool
    source: str
    channels: int
    height: int
    width: int
    state_dim: int | None
    action_dim: int | None
    clip_len: int | None  # of the recording: from the manifest, else derived at load time


# ----------------------------------------------------------------- frames


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Center-crop uint8 frames (N, C, H, W) to a square and resize to (N, C, size, size).

    Bilinear with antialiasing, so downscaling averages rather than aliases.
    """
    n, c, h, w = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    frames = frames[:, :, top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(frames)
    out = np.empty((n, c, size, size), dtype=np.uint8)
    for i in range(0, n, _RESIZE_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(frames[i : i + _RESIZE_CHUNK])).float()
        chunk = F.interpolate(
            chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[i : i + _RESIZE_CHUNK] = chunk.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


# ------------------------------------------------------------- headers


def _npz_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of array ``key`` in an ``.npz``, without reading its data (None: absent)."""
    with zipfile.ZipFile(path) as archive:
        if f"{key}.npy" not in archive.namelist():
            return None
        with archive.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return shape, dtype


def _shard_source(path: Path, manifest: dict[str, Any] | None) -> _Source:
    try:
        frames = _npz_header(path, "frames")
        states = _npz_header(path, "states")
        actions = _npz_header(path, "actions")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"cannot read shard {str(path)!r}: {type(e).__name__}: {e}") from e
    if frames is None:
        raise ValueError(f"shard {str(path)!r} has no 'frames' array; expected a v2p-clips shard")
    shape, dtype = frames
    if dtype != np.uint8 or len(shape) != 4:
        raise ValueError(
            f"shard {str(path)!r} has frames {dtype} {shape}; expected uint8 (F, C, H, W)"
        )
    state_dim = None
    if states is not None:
        if len(states[0]) != 2:
            raise ValueError(f"shard {str(path)!r} has states of shape {states[0]}; expected 2-D")
        state_dim = int(states[0][1])
    if actions is None or len(actions[0]) != 2:
        found = None if actions is None else actions[0]
        raise ValueError(f"shard {str(path)!r} has actions of shape {found}; expected (steps, A)")
    return _Source(
        path=path,
        is_video=False,
        source=str(manifest.get("source", "unknown")) if manifest else "unknown",
        channels=int(shape[1]),
        height=int(shape[2]),
        width=int(shape[3]),
        state_dim=state_dim,
        action_dim=int(actions[0][1]),
        clip_len=int(manifest["clip_len"]) if manifest else None,
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read manifest {str(path)!r}: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"manifest {str(path)!r} is not a {FORMAT_NAME!r} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"manifest {str(path)!r} has version {manifest.get('version')!r}; this code reads "
            f"version {FORMAT_VERSION}"
        )
    for key in ("clip_len", "shards"):
        if key not in manifest:
            raise ValueError(f"manifest {str(path)!r} has no {key!r}")
    return manifest


def _video_source(path: Path) -> _Source:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"video file {str(path)!r} has no video stream")
            context = container.streams.video[0].codec_context
            height, width = int(context.height), int(context.width)
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"cannot read video file {str(path)!r}: {e}") from e
    return _Source(path, True, "video", 3, height, width, None, None, 1)


def _resolve(path: Path, video_extensions: tuple[str, ...]) -> list[_Source]:
    """The files behind one entry of ``paths``."""
    is_video = path.suffix.lower() in video_extensions
    if path.is_file() and path.suffix == ".npz":
        manifest_path = path.parent / MANIFEST_NAME
        manifest = _read_manifest(manifest_path) if manifest_path.is_file() else None
        return [_shard_source(path, manifest)]
    if path.is_file() and is_video:
        return [_video_source(path)]
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        manifest = _read_manifest(path / MANIFEST_NAME)
        sources = []
        for shard in manifest["shards"]:
            file = path / shard["file"]
            if not file.is_file():
                raise ValueError(f"manifest {str(path / MANIFEST_NAME)!r} lists missing {file}")
            sources.append(_shard_source(file, manifest))
        return sources
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in video_extensions)
        if not videos:
            raise ValueError(
                f"folder {str(path)!r} has no {MANIFEST_NAME} and no video files "
                f"({', '.join(video_extensions)})"
            )
        return [_video_source(p) for p in videos]
    missing = "" if path.exists() else " (it does not exist"
    if missing:  # the usual cause: pretraining before recording anything
        missing += f"; record episodes first: v2p record --out {path} --episodes 200)"
    raise ValueError(
        f"path {str(path)!r} is not a recording folder, a .npz shard, a folder of videos or a "
        f"video file ({', '.join(video_extensions)}){missing}"
    )


def _resolve_all(paths: Sequence[str], video_extensions: tuple[str, ...]) -> list[_Source]:
    sources = [s for p in paths for s in _resolve(Path(p), video_extensions)]
    seen: set[Path] = set()
    for source in sources:
        resolved = source.path.resolve()
        if resolved in seen:  # it would be sampled twice as often, under two global indices
            raise ValueError(f"file {str(source.path)!r} is given twice in paths")
        seen.add(resolved)
    return sources


# ---------------------------------------------------------------- loading


def _offsets(name: str, starts: np.ndarray, total: int, path: Path) -> np.ndarray:
    starts = np.asarray(starts)
    if (
        starts.ndim != 1
        or starts.dtype.kind not in "iu"
        or len(starts) < 2
        or starts[0] != 0
        or starts[-1] != total
        or (np.diff(starts) < 0).any()
    ):
        raise ValueError(
            f"shard {str(path)!r}: {name} must be non-decreasing ints from 0 to {total} with one "
            f"entry per episode plus one, got {starts!r}"
        )
    return starts.astype(np.int64)


def _load_shard(source: _Source, frame_size: int) -> list[Episode]:
    path = source.path
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _SHARD_KEYS if k not in data.files]
            if missing:
                raise ValueError(f"shard {str(path)!r} lacks arrays {missing}")
            arrays = {k: data[k] for k in data.files}
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"cannot read shard {str(path)!r}: {type(e).__name__}: {e}") from e
    frames = arrays["frames"]
    ep = _offsets("episode_starts", arrays["episode_starts"], len(frames), path)
    st = _offsets("step_starts", arrays["step_starts"], len(arrays["rewards"]), path)
    if len(st) != len(ep):
        raise ValueError(f"shard {str(path)!r}: episode_starts and step_starts differ in length")
    # T + L frames per episode of L steps (recording module docstring).
    clip_lens = np.diff(ep) - np.diff(st)
    clip_len = source.clip_len if source.clip_len is not None else int(clip_lens[0])
    if clip_len < 1 or (clip_lens != clip_len).any():
        raise ValueError(
            f"shard {str(path)!r}: episodes must hold clip_len ({clip_len}) + steps frames, got "
            f"frames - steps = {clip_lens.tolist()}"
        )
    states, obs = arrays.get("states"), None
    if states is not None:
        if "obs_starts" not in arrays:
            raise ValueError(f"shard {str(path)!r} has states but no obs_starts")
        obs = _offsets("obs_starts", arrays["obs_starts"], len(states), path)
        if len(obs) != len(ep) or (np.diff(obs) != np.diff(st) + 1).any():
            raise ValueError(
                f"shard {str(path)!r}: obs_starts must give steps + 1 states per episode"
            )
        states = states.astype(np.float32, copy=False)
    actions = arrays["actions"].astype(np.float32, copy=False)
    rewards = arrays["rewards"].astype(np.float32, copy=False)
    if len(actions) != len(rewards):
        raise ValueError(
            f"shard {str(path)!r} has {len(actions)} actions but {len(rewards)} rewards"
        )
    steps = {}
    for key in ("costs", "terminated"):
        if key in arrays:
            steps[key] = arrays[key]
            if steps[key].shape != rewards.shape:
                raise ValueError(
                    f"shard {str(path)!r} has {key} of shape {steps[key].shape}, rewards "
                    f"{rewards.shape}: one per step expected"
                )
    costs = steps["costs"].astype(np.float32, copy=False) if "costs" in steps else None
    terminated = steps["terminated"].astype(bool, copy=False) if "terminated" in steps else None
    frames = resize_frames(frames, frame_size)
    folder_name = path.parent.name
    return [
        Episode(
            frames=frames[ep[i] : ep[i + 1]],
            states=None if obs is None else states[obs[i] : obs[i + 1]],
            actions=actions[st[i] : st[i + 1]],
            rewards=rewards[st[i] : st[i + 1]],
            source=source.source,
            clip_len=clip_len,
            episode_id=f"{folder_name}/{path.name}#{i}",
            costs=None if costs is None else costs[st[i] : st[i + 1]],
            terminated=None if terminated is None else terminated[st[i] : st[i + 1]],
        )
        for i in range(len(ep) - 1)
    ]


def _load_video(source: _Source, frame_size: int) -> Episode:
    path = source.path
    chunks, pending = [], []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                pending.append(frame.to_ndarray(format="rgb24"))  # (H, W, 3)
                if len(pending) == _RESIZE_CHUNK:
                    chunks.append(_resize_hwc(pending, frame_size))
                    pending = []
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"cannot decode video file {str(path)!r}: {e}") from e
    if pending:
        chunks.append(_resize_hwc(pending, frame_size))
    if not chunks:
        raise ValueError(f"video file {str(path)!r} has no decodable frames")
    return Episode(
        frames=np.concatenate(chunks),
        states=None,
        actions=None,
        rewards=None,
        source=source.source,
        clip_len=1,
        episode_id=f"{path.parent.name}/{path.name}",
    )


def _resize_hwc(frames: list[np.ndarray], size: int) -> np.ndarray:
    return resize_frames(np.stack(frames).transpose(0, 3, 1, 2), size)


def _load(source: _Source, frame_size: int) -> list[Episode]:
    if min(source.height, source.width) < frame_size:
        raise ValueError(
            f"{str(source.path)!r} has {source.height}x{source.width} frames, smaller than "
            f"frame_size {frame_size}; pass frame_size <= {min(source.height, source.width)}"
        )
    if source.is_video:
        return [_load_video(source, frame_size)]
    return _load_shard(source, frame_size)


def load_episodes(
    paths: Sequence[str],
    frame_size: int = 64,
    video_extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> list[Episode]:
    """Every episode of ``paths`` (see the module docstring), frames at ``frame_size``."""
    sources = _resolve_all(paths, tuple(e.lower() for e in video_extensions))
    return [e for s in sources for e in _load(s, frame_size)]


# ---------------------------------------------------------------- sampling


def _split_score(episode_id: str, seed: int) -> float:
    """A uniform [0, 1) number per (seed, episode id), stable across runs and machines."""
    digest = hashlib.blake2b(f"{seed}\0{episode_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def split_episodes(
    episode_ids: Sequence[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Global indices of the train and the val episodes (module docstring)."""
    scores = np.array([_split_score(i, seed) for i in episode_ids])
    is_val = scores < val_fraction
    if val_fraction > 0 and len(scores) >= 2 and not is_val.any():
        is_val[np.argmin(scores)] = True
    is_val[np.argmax(scores)] = False
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class _ClipStore:
    """All episodes' frames in one array, and the gather that turns pairs into a ClipBatch.

    Held by the datasets; dataloader workers read the arrays without writing them, so a forked
    worker shares their pages with the main process.
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        clip_len: int,
        state_dim: int | None,
        action_dim: int | None = None,
    ):
        self.clip_len = clip_len
        lengths = np.array([len(e.frames) for e in episodes], dtype=np.int64)
        self.frame_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.frames = np.concatenate([e.frames for e in episodes])  # (N, C, S, S)
        # The task state of the observation whose newest frame is frame n (NaN where none).
        self.frame_state = np.full((len(self.frames), state_dim or 0), np.nan, np.float32)
        # The action taken at that observation and its reward (NaN where none).
        self.frame_action = np.full((len(self.frames), action_dim or 0), np.nan, np.float32)
        self.frame_reward = np.full(len(self.frames), np.nan, np.float32)
        # First anchor start: the anchor's newest frame must be an observation's newest frame.
        self.first_anchor = np.array([max(0, e.clip_len - clip_len) for e in episodes], np.int64)
        for start, episode in zip(self.frame_start, episodes, strict=True):
            if episode.states is not None:
                first = start + episode.clip_len - 1
                self.frame_state[first : first + len(episode.states)] = episode.states
            if episode.actions is not None and action_dim:
                first = start + episode.clip_len - 1
                self.frame_action[first : first + len(episode.actions)] = episode.actions
                self.frame_reward[first : first + len(episode.rewards)] = episode.rewards

    def gather(self, pairs: np.ndarray) -> ClipBatch:
        """Pairs (B, 3) of (episode, anchor start in the episode, gap) -> a ClipBatch."""
        episode, start, gap = pairs[:, 0], pairs[:, 1], pairs[:, 2]
        anchor = self.frame_start[episode] + start  # (B,) global frame index
        index = anchor[:, None] + np.arange(self.clip_len)  # (B, T)
        newest = anchor + self.clip_len - 1
        return ClipBatch(
            anchor=torch.from_numpy(self.frames[index]),
            positive=torch.from_numpy(self.frames[index + gap[:, None]]),
            state=torch.from_numpy(self.frame_state[newest]),
            episode=torch.from_numpy(episode.astype(np.int64)),
            action=torch.from_numpy(self.frame_action[newest]),
            reward=torch.from_numpy(self.frame_reward[newest]),
            time=torch.from_numpy(start.astype(np.int64)),
            gap=torch.from_numpy(gap.astype(np.int64)),
        )


class _PairDataset(Dataset):
    """Map-style: the key is a whole batch of pairs (B, 3), so one gather builds the batch."""

    def __init__(self, store: _ClipStore) -> None:
        self.store = store

    def __getitem__(self, pairs: np.ndarray) -> ClipBatch:
        return self.store.gather(pairs)


class _FixedBatches(Dataset):
    """A fixed list of pair batches (validation)."""

    def __init__(self, store: _ClipStore, batches: list[np.ndarray]) -> None:
        self.store = store
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> ClipBatch:
        return self.store.gather(self.batches[index])


class _RandomPairs(Sampler):
    """``clips_per_epoch`` pairs per epoch, uniform over the training anchors, in batches.

    The draws of epoch ``e`` come from ``default_rng([seed, e])`` in the main process, so they
    do not depend on ``num_workers``. Lightning calls :meth:`set_epoch` before each epoch (so a
    resumed run draws what the uninterrupted one drew); without it, epochs count iterations.
    """

    def __init__(
        self,
        episodes: np.ndarray,
        first_anchor: np.ndarray,
        num_anchors: np.ndarray,
        clips_per_epoch: int,
        batch_size: int,
        max_gap: int,
        seed: int,
    ) -> None:
        self.episodes, self.first_anchor = episodes, first_anchor
        self.cum_anchors = np.cumsum(num_anchors)  # over the training episodes
        self.clips_per_epoch, self.batch_size = clips_per_epoch, batch_size
        self.max_gap, self.seed = max_gap, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.clips_per_epoch / self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        flat = rng.integers(0, self.cum_anchors[-1], self.clips_per_epoch)
        which = np.searchsorted(self.cum_anchors, flat, side="right")
        offset = flat - np.concatenate([[0], self.cum_anchors])[which]
        pairs = np.stack(
            [
                self.episodes[which],
                self.first_anchor[which] + offset,
                rng.integers(1, self.max_gap + 1, self.clips_per_epoch),
            ],
            axis=1,
        )
        for i in range(0, self.clips_per_epoch, self.batch_size):
            yield pairs[i : i + self.batch_size]


# ------------------------------------------------------------ data module


class ClipDataModule(L.LightningDataModule):
    """Anchor/positive clip pairs from recordings and videos (module docstring).

    Args:
        paths: recording folders, shard files, folders of video files or video files.
        clip_len: T, frames per clip.
        frame_size: S; frames are center-cropped and resized to S x S.
        batch_size: pairs per batch.
        num_workers: dataloader workers (they share the loaded frames read-only).
        val_fraction: expected share of episodes held out for validation.
        max_gap: the positive starts 1..max_gap frames after its anchor.
        shift_pad: DrQ random-shift padding in pixels, training batches only; 0 turns it off.
        clips_per_epoch: training pairs per epoch.
        seed: seeds the split and the training draws. A seed of its own rather than the
            run's ``seed_everything`` seed, so runs with different training seeds are validated
            on the same episodes.
        video_extensions: file suffixes read as video (case-insensitive).

    ``observation_shape`` (T, C, S, S), ``state_dim`` (D or None) and ``action_dim`` (A of the
    recordings, or None for video files alone) are known after
    ``__init__`` (from manifests and file headers); the frames are read in :meth:`setup`.
    """

    def __init__(
        self,
        paths: list[str],
        clip_len: int = 8,
        frame_size: int = 64,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        max_gap: int = 4,
        shift_pad: int = 4,
        clips_per_epoch: int = 10_000,
        seed: int = 0,
        video_extensions: Sequence[str] = VIDEO_EXTENSIONS,
    ) -> None:
        super().__init__()
        for name in ("clip_len", "frame_size", "batch_size", "max_gap", "clips_per_epoch"):
            check_int(name, locals()[name], ge=1)
        for name in ("num_workers", "shift_pad", "seed"):
            check_int(name, locals()[name], ge=0)
        check_scalar("val_fraction", val_fraction, ge=0.0)
        if val_fraction >= 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if isinstance(paths, (str, Path)) or not paths:
            raise ValueError(f"paths must be a non-empty list of paths, got {paths!r}")
        self.save_hyperparameters()
        self.paths = [str(p) for p in paths]
        self.clip_len, self.frame_size, self.batch_size = clip_len, frame_size, batch_size
        self.num_workers, self.val_fraction, self.max_gap = num_workers, val_fraction, max_gap
        self.shift_pad, self.clips_per_epoch, self.seed = shift_pad, clips_per_epoch, seed

        self._sources = _resolve_all(self.paths, tuple(e.lower() for e in video_extensions))
        channels = self._common("channels", "channels")
        assert channels is not None  # every source has frames
        self.observation_shape: tuple[int, int, int, int] = (
            clip_len,
            channels,
            frame_size,
            frame_size,
        )
        self.state_dim: int | None = self._common("task state sizes", "state_dim")
        self.action_dim: int | None = self._common("action sizes", "action_dim")

        self._store: _ClipStore | None = None
        self.episode_ids: list[str] = []
        self.train_episodes = np.zeros(0, np.int64)  # global episode indices
        self.val_episodes = np.zeros(0, np.int64)

    def _common(self, what: str, attribute: str) -> int | None:
        """The one value of ``attribute`` the sources that have one share (None: none has)."""
        values = {getattr(s, attribute) for s in self._sources} - {None}
        if len(values) > 1:
            files = ", ".join(f"{s.path}: {getattr(s, attribute)}" for s in self._sources)
            raise ValueError(f"sources disagree on {what} ({files}); use one kind per run")
        return values.pop() if values else None

    # ----------------------------------------------------------------- setup

    def setup(self, stage: str | None = None) -> None:
        if self._store is not None:
            return
        episodes: list[Episode] = []
        for source in self._sources:
            loaded = _load(source, self.frame_size)
            self._check_lengths(loaded, source.path)
            episodes += loaded
        self.episode_ids = [e.episode_id for e in episodes]
        self.train_episodes, self.val_episodes = split_episodes(
            self.episode_ids, self.val_fraction, self.seed
        )
        self._store = _ClipStore(episodes, self.clip_len, self.state_dim, self.action_dim)

    def _check_lengths(self, episodes: Sequence[Episode], path: Path) -> None:
        for i, episode in enumerate(episodes):
            first = max(0, episode.clip_len - self.clip_len)
            needed = first + self.clip_len + self.max_gap
            if len(episode.frames) < needed:
                raise ValueError(
                    f"episode {i} of {str(path)!r} has {len(episode.frames)} frames; clip_len "
                    f"{self.clip_len} and max_gap {self.max_gap} need at least {needed}"
                )

    def _num_anchors(self, episodes: np.ndarray) -> np.ndarray:
        """Anchor starts per episode that leave room for every gap up to ``max_gap``."""
        store = self._require_store()
        lengths = np.diff(np.append(store.frame_start, len(store.frames)))[episodes]
        return lengths - store.first_anchor[episodes] - self.clip_len - self.max_gap + 1

    def _require_store(self) -> _ClipStore:
        if self._store is None:
            raise RuntimeError("ClipDataModule: call setup() before asking for data")
        return self._store

    def val_pairs(self) -> np.ndarray:
        """The fixed validation pairs (N, 3) of (episode, anchor start, gap).

        Anchors every ``clip_len`` frames of each val episode; the gap cycles 1..max_gap so
        every gap is scored.
        """
        store = self._require_store()
        rows = []
        for episode, count in zip(
            self.val_episodes, self._num_anchors(self.val_episodes), strict=True
        ):
            starts = store.first_anchor[episode] + np.arange(0, count, self.clip_len)
            rows.append(np.stack([np.full_like(starts, episode), starts, starts], axis=1))
        pairs = np.concatenate(rows) if rows else np.zeros((0, 3), np.int64)
        pairs[:, 2] = np.arange(len(pairs)) % self.max_gap + 1
        return pairs

    # ------------------------------------------------------------ dataloaders

    def train_dataloader(self) -> DataLoader:
        store = self._require_store()
        if len(self.train_episodes) == 0:
            raise ValueError("ClipDataModule has no training episodes")
        sampler = _RandomPairs(
            self.train_episodes,
            store.first_anchor[self.train_episodes],
            self._num_anchors(self.train_episodes),
            self.clips_per_epoch,
            self.batch_size,
            self.max_gap,
            self.seed,
        )
        return self._loader(_PairDataset(store), sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        pairs = self.val_pairs()
        batches = [pairs[i : i + self.batch_size] for i in range(0, len(pairs), self.batch_size)]
        return self._loader(_FixedBatches(self._require_store(), batches), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        # batch_size=None: every dataset item already is a whole batch.
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Random shifts on the accelerator, anchor and positive independently, training only."""
        training = self.trainer is not None and self.trainer.training
        if isinstance(batch, ClipBatch) and training:
            return self.augment(batch)
        return batch

    def augment(self, batch: ClipBatch) -> ClipBatch:
        """The training augmentation: :func:`random_shift` of each clip, dtype uint8 kept."""
        return batch._replace(
            anchor=random_shift(batch.anchor, self.shift_pad),
            positive=random_shift(batch.positive, self.shift_pad),
        )
