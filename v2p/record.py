"""``v2p record``: record episodes of a clip-observation env, acting randomly or with a SAC
policy, into the sharded recording format of :mod:`v2p.data.recording`.

The command layer: it joins the data format (``v2p.data``) with the policies that act
(``v2p.models``), so neither imports the other. Run ``v2p record --help``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from v2p.checkpoint_file import load_module
from v2p.contracts import PLATFORM
from v2p.data.recording import (
    MANIFEST_NAME,
    Policy,
    ShardWriter,
    check_clip_env,
    check_states_consistent,
    prepare_out,
    record_episode,
)
from v2p.data.rollout import make_env
from v2p.envs import PHYSICS_ENV_ID
from v2p.envs.optimal import optimal_policy
from v2p.envs.params import DishwashingParams
from v2p.models.sac import SACModule
from v2p.validation import check_int, check_scalar

# ----------------------------------------------------------------- policies


def _random_policy(action_space: gym.spaces.Box, seed: int) -> Policy:
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from the reset seeds
    low, high = action_space.low, action_space.high
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"policy 'random' needs a bounded action space, got {action_space}")
    return lambda obs, state: rng.uniform(low, high).astype(np.float32)


def _optimal_policy(env: gym.Env, env_id: str, err_target: float | None) -> Policy:
    """The dishwashing ceiling's best action for the kind of the rack in view
    (:func:`v2p.envs.optimal.optimal_policy`), read from the env's task state: an expert
    demonstrator for the synthetic dishwashing envs."""
    params = getattr(env.unwrapped, "params", None)
    if not isinstance(params, DishwashingParams) or env_id == PHYSICS_ENV_ID:
        raise ValueError(
            f"policy 'optimal' acts on the synthetic dishwashing dynamics; env {env_id!r} has "
            "no such parameters (the physics env's outcomes come from its simulation)"
        )
    best = optimal_policy(params, err_target=err_target)
    table = np.array([best.actions.get(name, (0.0, 0.0)) for name in params.kind_names])
    kinds = len(params.kind_names)

    def act(obs: np.ndarray, state: np.ndarray | None) -> np.ndarray:
        # The task state begins with the one-hot kind of the next rack.
        return table[int(np.argmax(state[:kinds]))].astype(np.float32)

    return act


def load_sac_policy(
    path: str, obs_shapes: dict[str, Sequence[int]], deterministic: bool, seed: int
) -> Policy:
    """A policy acting with the SAC checkpoint at ``path``: on the clips, or on the task state
    where the checkpoint was trained on state observations (``obs_shapes`` names both shapes:
    ``{"clip": ..., "state": ...}``, the state's None without task states)."""
    if not Path(path).is_file():
        raise ValueError(
            f"policy {path!r} is neither 'random', 'optimal' nor an existing SAC checkpoint file"
        )
    model = load_module(SACModule, path, "SAC checkpoint")
    expected = tuple(int(d) for d in model.hparams.observation_shape)
    seen = [k for k, shape in obs_shapes.items() if shape is not None and tuple(shape) == expected]
    if not seen:
        raise ValueError(
            f"SAC checkpoint {path!r} was trained on observations {expected}, but the env "
            f"gives clips {tuple(obs_shapes['clip'])} and task states "
            f"{obs_shapes.get('state')}; pass --env_kwargs matching its training env"
        )
    on_state = seen[0] == "state"
    model.eval()
    # The policy noise draws from torch's global RNG inside act(); a generator of its own is not
    # an option there, so the global one is seeded (record is a command, not a library call).
    torch.manual_seed(seed)

    def act(obs: np.ndarray, state: np.ndarray | None) -> np.ndarray:
        return model.act((state if on_state else obs)[None], deterministic=deterministic)[0]

    return act


def make_policy(
    policy: str,
    env: gym.Env,
    env_id: str,
    clip_shape: Sequence[int],
    deterministic: bool,
    seed: int,
    err_target: float | None = None,
) -> Policy:
    """``'random'`` (uniform actions), ``'optimal'`` (the synthetic dishwashing ceiling's
    actions) or a SAC checkpoint path."""
    if policy == "random":
        return _random_policy(env.action_space, seed)
    if policy == "optimal":
        return _optimal_policy(env, env_id, err_target)
    state = env.reset(seed=seed)[1].get("task_state")
    shapes = {"clip": clip_shape, "state": None if state is None else np.shape(state)}
    return load_sac_policy(policy, shapes, deterministic, seed)


def record(
    out: str,
    env_id: str = "v2p/DishwashingVideo-v0",
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 10,
    policy: str = "random",
    deterministic: bool = False,
    seed: int = 0,
    source: str = PLATFORM,
    episodes_per_shard: int = 50,
    max_steps: int | None = None,
    err_target: float | None = None,
    store_actions: bool = True,
    compress: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Record ``episodes`` episodes of ``env_id`` into ``out``; returns the manifest's path.

    Args:
        out: output folder; created, and refused when it exists non-empty unless ``overwrite``.
        env_id: any registered gymnasium id with uint8 clip observations (T, C, H, W).
        env_kwargs: the env's constructor keyword arguments, e.g. ``{"height": 32}``.
        episodes: how many episodes to record.
        policy: ``random`` (uniform actions over the action space), ``optimal`` (the
            synthetic dishwashing envs' best action for each dish kind: expert
            demonstrations) or the path of a SAC checkpoint (``SACModule``) trained on this
            env's clips or on its task states (a policy of ``v2p/Dishwashing-v0`` records the
            video env's episodes).
        deterministic: act with the SAC policy's mean action instead of sampling.
        seed: episode ``i`` resets with ``SeedSequence([seed, i])``; random actions and SAC
            sampling noise draw from streams seeded by ``seed`` too.
        source: name of the data source, stored in the manifest.
        episodes_per_shard: episodes per ``.npz`` shard.
        max_steps: cut episodes after this many steps (None: run each to its end).
        err_target: the shift error rate the ``optimal`` policy keeps to (None: no target).
        store_actions: false writes NaN for every action: an action-free recording, as
            video of someone doing the job would be, for ``v2p label`` to label.
        compress: ``np.savez_compressed`` rather than ``np.savez``.
        overwrite: replace the shards and manifest of an existing recording in ``out``.
        progress: show a progress bar over episodes.
    """
    check_int("episodes", episodes, ge=1)
    check_int("episodes_per_shard", episodes_per_shard, ge=1)
    check_int("seed", seed, ge=0)
    if max_steps is not None:
        check_int("max_steps", max_steps, ge=1)
    env_kwargs = dict(env_kwargs or {})
    out_dir = Path(out)

    env = make_env(env_id, env_kwargs)  # a clear error on an unknown id or bad kwargs
    try:
        t, c, h, w = check_clip_env(env, env_id)
        if err_target is not None:
            check_scalar("err_target", err_target, ge=0.0, le=1.0)
        act = make_policy(policy, env, env_id, (t, c, h, w), deterministic, seed, err_target)
        prepare_out(out_dir, overwrite)  # only once everything else is known to work
        writer = ShardWriter(
            out_dir,
            {
                "env_id": env_id,
                "env_kwargs": env_kwargs,
                "policy": policy,
                "deterministic": deterministic,
                "source": source,
                "seed": seed,
                "clip_len": t,
                "frame_shape": [c, h, w],
                "state_dim": None,
                "actions": store_actions,
            },
            episodes_per_shard,
            compress,
        )
        for i in tqdm(range(episodes), desc="record", unit="episode", disable=not progress):
            episode_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            episode = record_episode(env, env_id, act, episode_seed, max_steps)
            check_states_consistent(writer.manifest, episode, env_id, i)
            if not store_actions:
                episode = episode._replace(actions=np.full_like(episode.actions, np.nan))
            writer.add(episode)
        writer.flush()
    finally:
        env.close()
    return out_dir / MANIFEST_NAME


# ---------------------------------------------------------------------- CLI


def build_parser():
    """The ``v2p record`` parser, from :func:`record`'s signature and docstring."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog="v2p record",
        description=(
            "Record episodes of a clip-observation gymnasium env (random or SAC-checkpoint "
            "policy) into sharded .npz files and a manifest.json, the encoder pretraining data."
        ),
    )
    parser.add_argument("--config", action=ActionConfigFile)
    # as_positional=False: every argument, --out included, is a --flag.
    parser.add_function_arguments(record, as_positional=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``v2p record ...``; returns the exit status (2 on a bad argument or a failed record)."""
    parser = build_parser()
    cfg = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    kwargs = {k: v for k, v in cfg.as_dict().items() if k != "config"}
    try:
        manifest = record(**kwargs)
    except ValueError as e:
        print(f"v2p record: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # writing a shard or the manifest failed (disk full, permissions)
        where = e.filename or kwargs.get("out")
        print(f"v2p record: error: cannot write {where!s}: {e.strerror or e}", file=sys.stderr)
        return 2
    shards = json.loads(manifest.read_text())["shards"]
    frames = sum(s["frames"] for s in shards)
    print(f"v2p record: wrote {len(shards)} shard(s), {frames} frames; manifest {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
