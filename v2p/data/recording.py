"""``v2p record``: record episodes of a clip-observation env into sharded ``.npz`` files.

The recordings are the pretraining data of the video encoder (:mod:`v2p.data.clips` reads
them). Record with ``v2p record`` (:mod:`v2p.record`); ``v2p record --help`` lists its options.

Folder layout (format ``v2p-clips``, version 1)::

    OUT/manifest.json
    OUT/shard_00000.npz, OUT/shard_00001.npz, ...

Each shard holds ``E`` whole episodes (``--episodes_per_shard``, the last shard fewer), written
with ``np.savez_compressed`` (``--compress false``: ``np.savez``; ``np.load`` reads both):

``frames``         uint8 (F, C, H, W). Per episode the T frames of the reset observation
                   (oldest first), then the newest frame of every step's observation: an episode
                   of L steps stores T + L frames, and the observation after k steps (k = 0 is
                   the reset) is ``frames[start + k : start + k + T]``, ``start`` its offset.
``episode_starts`` int64 (E + 1,) offsets of the episodes in ``frames``; the last is F.
``actions``        float32 (S, A) the action of every step; NaN in an action-free recording
                   (``v2p record --actions false``), which ``v2p label`` labels.
``rewards``        float32 (S,) the reward of every step (NaN in labelled video files).
``step_starts``    int64 (E + 1,) offsets of the episodes in ``actions`` / ``rewards``.
``costs``          float32 (S,) the constraint cost of every step: its error rate, as the
                   replay stores it (0 for envs without the step accounting).
``terminated``     bool (S,) whether the step ended its episode by termination (a time limit's
                   truncation is False: its value still bootstraps).
``action_std``     float32 (S, A) labelled recordings only (``v2p label``): the inverse dynamics
                   model's standard deviation of each action it labelled.
``states``         float32 (O, D) ``info["task_state"]`` of every observation (L + 1 per
                   episode, row k of an episode belongs to observation k); absent when the env
                   reports no task state.
``obs_starts``     int64 (E + 1,) offsets of the episodes in ``states``; absent with it.

``manifest.json``: ``{"format": "v2p-clips", "version": 1, "env_id", "env_kwargs", "policy",
"source", "seed", "clip_len": T, "frame_shape": [C, H, W], "state_dim": D or null, "shards":
[{"file", "episodes", "frames", "steps"}, ...]}``. The manifest is rewritten after every shard,
so an interrupted recording is still a valid (shorter) one.

``costs`` and ``terminated`` are absent from recordings made before 2026-12-01; encoder
pretraining reads those still, SAC's demonstrations (:mod:`v2p.data.demonstrations`) do not.

Storing one frame per step relies on the clips being sliding frame histories (observation k+1
is observation k shifted by one frame); the recorder checks this at every step.

Seeding: episode ``i`` is reset with seed ``SeedSequence([seed, i]).generate_state(1)[0]``, so
any episode can be replayed alone; random actions and the SAC policy's sampling noise draw from
streams derived from ``seed`` too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from v2p.envs.accounting import error_rates

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "EpisodeArrays",
    "ShardWriter",
    "shard_arrays",
    "shard_name",
]

FORMAT_NAME = "v2p-clips"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

# One observation (T, C, H, W) and the env's task state behind it (None where the env reports
# none) -> action (A,).
Policy = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.npz"


class EpisodeArrays(NamedTuple):
    """One recorded episode of L steps, in the shard layout (see the module docstring)."""

    frames: np.ndarray  # uint8 (T + L, C, H, W)
    actions: np.ndarray  # float32 (L, A)
    rewards: np.ndarray  # float32 (L,)
    states: np.ndarray | None  # float32 (L + 1, D), or None without task_state
    # float32 (L,) the error rate of every step and bool (L,) its termination; None where
    # unknown (data converted from elsewhere): the shard then stores neither.
    costs: np.ndarray | None = None
    terminated: np.ndarray | None = None
    # float32 (L, A) the labelling model's standard deviation of each action (v2p label).
    action_std: np.ndarray | None = None


# ------------------------------------------------------------------- checks


def check_clip_env(env: gym.Env, env_id: str) -> tuple[int, int, int, int]:
    """The clip shape (T, C, H, W) of ``env``; ValueError unless it records in this format."""
    space = env.observation_space
    if not (
        isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 4
    ):
        raise ValueError(
            f"recording requires uint8 clip observations (T, C, H, W); env {env_id!r} has "
            f"observation space {space}"
        )
    action_space = env.action_space
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(
            f"recording requires a 1-D Box action space; env {env_id!r} has {action_space}"
        )
    t, c, h, w = (int(d) for d in space.shape)
    return t, c, h, w


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create ``out``; refuse a non-empty one unless ``overwrite`` (then clear old shards)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(
                f"out folder {str(out)!r} is not empty; pass --overwrite true to replace its "
                f"recording, or choose another folder"
            )
        # Only what a recording writes is removed: the folder may hold the user's other files.
        for old in [*out.glob("shard_*.npz"), out / MANIFEST_NAME]:
            old.unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way, no permission, a read-only disk
        raise ValueError(f"cannot create out folder {str(out)!r}: {e.strerror or e}") from None


# ---------------------------------------------------------------- recording


def _task_state(info: dict[str, Any], env_id: str, where: str) -> np.ndarray | None:
    state = info.get("task_state")
    if state is None:
        return None
    state = np.asarray(state, dtype=np.float32)
    if state.ndim != 1:
        raise ValueError(f"env {env_id!r} reported a task_state of shape {state.shape} {where}")
    return state


def record_episode(
    env: gym.Env, env_id: str, act: Policy, seed: int, max_steps: int | None = None
) -> EpisodeArrays:
    """Run one episode from ``env.reset(seed=seed)`` to its end (or ``max_steps`` steps)."""
    obs, info = env.reset(seed=seed)
    frames = [*obs]  # the T frames of the reset clip, oldest first
    first_state = _task_state(info, env_id, "at reset")
    states = [] if first_state is None else [first_state]
    actions, rewards, costs, terminals = [], [], [], []
    done = False
    while not done and (max_steps is None or len(actions) < max_steps):
        action = np.asarray(act(obs, states[-1] if states else None), dtype=np.float32)
        next_obs, reward, terminated, truncated, info = env.step(action)
        step = len(actions)
        if not np.array_equal(next_obs[:-1], obs[1:]):
            raise ValueError(
                f"env {env_id!r}: the observation after step {step} is not the previous one "
                f"shifted by one frame; the shard format stores one new frame per step and needs "
                f"sliding frame histories"
            )
        frames.append(next_obs[-1])
        actions.append(action)
        rewards.append(float(reward))
        costs.append(float(error_rates(info, 1, f"env {env_id!r}")[0]))
        terminals.append(bool(terminated))
        if first_state is not None:
            state = _task_state(info, env_id, f"after step {step}")
            if state is None or state.shape != first_state.shape:
                raise ValueError(
                    f"env {env_id!r} reported task_state of shape {first_state.shape} at reset "
                    f"but {None if state is None else state.shape} after step {step}"
                )
            states.append(state)
        obs, done = next_obs, bool(terminated or truncated)
    action_dim = int(env.action_space.shape[0])
    return EpisodeArrays(
        frames=np.stack(frames).astype(np.uint8, copy=False),
        actions=np.asarray(actions, dtype=np.float32).reshape(-1, action_dim),
        rewards=np.asarray(rewards, dtype=np.float32),
        states=np.stack(states) if states else None,
        costs=np.asarray(costs, dtype=np.float32),
        terminated=np.asarray(terminals, dtype=bool),
    )


def _offsets(lengths: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def shard_arrays(episodes: Sequence[EpisodeArrays]) -> dict[str, np.ndarray]:
    """The arrays of one shard holding ``episodes`` (all with or all without states)."""
    arrays = {
        "frames": np.concatenate([e.frames for e in episodes]),
        "episode_starts": _offsets([len(e.frames) for e in episodes]),
        "actions": np.concatenate([e.actions for e in episodes]),
        "rewards": np.concatenate([e.rewards for e in episodes]),
        "step_starts": _offsets([len(e.rewards) for e in episodes]),
    }
    for key in ("costs", "terminated", "action_std"):
        if all(getattr(e, key) is not None for e in episodes):
            arrays[key] = np.concatenate([getattr(e, key) for e in episodes])
    if episodes[0].states is not None:
        arrays["states"] = np.concatenate([e.states for e in episodes])
        arrays["obs_starts"] = _offsets([len(e.states) for e in episodes])
    return arrays


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file, so a crash never leaves a truncated shard or manifest."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


class ShardWriter:
    """Writes episodes to ``out`` in this format: a shard every ``episodes_per_shard``
    episodes, and the manifest after each shard. Call :meth:`flush` after the last episode.

    ``manifest`` gives the manifest's other fields (``clip_len``, ``frame_shape``, ``state_dim``,
    ``source``, ...); ``format``, ``version`` and ``shards`` are filled in here. Also the way to
    convert other data to this format.
    """

    def __init__(
        self, out: Path, manifest: dict[str, Any], episodes_per_shard: int, compress: bool
    ):
        self.out = out
        self.manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **manifest, "shards": []}
        self.episodes_per_shard = episodes_per_shard
        self.save = np.savez_compressed if compress else np.savez
        self.pending: list[EpisodeArrays] = []

    def add(self, episode: EpisodeArrays) -> None:
        self.pending.append(episode)
        if len(self.pending) == self.episodes_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        arrays = shard_arrays(self.pending)
        name = shard_name(len(self.manifest["shards"]))
        _write_atomic(self.out / name, lambda f: self.save(f, **arrays))
        self.manifest["shards"].append(
            {
                "file": name,
                "episodes": len(self.pending),
                "frames": len(arrays["frames"]),
                "steps": len(arrays["rewards"]),
            }
        )
        text = json.dumps(self.manifest, indent=2).encode()
        _write_atomic(self.out / MANIFEST_NAME, lambda f: f.write(text))
        self.pending = []


def check_states_consistent(
    manifest: dict[str, Any], episode: EpisodeArrays, env_id: str, index: int
) -> None:
    """Every episode of a recording has task states of one size, or none has."""
    dim = None if episode.states is None else int(episode.states.shape[1])
    if index == 0:
        manifest["state_dim"] = dim
    elif dim != manifest["state_dim"]:
        raise ValueError(
            f"env {env_id!r} reported task_state of size {manifest['state_dim']} in episode 0 "
            f"but {dim} in episode {index}"
        )
