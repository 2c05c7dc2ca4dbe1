"""Demonstrations: recorded episodes mixed into every SAC batch (RLPD's symmetric sampling).

Ball et al. 2023 ("Efficient Online RL with Offline Data", RLPD) draw half of each batch from
offline data and half from the online replay; with LayerNorm in the critics
(``SACModule(critic_layer_norm=True)``) and a higher update-to-data ratio this learns faster
than starting from nothing, from pixels too. :class:`~v2p.data.RolloutDataModule` takes
``demonstrations`` (recordings in the :mod:`v2p.data.recording` format, each a named data
source) and ``demo_share``; this module loads them into a replay buffer of their own and mixes
its samples with the online ones.

A demonstration transition carries its source through the replay like an online one: source
ids ``0 .. S-1`` are the env sources, ``S + j`` the ``j``-th demonstration dataset. The
recordings are read again when a run resumes (they are not copied into the checkpoint); the
checkpoint keeps a digest of each, and a dataset that changed since is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from v2p.contracts import ReplaySample
from v2p.data.clips import Episode, load_episodes
from v2p.data.recording import MANIFEST_NAME
from v2p.validation import check_int

__all__ = [
    "Demonstration",
    "DemonstrationEpisodes",
    "even_interleaving",
    "load_demonstration",
    "mix_samples",
    "observation",
]


@dataclass
class Demonstration:
    """A recording (``v2p record``) whose episodes train SAC beside its own experience.

    Args:
        name: the dataset's data-source name in the ledger and the logs (unique among the
            sources and the other demonstrations).
        path: the recording's folder (its ``manifest.json`` and shards).
        max_episodes: use only the first this many episodes (None: all).
        owner: the env source that uploaded it (None: the first env source, the platform's
            own by default). The dataset has no site of its own: its contribution is
            measured at its owner's sites, and its owner's shifts are credited with it
            (ECONOMICS.md section 7.1).
    """

    name: str
    path: str
    max_episodes: int | None = None
    owner: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a demonstration needs a non-empty name, got {self.name!r}")
        if self.max_episodes is not None:
            check_int(f"max_episodes of demonstration {self.name!r}", self.max_episodes, ge=1)


class DemonstrationEpisodes(NamedTuple):
    """A demonstration's transitions, episode by episode (:func:`observation` reads one)."""

    # Per episode: for clips its T + L frames (observation k is frames[k : k + T], as
    # recorded), for states its L + 1 task states; then L actions, rewards, costs and
    # terminations.
    observations: list[np.ndarray]
    actions: list[np.ndarray]
    rewards: list[np.ndarray]
    costs: list[np.ndarray]
    terminated: list[np.ndarray]
    digest: str  # of every array above, to tell on resume whether the recording changed

    @property
    def transitions(self) -> int:
        return sum(len(a) for a in self.actions)


def observation(observations: np.ndarray, k: int, clip_len: int | None) -> np.ndarray:
    """Observation ``k`` of an episode of :class:`DemonstrationEpisodes`: the clip
    ``frames[k : k + clip_len]``, or the task state ``k`` (``clip_len`` None)."""
    return observations[k] if clip_len is None else observations[k : k + clip_len]


def _observations(
    episode: Episode, demo: Demonstration, observation_shape: tuple[int, ...], is_clip: bool
) -> np.ndarray:
    """What the episode's observations are read from: its frames or its task states."""
    if is_clip:
        t = observation_shape[0]
        if episode.clip_len != t:
            raise ValueError(
                f"demonstration {demo.name!r} ({demo.path}) was recorded with clips of "
                f"{episode.clip_len} frames; the env observes {t}"
            )
        return episode.frames
    if episode.states is None or episode.states.shape[1:] != observation_shape:
        found = None if episode.states is None else episode.states.shape[1:]
        raise ValueError(
            f"demonstration {demo.name!r} ({demo.path}): the env observes states of shape "
            f"{observation_shape}, the recording's task states have shape {found}; record the "
            "video env of the same task (its task state is the state env's observation)"
        )
    return episode.states


def load_demonstration(
    demo: Demonstration, observation_shape: tuple[int, ...], obs_dtype: np.dtype, action_dim: int
) -> DemonstrationEpisodes:
    """Read ``demo``'s recording as transitions for a replay of ``observation_shape``:
    uint8 clips ``(T, C, H, W)`` from its frames, float states ``(D,)`` from its task states.

    Raises ValueError, naming the dataset, on a missing or malformed recording, one without
    step costs (recorded before they were stored), or shapes that do not match the env's.
    """
    folder = Path(demo.path)
    if not (folder / MANIFEST_NAME).is_file():
        raise ValueError(
            f"demonstration {demo.name!r}: {str(folder)!r} is not a recording folder (no "
            f"{MANIFEST_NAME}); record one with: v2p record --out {folder} --policy ..."
        )
    is_clip = len(observation_shape) == 4
    if is_clip and observation_shape[2] != observation_shape[3]:
        raise ValueError(
            f"demonstrations need square frames; the env's are {observation_shape[2:]} (H, W)"
        )
    # frame_size is the env's own, so frames of the same size are used as recorded.
    frame_size = observation_shape[2] if is_clip else 1
    try:
        episodes = load_episodes([str(folder)], frame_size=frame_size)
    except ValueError as e:
        raise ValueError(f"demonstration {demo.name!r}: {e}") from e
    if is_clip and episodes and episodes[0].frames.shape[1] != observation_shape[1]:
        raise ValueError(
            f"demonstration {demo.name!r} has {episodes[0].frames.shape[1]}-channel frames; "
            f"the env observes {observation_shape[1]}"
        )
    episodes = episodes[: demo.max_episodes]
    if not episodes:
        raise ValueError(f"demonstration {demo.name!r} ({demo.path}) holds no episodes")
    out = DemonstrationEpisodes([], [], [], [], [], "")
    digest = hashlib.blake2b(digest_size=16)
    for episode in episodes:
        for what, values, fix in (
            ("actions", episode.actions, "label them first: v2p label --idm CKPT"),
            ("rewards", episode.rewards, "SAC learns from rewards; use it to pretrain"),
        ):
            if not np.isfinite(values).all():
                raise ValueError(
                    f"demonstration {demo.name!r} ({demo.path}) has steps without {what} "
                    f"(NaN, in {episode.episode_id}); {fix}"
                )
        if episode.costs is None or episode.terminated is None:
            raise ValueError(
                f"demonstration {demo.name!r} ({demo.path}) was recorded without step costs "
                "and terminations (before 2026-12-01); record it again with v2p record"
            )
        if episode.actions.shape[1] != action_dim:
            raise ValueError(
                f"demonstration {demo.name!r} has {episode.actions.shape[1]}-D actions; the "
                f"env acts in {action_dim}-D"
            )
        obs = _observations(episode, demo, observation_shape, is_clip).astype(obs_dtype)
        arrays = (obs, episode.actions, episode.rewards, episode.costs, episode.terminated)
        for values, column in zip(arrays, out[:5], strict=True):
            column.append(values)
            digest.update(np.ascontiguousarray(values).tobytes())
    return out._replace(digest=digest.hexdigest())


def mix_samples(online: ReplaySample, offline: ReplaySample) -> ReplaySample:
    """One batch of the online and offline rows, interleaved evenly.

    Every prefix of the batch holds the two in the batch's proportion (within a row), because
    parts of the model read only the first rows of a batch (the attribution heads'
    ``attribution.batch``, the novelty model's ``novelty_batch``): with the offline rows
    last, those parts would never see a demonstration. Offline rows have index -1 (they have
    no slot in the online replay, whose priorities the model's novelty feedback updates) and
    importance weight 1 where the online draw was prioritised.
    """
    index = None
    if online.index is not None:
        index = torch.cat([online.index, torch.full_like(offline.source, -1)])
    weight = None
    if online.weight is not None:
        weight = torch.cat([online.weight, torch.ones_like(offline.reward)])
    fields = ("obs", "action", "reward", "err", "next_obs", "terminated", "source")
    parts = {f: torch.cat([getattr(online, f), getattr(offline, f)]) for f in fields}
    order = even_interleaving(len(online.source), len(offline.source))
    mixed = {f: v[order] for f, v in parts.items()}
    return ReplaySample(
        **mixed,
        index=None if index is None else index[order],
        weight=None if weight is None else weight[order],
    )


def even_interleaving(first: int, second: int) -> torch.Tensor:
    """A permutation of ``first + second`` rows (the ``first`` then the ``second``) that
    spreads each group evenly: row ``i`` of a group of ``n`` goes to position ``(i + 1/2) / n``
    of the batch, ties to the first group."""
    keys = torch.cat(
        [
            (torch.arange(first, dtype=torch.float64) + 0.5) / max(first, 1),
            (torch.arange(second, dtype=torch.float64) + 0.5) / max(second, 1),
        ]
    )
    return torch.sort(keys, stable=True).indices
