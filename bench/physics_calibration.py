"""Does the physics env's calibration table say what the physics does? (issue 19)

    python bench/physics.py --calibration logs/dishwashing_physics/version_0/checkpoints/last.ckpt

Three comparisons, each with its standard error:

1. **Shifts**: a trained policy's deterministic shifts in the env (fresh seeds), the realised
   section-1 profit and error rate of each shift (from its totals, as the ledger records them)
   against the table's expected profit and error rate of the actions it took. The standard
   error is of the per-shift difference, so the shift-to-shift randomisation (one draw of
   masses, frictions and strengths per shift) is in it. The mean reward per step is printed
   beside them: it undercharges damage (see :func:`v2p.models.evaluation.evaluation_metrics`).
2. **The policy's actions**: fresh placements, each with its own randomisation draw, at the
   median action the policy took per kind, against the table at that action.
3. **Random points**: fresh placements at uniformly drawn ``(speed, care)`` per kind (off the
   grid), against the table; bias and the share of points more than 3 standard errors off.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from v2p.contracts import EpisodeRecord
from v2p.data.episodes import EpisodeTracker
from v2p.economics.ledger import shift_labor
from v2p.envs.params import KIND_NAMES
from v2p.envs.physics.calibration import CalibrationTable, load_table
from v2p.envs.physics.env import DishwashingPhysicsVectorEnv
from v2p.envs.physics.scene import Scene, draw_episode

SEED = 10_000  # shifts of their own: not the seeds training or evaluation reset with
ENV_NAME = "v2p/DishwashingPhysics-v0"


class ShiftComparison(NamedTuple):
    profit: np.ndarray  # (n,) realised section-1 profit rate per shift [$/hr]
    expected_profit: np.ndarray  # (n,) the table's expected profit of the actions taken
    reward_per_step: np.ndarray  # (n,) mean step reward
    err: np.ndarray  # (n,) realised error rate per shift
    expected_err: np.ndarray  # (n,)
    actions: dict[int, np.ndarray]  # kind -> (m, 2) actions taken on that kind's racks


def policy_shifts(model, shifts: int, envs: int = 8, seed: int = SEED) -> ShiftComparison:
    """``shifts`` deterministic shifts of ``model`` (a :class:`~v2p.models.sac.SACModule`),
    ``envs`` at a time, each round of shifts from its own seeds."""
    if shifts < envs or shifts % envs:
        raise ValueError(f"shifts ({shifts}) must be a positive multiple of envs ({envs})")
    vec = DishwashingPhysicsVectorEnv(num_envs=envs)
    records: list[EpisodeRecord] = []
    actions: dict[int, list[np.ndarray]] = {k: [] for k in range(len(KIND_NAMES))}
    try:
        for round_ in range(shifts // envs):
            obs, _ = vec.reset(seed=seed + round_ * envs)
            tracker = EpisodeTracker(envs, np.zeros(envs), ENV_NAME)
            finished: list[EpisodeRecord] = []
            while len(finished) < envs:
                action = model.act(obs, deterministic=True)
                obs, reward, terminated, truncated, info = vec.step(action)
                for kind, a in zip(info["kind"], np.clip(action, 0.0, 1.0), strict=True):
                    actions[int(kind)].append(a)
                finished += tracker.step(reward, terminated | truncated, info)
            records += finished
    finally:
        vec.close()
    shift_list = [r.shift for r in records]
    return ShiftComparison(
        profit=np.array([shift_labor(s).profit for s in shift_list]),
        expected_profit=np.array([s.expected_profit for s in shift_list]),
        reward_per_step=np.array([r.episode_return / r.length for r in records]),
        err=np.array([shift_labor(s).err_rate for s in shift_list]),
        expected_err=np.array([s.expected_errors / s.expected_attempts for s in shift_list]),
        actions={k: np.array(v) for k, v in actions.items() if v},
    )


def paired(realised: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Mean gap ``realised - expected`` over shifts and its standard error."""
    gap = realised - expected
    return float(gap.mean()), float(gap.std(ddof=1) / np.sqrt(gap.size))


class PlacementCheck(NamedTuple):
    kind: int
    speed: float
    care: float
    measured: float  # error fraction over the placements
    table: float  # the table's error probability there
    placements: int
    table_attempts: int  # placements per grid point behind the table

    @property
    def z(self) -> float:
        """Gap over its standard error: the placements' binomial one plus the table's own (a
        grid point's, an upper bound for an interpolation between several). ``p`` is kept at
        least 1/placements, so a gap at a zero of the table stays finite."""
        p = min(max(self.table, 1.0 / self.placements), 1 - 1.0 / self.placements)
        se = np.sqrt(p * (1 - p) * (1 / self.placements + 1 / self.table_attempts))
        return (self.measured - self.table) / se


def placements(
    scene: Scene, table: CalibrationTable, points, count: int, rng: np.random.Generator
) -> list[PlacementCheck]:
    """``count`` fresh placements at each ``(kind, speed, care)`` in ``points``, each with its
    own randomisation draw, against the table."""
    out = []
    for kind, speed, care in points:
        errors = sum(
            scene.attempt(int(kind), float(speed), float(care), draw_episode(rng), rng).error
            for _ in range(count)
        )
        expected = float(table.error_probability(np.array(kind), np.array(speed), np.array(care)))
        out.append(
            PlacementCheck(
                int(kind),
                float(speed),
                float(care),
                errors / count,
                expected,
                count,
                table.attempts,
            )
        )
    return out


def report(
    model,
    shifts: int = 64,
    policy_placements: int = 1000,
    random_points: int = 20,
    random_placements: int = 300,
) -> list[str]:
    """The three comparisons as markdown lines."""
    table = load_table()
    cmp = policy_shifts(model, shifts)
    lines = [
        f"Calibration table: {table.p_err.shape[1]} x {table.p_err.shape[2]} grid, "
        f"{table.attempts} placements per point; {cmp.profit.size} deterministic shifts of the "
        f"policy (seeds from {SEED}).",
        "",
        "| per shift | realised | expected (table) | gap | SE of gap | gap / SE |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, realised, expected in (
        ("profit rate, section 1 from the shift's totals [$/hr]", cmp.profit, cmp.expected_profit),
        ("mean reward per step [$/hr]", cmp.reward_per_step, cmp.expected_profit),
        ("error rate", cmp.err, cmp.expected_err),
    ):
        gap, se = paired(realised, expected)
        lines.append(
            f"| {name} | {realised.mean():.4f} | {expected.mean():.4f} | {gap:+.4f} | {se:.4f} | "
            f"{gap / se:+.1f} |"
        )
    scene = Scene()
    rng = np.random.default_rng(SEED)
    try:
        median = [(k, *np.median(a, axis=0)) for k, a in sorted(cmp.actions.items())]
        at_policy = placements(scene, table, median, policy_placements, rng)
        random = [(k, *rng.random(2)) for k in range(len(KIND_NAMES)) for _ in range(random_points)]
        at_random = placements(scene, table, random, random_placements, rng)
    finally:
        scene.close()
    lines += [
        "",
        f"Fresh placements ({policy_placements} each, own randomisation draws) at the policy's "
        "median action per kind:",
        "",
        "| kind | (speed, care) | measured err | table | gap / SE |",
        "|---|---|---:|---:|---:|",
    ]
    for c in at_policy:
        lines.append(
            f"| {KIND_NAMES[c.kind]} | ({c.speed:.2f}, {c.care:.2f}) | {c.measured:.4f} | "
            f"{c.table:.4f} | {c.z:+.1f} |"
        )
    z = np.array([c.z for c in at_random])
    gap = np.array([c.measured - c.table for c in at_random])
    mid = np.array([0.01 < c.table < 0.3 for c in at_random])
    lines += [
        "",
        f"Fresh placements at {len(at_random)} random points ({random_points} per kind, "
        f"{random_placements} each): mean gap (measured - table) {gap.mean():+.4f}, "
        f"{gap[mid].mean() if mid.any() else float('nan'):+.4f} where the table is between "
        f"0.01 and 0.3 ({mid.sum()} points); {np.mean(np.abs(z) > 3):.0%} of points more than "
        "3 SE off (0.3% expected by chance).",
    ]
    return lines


def load_policy(checkpoint: Path):
    from v2p.models.sac import SACModule

    model = SACModule.load_from_checkpoint(checkpoint, map_location="cpu")
    model.eval()
    return model
