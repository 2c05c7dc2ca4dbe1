"""Checkpoint IO that keeps replay buffers in side files next to each checkpoint.

A replay buffer can be gigabytes; pickling it inside the ``.ckpt`` would copy it in memory and
make every checkpoint slow to load even when only the weights are wanted (DESIGN.md, "Video
replay memory"). Only the checkpoint IO knows the path a checkpoint goes to, so this is where
the buffer is split off: ``last.ckpt`` gets ``last.ckpt.replay-<token>.npz`` (rank 0) and, under
DDP, ``last.ckpt.replay-rank<k>-<token>.npz`` for every other rank k.

A checkpoint and its side files are written so that at every instant one complete, matching
set is on disk: the side files under new names first (each save has its own token), then the
checkpoint, which names them, to a temporary file that ``os.replace`` puts in place atomically,
and only then are the previous side files removed. A kill at any point leaves the previous
checkpoint with its own side files, or the new one with its own; the next save removes what a
killed one left (``*.tmp``, side files no checkpoint names).

Loading is always ``weights_only``: a V2P checkpoint holds tensors and plain values only, and a
file that needs unpickling code to load is refused, whatever the caller asked for.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import uuid
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from v2p.checkpoint_file import unreadable_checkpoint
from v2p.data.replay import ReplayBuffer

DATAMODULE_KEY = "RolloutDataModule"  # Lightning stores a datamodule's state under its class name
LEGACY_REPLAY_SUFFIX = ".replay.npz"  # checkpoints written before side files had a token
_TMP = ".tmp"


def side_file_path(checkpoint_path: _PATH, token: str, rank: int = 0) -> str:
    """Where the replay of ``rank`` saved with ``token`` goes, beside ``checkpoint_path``."""
    part = token if rank == 0 else f"rank{rank}-{token}"
    return f"{os.fspath(checkpoint_path)}.replay-{part}.npz"


def legacy_replay_path(checkpoint_path: _PATH) -> str:
    return os.fspath(checkpoint_path) + LEGACY_REPLAY_SUFFIX


def _companions(checkpoint_path: str) -> list[str]:
    """Every file that belongs to the checkpoint at ``checkpoint_path`` other than itself: its
    side files of any save, and what an interrupted save left (``*.tmp``)."""
    directory, name = os.path.split(checkpoint_path)
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    # Prefix matching, not glob: checkpoint names hold "=" and metric values, maybe "[".
    return [
        os.path.join(directory, n)
        for n in names
        if n == name + _TMP or (n.startswith(name + ".replay") and n.endswith((".npz", _TMP)))
    ]


def _remove(paths: list[str]) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def stage_replay(buffer: ReplayBuffer, directory: str, rank: int) -> dict[str, str]:
    """Write a rank's replay where rank 0's checkpoint IO will move it beside the checkpoint.

    Under DDP only rank 0 writes the checkpoint (``Strategy.save_checkpoint``), so the other
    ranks cannot know its path; each writes its buffer here while the checkpoint's state is
    gathered and passes on the returned reference. ``Trainer.save_checkpoint`` ends in a
    barrier, so a rank's earlier staged files were placed (or abandoned by a failed save) when
    it stages the next, and are removed here.
    """
    os.makedirs(directory, exist_ok=True)
    prefix = f"rank{rank}-"
    _remove([os.path.join(directory, n) for n in os.listdir(directory) if n.startswith(prefix)])
    token = uuid.uuid4().hex
    path = os.path.join(directory, f"{prefix}{token}.npz")
    buffer.save(path, token=token)
    return {"staged": path, "token": token}


def _place(staged: str, path: str) -> None:
    """Move a staged file to ``path`` so that ``path`` is never seen half written."""
    try:
        os.replace(staged, path)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.copyfile(staged, path + _TMP)  # another file system: copy, then rename
        os.replace(path + _TMP, path)
        os.remove(staged)


def read_replay(reference: dict[str, Any]) -> dict[str, Any]:
    """The replay state a loaded checkpoint's reference points to (see ``load_checkpoint``),
    checked to come from the same save as the checkpoint."""
    path, checkpoint = reference["path"], reference["checkpoint"]
    replay = ReplayBuffer.read_state(path)
    if str(replay.pop("token", "")) != reference["token"]:
        raise ValueError(
            f"replay file {path} was not written with checkpoint {checkpoint} "
            "(the save was interrupted between the two files, or one was replaced)"
        )
    return replay


def _replay_holders(state: Any) -> list[tuple[int, dict[str, Any]]]:
    """(rank, entry) for each entry of the data module's state that holds a ``replay``: the
    per-rank entries of ``{"world_size": W, "ranks": [...]}``, or an older flat state (rank 0)."""
    if not isinstance(state, dict):
        return []
    if isinstance(state.get("ranks"), list):
        return [
            (k, e) for k, e in enumerate(state["ranks"]) if isinstance(e, dict) and "replay" in e
        ]
    return [(0, state)] if "replay" in state else []


def _needs_side_file(replay: Any) -> bool:
    return isinstance(replay, ReplayBuffer) or (isinstance(replay, dict) and "staged" in replay)


class ReplayCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` plus the replay side files, atomic pairs and weights-only
    loading; a checkpoint without a replay is written the same atomic way."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        path = os.fspath(path)
        holders = _replay_holders(checkpoint.get(DATAMODULE_KEY))
        if "://" in path and not any(_needs_side_file(e["replay"]) for _, e in holders):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote storage
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        previous = _companions(path)  # the last save's side files and a killed save's leftovers
        originals = [(entry, entry["replay"]) for _, entry in holders]
        written: list[str] = []
        try:
            for rank, entry in holders:
                replay = entry["replay"]
                if isinstance(replay, ReplayBuffer):
                    token = uuid.uuid4().hex
                    side = side_file_path(path, token, rank)
                    replay.save(side, token=token)
                elif isinstance(replay, dict) and "staged" in replay:
                    token = replay["token"]
                    side = side_file_path(path, token, rank)
                    if not os.path.isfile(replay["staged"]):
                        raise FileNotFoundError(
                            f"rank {rank}'s replay, staged in {replay['staged']}, is not there: "
                            "under multi-node DDP, trainer.default_root_dir must be on a file "
                            "system every node shares"
                        )
                    _place(replay["staged"], side)
                else:
                    continue  # embedded in the checkpoint (a state without a side file)
                written.append(side)
                entry["replay"] = {"file": os.path.basename(side), "token": token}
            tmp = path + _TMP
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            _remove([*written, path + _TMP])  # the previous pair is untouched
            raise
        finally:
            for entry, replay in originals:
                entry["replay"] = replay
        _remove([p for p in previous if p not in written])

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """The checkpoint at ``path``, each replay reference resolved to its side file.

        ``weights_only`` is always True (see the module docstring). A replay reference
        ``{"file", "token"}`` comes back as ``{"path", "token", "checkpoint"}``; the rank it
        belongs to reads it with :func:`read_replay`, so no rank loads another's buffer.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            checkpoint = super().load_checkpoint(path, map_location, weights_only=True)
        except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
            raise unreadable_checkpoint(path, e) from None
        if not isinstance(checkpoint, dict):
            raise ValueError(f"checkpoint {path} is not a V2P checkpoint: it holds no dict")
        for rank, entry in _replay_holders(checkpoint.get(DATAMODULE_KEY)):
            reference = entry["replay"]
            if isinstance(reference, dict) and "token" in reference and "file" in reference:
                entry["replay"] = {
                    "path": _find_side_file(path, reference, rank),
                    "token": reference["token"],
                    "checkpoint": path,
                }
        return checkpoint

    def remove_checkpoint(self, path: _PATH) -> None:
        super().remove_checkpoint(path)
        _remove(_companions(os.fspath(path)))


def _find_side_file(path: str, reference: dict[str, Any], rank: int) -> str:
    """The side file a checkpoint's reference names: under the checkpoint's current name first
    (a renamed or copied pair), then the name it was saved under; older checkpoints used
    ``<ckpt>.replay.npz``."""
    candidates = [side_file_path(path, reference["token"], rank)]
    if rank == 0:
        candidates.append(legacy_replay_path(path))
    candidates.append(os.path.join(os.path.dirname(path), reference["file"]))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"checkpoint {path} keeps rank {rank}'s replay buffer in {candidates[0]}, which is "
        "missing; copy it next to the checkpoint"
    )
