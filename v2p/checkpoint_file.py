"""Reading checkpoint files without running code from them.

``torch.load(weights_only=False)`` unpickles arbitrary objects, so a crafted ``.ckpt`` runs its
payload on load; V2P's checkpoints hold only tensors and plain python values (every state V2P
writes is converted to those), so every file is read with ``weights_only=True``. Checkpoints
paths often come from someone else (a pretrained encoder, a novelty model), and a file that
needs more is refused, never loaded unsafely: the messages here never advise
``weights_only=False``, which is what torch's own messages suggest.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import torch

_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


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
    except pickle.UnpicklingError as e:
        found = _UNSUPPORTED_GLOBAL.search(str(e))
        if found is None:  # not a pickle at all (torch's message would advise unsafe loading)
            raise ValueError(
                f"{what} {path!r} is corrupt or not a checkpoint: it does not unpickle"
            ) from None
        raise ValueError(
            f"{what} {path!r} is not a V2P checkpoint: it holds an object of type "
            f"{found.group(1)}, beyond the tensors and plain values V2P writes; it is not "
            "loaded, since unpickling it could run code from the file"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        reason = (str(e).splitlines() or [""])[0][:200]
        raise ValueError(
            f"{what} {path!r} is corrupt or not a checkpoint (truncated, or another format): "
            f"{type(e).__name__}: {reason}"
        ) from None
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ValueError(f"{what} {path!r} is not a Lightning checkpoint (no 'state_dict')")
    return dict(checkpoint)
