"""``v2p label``: label the steps of an action-free recording, or of video files, with an
inverse dynamics model (:mod:`v2p.models.idm`), writing a recording that has actions.

    v2p label --idm logs/idm/version_0/checkpoints/last.ckpt --input IN --out OUT

``IN`` is a recording folder (``v2p record``, e.g. with ``--actions false``) or a folder of
video files. ``OUT`` is a recording in the format of :mod:`v2p.data.recording` with the
frames at the IDM's frame size, ``actions`` the IDM's labels (clipped to the action box) and
``action_std`` beside them, the model's standard deviation of each label (its confidence).
Rewards, step costs, terminations and task states are copied where the input has them; video
files have none, so their labels can pretrain encoders or IDMs but not train SAC, which
learns from rewards (:mod:`v2p.data.demonstrations` refuses such a dataset by name). The
manifest records the IDM checkpoint and the validation R^2 it logged per action dimension.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from v2p.data.clips import Episode, load_episodes
from v2p.data.recording import MANIFEST_NAME, EpisodeArrays, ShardWriter, prepare_out
from v2p.data.steps import step_windows
from v2p.models.idm import load_idm

__all__ = ["label"]


def _label_episode(model, episode: Episode, clip_len: int, batch: int) -> EpisodeArrays:
    starts = step_windows(episode, clip_len)
    index = starts[:, None] + np.arange(clip_len + 1)
    actions, stds = [], []
    for i in range(0, len(index), batch):
        frames = torch.from_numpy(episode.frames[index[i : i + batch]])
        action, std = model.label(frames)
        actions.append(action.numpy())
        stds.append(std.numpy())
    # Observation k of the output is frames[k : k + T], as the format has it: T is the
    # recording's clip length, or the IDM's for a video (whose step k ends at frame k + T).
    rewards = episode.rewards if episode.rewards is not None else np.full(len(starts), np.nan)
    return EpisodeArrays(
        frames=episode.frames,
        actions=np.concatenate(actions).astype(np.float32),
        rewards=rewards.astype(np.float32),
        states=episode.states,
        costs=episode.costs,
        terminated=episode.terminated,
        action_std=np.concatenate(stds).astype(np.float32),
    )


def label(
    idm: str,
    input: str,
    out: str,
    episodes_per_shard: int = 50,
    batch_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Label every step of ``input`` with the IDM checkpoint ``idm`` into ``out``; returns
    the manifest's path (module docstring).

    Args:
        idm: an :class:`~v2p.models.idm.InverseDynamicsModule` checkpoint.
        input: a recording folder or a folder of video files.
        out: output folder; refused when it exists non-empty unless ``overwrite``.
        episodes_per_shard: episodes per ``.npz`` shard.
        batch_size: windows labelled at a time.
        overwrite: replace the shards and manifest of an existing recording in ``out``.
        progress: show a progress bar over episodes.
    """
    model = load_idm(idm)
    window, channels, size, _ = (int(d) for d in model.hparams.observation_shape)
    clip_len = window - 1
    try:
        episodes = load_episodes([input], frame_size=size)
    except ValueError as e:
        raise ValueError(f"input {input!r}: {e}") from e
    if episodes[0].frames.shape[1] != channels:
        raise ValueError(
            f"input {input!r} has {episodes[0].frames.shape[1]}-channel frames; the IDM "
            f"was trained on {channels}"
        )
    source_manifest = Path(input) / MANIFEST_NAME
    base = json.loads(source_manifest.read_text()) if source_manifest.is_file() else {}
    # The output's clips: the recording's own (the windows need at least clip_len), or for
    # video files, whose every frame is an observation, the IDM's.
    out_clip_len = episodes[0].clip_len if episodes[0].clip_len > 1 else clip_len
    metrics = _validation_r2(Path(idm))
    out_dir = Path(out)
    prepare_out(out_dir, overwrite)
    writer = ShardWriter(
        out_dir,
        {
            "env_id": base.get("env_id"),
            "env_kwargs": base.get("env_kwargs", {}),
            "policy": base.get("policy", "unknown (video)"),
            "source": base.get("source", "video"),
            "seed": base.get("seed"),
            "clip_len": out_clip_len,
            "frame_shape": [channels, size, size],
            "state_dim": base.get("state_dim"),
            "labelled_by": {"idm": str(idm), "val_r2": metrics},
        },
        episodes_per_shard,
        compress=True,
    )
    for episode in tqdm(episodes, desc="label", unit="episode", disable=not progress):
        writer.add(_label_episode(model, episode, clip_len, batch_size))
    writer.flush()
    return out_dir / MANIFEST_NAME


def _validation_r2(ckpt: Path) -> dict[str, float]:
    """The last ``val/r2/*`` the IDM's run logged (its metrics.csv), or {} if not found."""
    for metrics in (ckpt.parent.parent / "metrics.csv", ckpt.parent / "metrics.csv"):
        if metrics.is_file():
            rows = [r for r in csv.DictReader(metrics.open()) if r.get("val/nll")]
            if rows:
                last = rows[-1]
                return {k[len("val/r2/") :]: float(v) for k, v in last.items() if "val/r2/" in k}
    return {}


def build_parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog="v2p label",
        description="Label an action-free recording or a folder of videos with an inverse "
        "dynamics model checkpoint (configs/idm.yaml), into a recording with actions.",
    )
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(label, as_positional=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``v2p label ...``; returns the exit status (2 on a bad argument)."""
    cfg = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    kwargs = {k: v for k, v in cfg.as_dict().items() if k != "config"}
    try:
        manifest = label(**kwargs)
    except ValueError as e:
        print(f"v2p label: error: {e}", file=sys.stderr)
        return 2
    shards = json.loads(manifest.read_text())["shards"]
    steps = sum(s["steps"] for s in shards)
    print(f"v2p label: labelled {steps} steps in {len(shards)} shard(s); manifest {manifest}")
    return 0
