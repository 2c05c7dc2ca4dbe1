"""ReplayCheckpointIO: a kill at any point of a save leaves one complete pair; corrupt files and
unsafe pickles are refused with errors that name the file and never advise unsafe loading."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

from tests.models.conftest import make_run
from v2p.data.checkpoint_io import ReplayCheckpointIO


class SimulatedKill(BaseException):
    """Stands for SIGKILL: not an Exception, so no ``except Exception`` handler sees it."""


def companions(checkpoint: Path) -> list[str]:
    """Every file beside ``checkpoint`` that belongs to it (side files, temporaries)."""
    return sorted(p.name for p in checkpoint.parent.iterdir() if p.name != checkpoint.name)


def rank0_state(checkpoint: dict) -> dict:
    state = checkpoint["RolloutDataModule"]
    return state["ranks"][0] if "ranks" in state else state


def saved_run(root: Path):
    """A short run with ``last.ckpt`` written by its trainer, then one more env step taken, so a
    second save differs from the first."""
    model, dm, trainer = make_run(root, max_steps=4)
    trainer.fit(model, dm)
    path = root / "ckpt" / "last.ckpt"
    trainer.save_checkpoint(path)
    first = dm.env_steps
    dm.collect(random_actions=True)
    return trainer, path, first, dm.env_steps


def resumes(root: Path, path: Path) -> int:
    """Resume from ``path`` for a few updates; the env steps the checkpoint held."""
    checkpoint = ReplayCheckpointIO().load_checkpoint(path)
    model, dm, trainer = make_run(root, max_steps=6, seed=1)
    trainer.fit(model, dm, ckpt_path=str(path))
    assert trainer.global_step == 6
    return int(rank0_state(checkpoint)["env_steps"])


# The originals, for the patched versions below to call.
torch_save, os_replace = torch.save, os.replace


def _kill_in_replay_save(self, path, token=""):
    with open(f"{path}.tmp", "wb") as f:
        f.write(b"half a replay")
    raise SimulatedKill


def _half_then_kill(obj, f, *args, **kwargs):
    data = io.BytesIO()
    torch_save(obj, data)
    f.write(data.getvalue()[: len(data.getvalue()) // 2])
    raise SimulatedKill


def _replace_but_not_the_checkpoint(src, dst):
    if os.fspath(dst).endswith(".ckpt"):
        raise SimulatedKill
    return os_replace(src, dst)


def _kill(*args):
    raise SimulatedKill


# What is patched to kill the save, and which save survives it: the first (0) or the second.
KILL_POINTS = {
    "while writing the replay": ("v2p.data.replay.ReplayBuffer.save", _kill_in_replay_save, 0),
    "while writing the checkpoint": ("torch.save", _half_then_kill, 0),
    "before the checkpoint is renamed": ("os.replace", _replace_but_not_the_checkpoint, 0),
    "before the old replay is removed": ("v2p.data.checkpoint_io._remove", _kill, 1),
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_any_point_of_a_save_leaves_a_pair_that_loads_and_resumes(
    tmp_path, monkeypatch, point
):
    target, replacement, survivor = KILL_POINTS[point]
    trainer, path, first, second = saved_run(tmp_path / "run")
    with monkeypatch.context() as patch:
        # A real kill runs no clean-up: what the save leaves behind stays.
        patch.setattr("v2p.data.checkpoint_io._remove", lambda paths: None, raising=False)
        patch.setattr(target, replacement, raising=False)
        with pytest.raises(SimulatedKill):
            trainer.save_checkpoint(path)
    assert resumes(tmp_path / "resumed", path) == (first, second)[survivor]
    # The next save clears what the killed one left: one checkpoint, one side file.
    trainer.save_checkpoint(path)
    (side,) = companions(path)
    assert side.startswith("last.ckpt.replay-") and side.endswith(".npz")


def test_the_next_save_removes_what_killed_saves_left_and_remove_takes_the_pair(tmp_path):
    trainer, path, _, second = saved_run(tmp_path / "run")
    for leftover in ("last.ckpt.tmp", "last.ckpt.replay-dead.npz", "last.ckpt.replay-dead.npz.tmp"):
        (path.parent / leftover).write_bytes(b"left by a kill")
    trainer.save_checkpoint(path)
    assert len(companions(path)) == 1
    assert resumes(tmp_path / "resumed", path) == second
    ReplayCheckpointIO().remove_checkpoint(path)
    assert not path.exists() and companions(path) == []


def test_a_checkpoint_whose_replay_is_named_the_old_way_still_loads(tmp_path):
    """Checkpoints written before side files had a token: ``<ckpt>.replay.npz``, flat state."""
    _, path, first, _ = saved_run(tmp_path / "run")
    checkpoint = torch.load(path, weights_only=True)
    state = rank0_state(checkpoint)
    (side,) = companions(path)
    os.rename(path.parent / side, f"{path}.replay.npz")
    state["replay"]["file"] = "last.ckpt.replay.npz"
    checkpoint["RolloutDataModule"] = state
    torch.save(checkpoint, path)
    assert resumes(tmp_path / "resumed", path) == first


# ------------------------------------------------------------------ unreadable checkpoints


def load_error(path: Path, **kwargs) -> ValueError:
    with pytest.raises(ValueError) as info:
        ReplayCheckpointIO().load_checkpoint(path, **kwargs)
    error = info.value
    message = str(error)
    assert f"checkpoint {str(path)!r} is " in message and "not a V2P checkpoint" in message
    # torch's own message advises loading with weights_only=False, which runs the file's code.
    advice = message.replace(str(path), "")
    assert "weights_only" not in advice and "PytorchStreamReader" not in advice
    assert error.__cause__ is None and error.__suppress_context__
    return error


def test_truncated_and_random_checkpoints_are_called_corrupt(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "cut short" in str(load_error(truncated))
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(bytes(range(256)) * 16)
    load_error(garbage)


class Exploit:
    """Unpickling this creates a file: the code a checkpoint can run if loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_is_weights_only_whatever_the_caller_asks(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "exploit.ckpt"
    torch.save({"state_dict": {}, "payload": Exploit(marker)}, path)
    error = load_error(path, weights_only=False)
    assert "object of type io.open" in str(error)  # names what the file holds
    assert not marker.exists()


def test_a_trainer_resuming_from_a_corrupt_checkpoint_names_it(tmp_path):
    path = tmp_path / "corrupt.ckpt"
    path.write_bytes(b"\x80\x04not a checkpoint")
    model, dm, trainer = make_run(tmp_path, max_steps=2)
    with pytest.raises(ValueError, match=r"corrupt\.ckpt' is corrupt or not a V2P checkpoint"):
        trainer.fit(model, dm, ckpt_path=str(path))
