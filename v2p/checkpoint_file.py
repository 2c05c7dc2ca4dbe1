"""Reading checkpoint files without running code from them.

``torch.load`` with weights-only loading turned off unpickles arbitrary objects, so a crafted
``.ckpt`` runs its payload on load. V2P's checkpoints hold only tensors and plain python values
(every state V2P writes is converted to those), so every file is read with
``weights_only=True``. Checkpoint paths often come from someone else (a pretrained encoder, a
novelty model), and a file that needs more is refused, never loaded unsafely: the messages here
never advise turning weights-only loading off, which is what torch's own messages suggest.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import torch

# How torch's weights-only unpickler names a global it refused (two wordings across releases).
_REFUSED_GLOBAL = re.compile(
    r"Unsupported global: GLOBAL ([\w.]+)|GLOBAL ([\w.]+) was not an allowed"
)


def unreadable_checkpoint(path: str, error: BaseException, what: str = "checkpoint") -> ValueError:
    """A clear error for a file ``torch.load(weights_only=True)`` could not read, without
    torch's advice to load it unsafely (which would run the code the file holds)."""
    refused = _REFUSED_GLOBAL.search(str(error))
    if refused is not None:
        return ValueError(
            f"{what} {path!r} is not a V2P checkpoint: it holds an object of type "
            f"{refused.group(1) or refused.group(2)}, beyond the tensors and plain values V2P "
            "writes; it is not loaded, since unpickling it could run code from the file"
        )
    if isinstance(error, pickle.UnpicklingError):
        reason = "its contents are not checkpoint data"
    elif isinstance(error, EOFError) or "central directory" in str(error):
        reason = "it is cut short (an interrupted copy or save?)"
    else:
        reason = f"torch cannot read it ({type(error).__name__})"
    return ValueError(f"{what} {path!r} is corrupt or not a V2P checkpoint: {reason}")


def read_checkpoint(path: str | os.PathLike[str], what: str = "checkpoint") -> dict[str, Any]:
    """The contents of the Lightning checkpoint at ``path``, loaded on the CPU.

    ``what`` names the file in errors (``"encoder checkpoint"``). Raises FileNotFoundError for
    a missing file, and ValueError for a corrupt one, one that is no Lightning checkpoint, and
    one holding objects that only unsafe loading could rebuild.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
    ) as e:
        raise unreadable_checkpoint(path, e, what) from None
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ValueError(f"{what} {path!r} is not a Lightning checkpoint (no 'state_dict')")
    return dict(checkpoint)


def load_module(cls: Any, path: str | os.PathLike[str], what: str) -> Any:
    """``cls.load_from_checkpoint(path)`` on the CPU, weights only; ValueError naming ``what``
    and the file when it is missing or cannot be loaded (the first line of the reason only:
    torch's unpickling errors run to a page of advice)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path!r} does not exist")
    try:
        return cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except (
        OSError,
        RuntimeError,
        KeyError,
        TypeError,
        ValueError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
    ) as e:
        reason = (str(e).splitlines() or [""])[0]
        raise ValueError(f"cannot load {what} {path!r}: {type(e).__name__}: {reason}") from e
