"""bfloat16 on a CPU: a gain only where the CPU computes in bfloat16 natively.

``--trainer.precision=bf16-mixed`` runs the networks' matrix products in bfloat16. A CPU with
AVX512-BF16 or AMX does them natively (1.7x the fp32 SAC updates/s on one Xeon core,
docs/benchmarks.md); one without converts every operand in software, which is far slower than
fp32: on a 2-core AVX2-only AMD EPYC the state task's SAC ran 4 updates/s, 0.09x
Stable-Baselines3 in fp32. :func:`warn_if_bf16_is_emulated` says so when a trainer asks for it.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

# /proc/cpuinfo flags of native bfloat16 arithmetic: x86 (AVX512-BF16, AMX) and arm64 (BF16).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The first CPU's feature flags (x86 ``flags``, arm64 ``Features``), or None where the
    file is missing or lists none (not Linux): unknown, not absent."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool | None:
    """Whether the CPU computes in bfloat16 natively; None when its flags are unknown."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return None
    return not NATIVE_BF16_FLAGS.isdisjoint(flags)


def warn_if_bf16_is_emulated(trainer: L.Trainer, flags: frozenset[str] | None = None) -> bool:
    """Warn (once, on rank 0) when ``trainer`` runs in bfloat16 on a CPU known to lack native
    bfloat16; returns whether it warned. ``flags`` stands in for the CPU's (for tests)."""
    precision = str(trainer.precision)
    if not precision.startswith("bf16") or trainer.strategy.root_device.type != "cpu":
        return False
    if cpu_has_native_bf16(flags) is not False:
        return False
    rank_zero_warn(
        f"--trainer.precision={precision} on a CPU without native bfloat16 (its flags list "
        f"none of {sorted(NATIVE_BF16_FLAGS)}): the matrix products are emulated, much slower "
        "than fp32 (measured on an AVX2-only AMD EPYC: 4 SAC updates/s on the state task, "
        "0.09x Stable-Baselines3 in fp32). Leave precision at its default (32-true) here.",
        category=UserWarning,
    )
    return True


__all__ = ["cpu_flags", "cpu_has_native_bf16", "warn_if_bf16_is_emulated"]
