"""The physics env's error model, measured offline: a per-kind table of error probabilities.

The env's ``p_err`` and ``expected_*`` info (and so ``val/expected_profit`` and the heat map
in docs/benchmarks.md) come from this table: for every dish kind and every point of a
21 x 21 grid of ``(speed, care)``, the fraction of 500 simulated attempts that broke a dish or
left it out of its slot, each attempt with its own domain-randomisation draw (so the samples
are independent: with one draw shared by ten attempts the shift-to-shift spread of friction and
strength made the table visibly noisier), run exactly as the env runs them. Between grid
points the table is interpolated bilinearly. The grid and the count were chosen by measuring
against fresh placements at random off-grid points (``bench/physics.py --calibration``): the
earlier 11 x 11 grid of 200 attempts read 0.013 too high where the rate is between 0.01 and
0.3, the linear interpolation cutting across the steep, convex edge of the error surface; at
21 x 21 and 500 the bias is within the measurement's noise (an interpolation in log-odds,
tried too, was no better there). The expected attempt rate needs no table: the
arm's cycle time is the section-2 attempt rate (see :mod:`v2p.envs.physics.env`).

The table records a fingerprint of the physics constants it was measured with; loading it
against different constants raises, so a stale table cannot pass for the physics.

    python -m v2p.envs.physics.calibration [--attempts 500] [--seed 0]   # 13 min of one core
"""

from __future__ import annotations

import argparse
import hashlib
import time
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from v2p.envs.physics.kinds import KIND_PHYSICS, MotionModel
from v2p.envs.physics.scene import (
    MAX_SETTLE_STEPS,
    RELEASE_GAP,
    TIME_STEP,
    Scene,
    draw_episode,
)

TABLE_PATH = Path(__file__).with_name("calibration.npz")
GRID = np.linspace(0.0, 1.0, 21)  # speed and care axes of the table
# Bump when the scene or the randomisation changes in a way the constants below do not show.
PHYSICS_VERSION = 1
DRAWS_PER_EPISODE = 1  # a fresh randomised draw per attempt: samples stay independent


def fingerprint() -> str:
    """A hash of every constant the measured error rates depend on."""
    text = repr(
        (
            PHYSICS_VERSION,
            KIND_PHYSICS,
            MotionModel(),
            TIME_STEP,
            MAX_SETTLE_STEPS,
            RELEASE_GAP,
            GRID.tolist(),
            DRAWS_PER_EPISODE,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CalibrationTable(NamedTuple):
    """Measured rates per kind on the (speed, care) grid. Each rate array is (K, G, G)."""

    p_err: np.ndarray  # broken or misaligned
    broken: np.ndarray
    slipped: np.ndarray
    misaligned: np.ndarray
    attempts: int  # simulated attempts per grid point
    fingerprint: str

    def error_probability(self, kind: np.ndarray, speed: np.ndarray, care: np.ndarray):
        """Bilinear interpolation of ``p_err`` at any (kind, speed, care). Broadcasts."""
        return bilinear(self.p_err, kind, speed, care)


def bilinear(table: np.ndarray, kind, speed, care) -> np.ndarray:
    """Interpolate ``table`` (K, G, G) over its uniform [0, 1] x [0, 1] grid."""
    g = table.shape[-1] - 1
    s = np.clip(np.asarray(speed, dtype=np.float64), 0.0, 1.0) * g
    c = np.clip(np.asarray(care, dtype=np.float64), 0.0, 1.0) * g
    i0 = np.minimum(np.floor(s).astype(np.int64), g - 1)
    j0 = np.minimum(np.floor(c).astype(np.int64), g - 1)
    fs, fc = s - i0, c - j0
    k = np.asarray(kind, dtype=np.int64)
    value = (
        table[k, i0, j0] * (1 - fs) * (1 - fc)
        + table[k, i0 + 1, j0] * fs * (1 - fc)
        + table[k, i0, j0 + 1] * (1 - fs) * fc
        + table[k, i0 + 1, j0 + 1] * fs * fc
    )
    # The weights sum to 1 only up to rounding: between cells of 1.0 the sum can land an ulp
    # above, and 1 - p_err < 0 makes the marginal product negative.
    return np.clip(value, table.min(), table.max())


def measure(attempts: int = 500, seed: int = 0) -> CalibrationTable:
    """Simulate ``attempts`` placements per kind and grid point (a few minutes of one core)."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts!r}")
    scene = Scene()
    rng = np.random.default_rng(seed)
    shape = (len(KIND_PHYSICS), GRID.size, GRID.size)
    counts = {name: np.zeros(shape) for name in ("error", "broken", "slipped", "misaligned")}
    try:
        for k in range(len(KIND_PHYSICS)):
            for i, speed in enumerate(GRID):
                for j, care in enumerate(GRID):
                    for n in range(attempts):
                        if n % DRAWS_PER_EPISODE == 0:
                            episode = draw_episode(rng)
                        r = scene.attempt(k, float(speed), float(care), episode, rng)
                        counts["error"][k, i, j] += r.error
                        counts["broken"][k, i, j] += r.broken
                        counts["slipped"][k, i, j] += r.slipped
                        counts["misaligned"][k, i, j] += r.misaligned
    finally:
        scene.close()
    rates = {name: value / attempts for name, value in counts.items()}
    return CalibrationTable(
        p_err=rates["error"],
        broken=rates["broken"],
        slipped=rates["slipped"],
        misaligned=rates["misaligned"],
        attempts=attempts,
        fingerprint=fingerprint(),
    )


def save_table(table: CalibrationTable, path: Path = TABLE_PATH) -> Path:
    fields = table._asdict()
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in fields.items()})
    return path


@lru_cache(maxsize=4)
def load_table(path: Path = TABLE_PATH) -> CalibrationTable:
    """The measured table; raises when it is missing or was measured with other constants."""
    if not Path(path).exists():
        raise FileNotFoundError(
            f"no physics calibration table at {path}; run python -m v2p.envs.physics.calibration"
        )
    with np.load(path) as data:
        table = CalibrationTable(
            p_err=data["p_err"],
            broken=data["broken"],
            slipped=data["slipped"],
            misaligned=data["misaligned"],
            attempts=int(data["attempts"]),
            fingerprint=str(data["fingerprint"]),
        )
    if table.fingerprint != fingerprint():
        raise ValueError(
            f"calibration table {path} was measured with physics {table.fingerprint}, the code "
            f"is {fingerprint()}; re-measure with python -m v2p.envs.physics.calibration"
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=500, help="attempts per grid point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=TABLE_PATH)
    args = parser.parse_args()
    start = time.perf_counter()
    table = measure(args.attempts, args.seed)
    path = save_table(table, args.out)
    seconds = time.perf_counter() - start
    print(f"{path}: {args.attempts} attempts per point, {seconds:.0f} s, {table.fingerprint}")


if __name__ == "__main__":
    main()
