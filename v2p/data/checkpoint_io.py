"""Checkpoint IO that keeps the replay buffer in a side file next to each checkpoint.

A replay buffer can be gigabytes; pickling it inside the ``.ckpt`` would copy it in memory and
make every checkpoint slow to load even when only the weights are wanted (DESIGN.md, "Video
replay memory"). Only the checkpoint IO knows the path a checkpoint goes to, so this is where
the buffer is split off: ``epoch=3-step=4000.ckpt`` gets ``epoch=3-step=4000.ckpt.replay.npz``.
"""

from __future__ import annotations

import os
import pickle
import uuid
from typing import Any

from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from v2p.data.replay import ReplayBuffer

DATAMODULE_KEY = "RolloutDataModule"  # Lightning stores a datamodule's state under its class name
REPLAY_SUFFIX = ".replay.npz"


def replay_path(checkpoint_path: _PATH) -> str:
    return os.fspath(checkpoint_path) + REPLAY_SUFFIX


class ReplayCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` plus the replay side file; everything else is unchanged."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        state = checkpoint.get(DATAMODULE_KEY)
        buffer = state.get("replay") if isinstance(state, dict) else None
        if not isinstance(buffer, ReplayBuffer):
            return super().save_checkpoint(checkpoint, path, storage_options)
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        # The side file first, so a checkpoint on disk always has its replay beside it; the
        # token pairs the two, so a kill between the two writes (a new replay beside an old
        # checkpoint) is caught when loading.
        token = uuid.uuid4().hex
        buffer.save(replay_path(path), token=token)
        state["replay"] = {"file": os.path.basename(replay_path(path)), "token": token}
        try:
            super().save_checkpoint(checkpoint, path, storage_options)
        finally:
            state["replay"] = buffer

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not os.path.isfile(os.fspath(path)):
            raise FileNotFoundError(f"checkpoint not found: {os.fspath(path)}")
        try:
            checkpoint = super().load_checkpoint(path, map_location, weights_only)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise ValueError(f"checkpoint {os.fspath(path)} is corrupt or unreadable: {e}") from e
        state = checkpoint.get(DATAMODULE_KEY)
        reference = state.get("replay") if isinstance(state, dict) else None
        if isinstance(reference, dict) and "token" in reference:
            side = replay_path(path)
            if not os.path.isfile(side):
                raise FileNotFoundError(
                    f"checkpoint {os.fspath(path)} keeps its replay buffer in {side}, "
                    "which is missing; copy it next to the checkpoint"
                )
            replay = ReplayBuffer.read_state(side)
            if str(replay.pop("token", "")) != reference["token"]:
                raise ValueError(
                    f"replay file {side} was not written with checkpoint {os.fspath(path)} "
                    "(the save was interrupted between the two files, or one was replaced)"
                )
            state["replay"] = replay
        return checkpoint

    def remove_checkpoint(self, path: _PATH) -> None:
        super().remove_checkpoint(path)
        side = replay_path(path)
        if os.path.isfile(side):
            os.remove(side)
