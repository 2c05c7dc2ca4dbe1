"""Every global RNG a run draws from, as checkpoint state, for exact resume (DESIGN.md).

V2P draws from generators of its own where it can (the data module's numpy Generator, the envs'
own generators); these are the global ones: torch (the policy noise), CUDA, numpy's legacy
generator (which code V2P calls may use) and python's ``random``. Tensors and plain values
only, so a checkpoint holding them loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_global_rng() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "python_rng": random.getstate(),
    }


def restore_global_rng(state: dict[str, Any]) -> None:
    """Set every global RNG from :func:`capture_global_rng`'s output."""
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    numpy = state["numpy_rng"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002
        (numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"])
    )
    random.setstate(_as_tuples(state["python_rng"]))


def _as_tuples(value: Any) -> Any:
    """random.setstate needs tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
