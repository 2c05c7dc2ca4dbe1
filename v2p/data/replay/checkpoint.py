"""Replay checkpoints: checks on a state dict (version 1), and the ``.npz`` side file.

The split of the buffer into storage and samplers left the state layout as the single-class
buffer wrote it, so side files written before still load; the prioritised sampler's sum tree is
not saved but rebuilt from the stored priorities.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

__all__ = ["STATE_VERSION", "check_state", "read_npz", "write_npz"]

# Bumped whenever the layout of `state_dict` changes, so an old side file fails loudly.
STATE_VERSION = 1


def _layout_name(state: dict[str, np.ndarray]) -> str:
    """What a replay state's frame ring holds, in words."""
    if int(state["frame_features"]) == 0:
        return "frame pixels"
    return "clip latents" if bool(state["clip_features"]) else "frame features"


def check_state(
    state: dict[str, np.ndarray],
    *,
    config: dict[str, np.ndarray],
    arrays: dict[str, np.ndarray],
    per_env_capacity: int,
) -> dict[str, np.ndarray]:
    """``state`` with the fields older versions lack filled in, once it matches a buffer's
    ``config`` exactly and its live ``arrays`` in shape and dtype, with scalar pointers.

    Raises:
        ValueError: naming the first field that is missing or does not match.
    """
    if "frame_features" not in state:  # saved before frame features existed: pixels
        state = {**state, "frame_features": np.asarray(0, dtype=np.int64)}
    if "clip_features" not in state:  # saved before clip latents existed
        state = {**state, "clip_features": np.asarray(False)}
    for key, expected in config.items():
        if key not in state:
            raise ValueError(f"replay state is missing field {key!r}")
        got = np.asarray(state[key])
        if got.shape != expected.shape or not np.array_equal(got, expected):
            hint = ""
            if key in ("frame_features", "clip_features"):
                # SACModule's cache_frame_features and freeze_encoder decide the layout.
                hint = (
                    f": the state stores {_layout_name(state)}; resume with the model's "
                    "cache_frame_features and freeze_encoder as the run had them"
                )
            raise ValueError(
                f"replay state field {key!r} is {got.tolist()!r}, but this buffer was built "
                f"with {expected.tolist()!r}{hint}"
            )
    if "priority" not in state:  # saved before prioritised replay existed: all equal
        state = {**state, "priority": np.ones_like(arrays["priority"])}
    for key, live in arrays.items():
        if key not in state:
            raise ValueError(f"replay state is missing field {key!r}")
        got = np.asarray(state[key])
        if got.shape != live.shape or got.dtype != live.dtype:
            raise ValueError(
                f"replay state field {key!r} has shape {got.shape} and dtype {got.dtype}, "
                f"expected shape {live.shape} and dtype {live.dtype}"
            )
    for key in ("pos", "full"):
        if key not in state or np.asarray(state[key]).shape != ():
            raise ValueError(f"replay state field {key!r} must be a scalar")
    pos = int(state["pos"])
    if not 0 <= pos < per_env_capacity:
        raise ValueError(
            f"replay state field 'pos' is {pos}, expected 0 <= pos < {per_env_capacity}"
        )
    return state


def write_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], token: str) -> None:
    """Write ``arrays`` and ``token`` to ``path`` as an uncompressed ``.npz`` (exactly that name).

    Writes to a temporary file first and renames it, so an interrupted save never leaves a
    truncated file where a good one was.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, token=np.asarray(token))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The arrays of a file written by :func:`write_npz`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a readable ``.npz``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"replay buffer file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise ValueError(f"replay buffer file {path} is corrupt or not an .npz: {e}") from e
