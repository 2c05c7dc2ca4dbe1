"""PyBullet dishwashing env (issue 6): throughput, memory over resets, profit heat map, frames.

    taskset -c 0 python bench/physics.py [--seconds 10] [--resets 1000] [--docs docs]
    python bench/physics.py --curve logs/dishwashing_physics/version_0   # after a SAC run
    python bench/physics.py --curve RUN_DIR --curve-png /tmp/other_run.png  # not the docs' plot
    python bench/physics.py --calibration logs/dishwashing_physics/version_0/checkpoints/last.ckpt

Targets (issue 6): at least 150 env steps/s with rendering at 64x64 on one core; resident
memory grows by less than 20 MB over 1,000 resets; the expected profit over (speed, care) shows
a trade-off (best not at full speed; careless actions break the error target 0.06).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import v2p  # noqa: F401  (registers the ids)
from bench._common import results_stream
from v2p.envs.params import KIND_NAMES, DishwashingParams
from v2p.envs.physics.calibration import GRID, load_table
from v2p.envs.physics.env import physics_expected_outcome

ENV_ID = "v2p/DishwashingPhysics-v0"
ERR_TARGET = 0.06  # the final error target of the SAC curriculum (ECONOMICS.md section 3)


def rss_mb() -> float:
    """Resident set size of this process [MB], from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def steps_per_second(seconds: float) -> tuple[float, float]:
    """Env steps per wall-clock second and per CPU second of this process, one env through
    ``gymnasium.make`` (checker wrappers included), random actions, 64x64 TinyRenderer frames,
    after one warm-up shift. On a shared machine the CPU-second figure is the one-core rate."""
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    actions = np.random.default_rng(0).random((60, 2)).astype(np.float32)
    for action in actions:
        env.step(action)
    steps, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        env.reset()
        for action in actions:
            env.step(action)
        steps += 60
    rates = (
        steps / (time.perf_counter() - start),
        steps / (time.process_time() - cpu_start),
    )
    env.close()
    return rates


def vector_steps_per_second(workers: int, seconds: float, num_envs: int = 8) -> float:
    """Env steps per wall-clock second of ``num_envs`` physics sites (the physics config's
    count) split over ``workers`` processes, random actions, after one warm-up shift."""
    from v2p.envs.physics.env import DishwashingPhysicsVectorEnv

    envs = DishwashingPhysicsVectorEnv(num_envs=num_envs, workers=workers)
    rng = np.random.default_rng(0)
    envs.reset(seed=0)
    for _ in range(60):
        envs.step(rng.random((num_envs, 2)).astype(np.float32))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(rng.random((num_envs, 2)).astype(np.float32))
        steps += num_envs
    rate = steps / (time.perf_counter() - start)
    envs.close()
    return rate


def memory_growth(resets: int) -> tuple[float, float]:
    """RSS before and after ``resets`` resets (each followed by one step), after 50 warm-ups."""
    env = gym.make(ENV_ID)
    action = np.array([0.7, 0.9], dtype=np.float32)
    for seed in range(50):
        env.reset(seed=seed)
        env.step(action)
    before = rss_mb()
    for seed in range(resets):
        env.reset(seed=seed)
        env.step(action)
    after = rss_mb()
    env.close()
    return before, after


def profit_grid(params: DishwashingParams):
    """Expected profit, error rate per kind (K, G, G) and for one action for every kind."""
    table = load_table()
    speed, care = np.meshgrid(GRID, GRID, indexing="ij")  # (G, G)
    kinds = np.arange(len(KIND_NAMES))[:, None, None]
    out = physics_expected_outcome(params, table, kinds, speed[None], care[None])  # (K, G, G)
    shares = params.kind_shares[:, None, None]
    mix_profit = (shares * out.profit).sum(0)
    mix_err = (shares * out.errors).sum(0) / np.maximum((shares * out.attempts).sum(0), 1e-12)
    return out, mix_profit, mix_err


def ceiling(params: DishwashingParams, out) -> float:
    """The best action per kind, share-weighted [$/hr], from :func:`profit_grid`'s ``out``."""
    return float(sum(params.kind_shares[k] * out.profit[k].max() for k in range(len(KIND_NAMES))))


def heat_map(out_path: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = DishwashingParams()
    out, mix_profit, mix_err = profit_grid(params)
    panels = [(name, out.profit[k], out.p_err[k]) for k, name in enumerate(KIND_NAMES)]
    panels.append(("one action for every kind (mix)", mix_profit, mix_err))
    lines = [
        "| rack | best (speed, care) | best profit $/hr | its err | profit at full speed "
        "(best care) | err at (1, 0) | err at (0.5, 0) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    vmin = min(panel[1].min() for panel in panels)
    vmax = max(panel[1].max() for panel in panels)
    for ax, (name, profit, err) in zip(axes, panels, strict=True):
        image = ax.imshow(
            profit.T,
            origin="lower",
            extent=(0, 1, 0, 1),
            vmin=vmin,
            vmax=vmax,
            cmap="viridis",
            aspect="auto",
        )
        ax.contour(GRID, GRID, err.T, levels=[ERR_TARGET], colors="white", linewidths=1.2)
        i, j = np.unravel_index(np.argmax(profit), profit.shape)
        ax.plot(GRID[i], GRID[j], "r*", markersize=12)
        ax.set_title(
            f"{name}\nbest {profit[i, j]:.1f} $/hr at ({GRID[i]:.1f}, {GRID[j]:.1f})", fontsize=9
        )
        ax.set_xlabel("speed")
        ax.set_ylabel("care")
        lines.append(
            f"| {name} | ({GRID[i]:.1f}, {GRID[j]:.1f}) | {profit[i, j]:.2f} | {err[i, j]:.3f} | "
            f"{profit[-1].max():.2f} | {err[-1, 0]:.3f} | {err[GRID.size // 2, 0]:.3f} |"
        )
    fig.colorbar(image, ax=axes, label="expected profit [$/hr]", shrink=0.85)
    fig.suptitle(
        "v2p/DishwashingPhysics-v0: expected profit (calibration table); white: "
        f"error rate = {ERR_TARGET}; red star: best",
        fontsize=10,
    )
    fig.savefig(out_path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    best = ceiling(params, out)
    lines.append(
        f"\nCeiling (best action per kind, share-weighted): {best:.2f} $/hr, implied wage "
        f"parity {(best + params.energy_cost) / 18.0:.2f} at w_h = 18 $/hr."
    )
    return lines


def frame_strip(out_path: Path, seed: int = 0, panels: int = 8) -> Path:
    """One shift at the best action per kind (from the calibration table); every few steps'
    newest 64x64 observation frame, as the policy sees it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = gym.make(ENV_ID)
    params = env.unwrapped.params
    out, _, _ = profit_grid(params)
    best = [
        np.unravel_index(np.argmax(out.profit[k]), out.profit[k].shape)
        for k in range(len(KIND_NAMES))
    ]
    actions = [np.array([GRID[i], GRID[j]], np.float32) for i, j in best]
    obs, info = env.reset(seed=seed)
    kind = info["kind"]
    shown = set(np.linspace(0, params.steps, panels).round().astype(int))
    pictures, errors = [], 0
    for t in range(params.steps + 1):
        if t in shown:
            pictures.append((t, KIND_NAMES[kind], errors, obs[-1].transpose(1, 2, 0)))
        if t == params.steps:
            break
        obs, _, _, _, info = env.step(actions[kind])
        errors += info["errors"]
        kind = int(np.argmax(info["task_state"][: len(KIND_NAMES)]))  # the next rack
    env.close()
    fig, axes = plt.subplots(1, len(pictures), figsize=(1.9 * len(pictures), 2.3))
    for ax, (t, name, err, picture) in zip(axes, pictures, strict=True):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(f"step {t}\nnext: {name}, broken {err}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{ENV_ID}: 64x64 camera frames over one shift (best action per kind)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def training_curve(run_dir: Path, out_path: Path) -> list[str]:
    """Validation and ledger curves of a SAC run (its metrics.csv and economics.csv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val = [r for r in rows if r.get("val/profit")]
    lam = [(int(r["step"]), float(r["train/lambda"])) for r in rows if r.get("train/lambda")]
    with open(run_dir / "economics.csv") as f:
        ledger = list(csv.DictReader(f))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.6))
    x = [int(float(r["val/env_steps"])) if r.get("val/env_steps") else int(r["step"]) for r in val]
    for key in ("val/profit", "val/expected_profit"):
        if val and val[0].get(key):
            ax1.plot(x, [float(r[key]) for r in val], marker="o", label=key)
    ax1.axhline(18.0, color="grey", ls="--", lw=0.8, label="w_h = 18 $/hr")
    ax1.set_xlabel("env steps")
    ax1.set_ylabel("$/hr")
    ax1.legend(fontsize=8)
    ax1.set_title("deterministic evaluation shifts", fontsize=9)
    episodes = [int(r["episode"]) for r in ledger]
    ax2.plot(episodes, [float(r["wage_parity"]) for r in ledger], lw=0.6, label="wage parity")
    ax2.plot(episodes, [float(r["err_rate"]) * 10 for r in ledger], lw=0.6, label="err rate x10")
    ax2.plot(episodes, [float(r["err_target"]) * 10 for r in ledger], lw=1, label="target x10")
    ax2.axhline(1.0, color="grey", ls="--", lw=0.8)
    ax2.set_xlabel("training shift (ledger row)")
    ax2.legend(fontsize=8)
    ax2.set_title("training shifts (economics.csv)", fontsize=9)
    if lam:
        ax3.plot([s for s, _ in lam], [v for _, v in lam], lw=0.8)
    ax3.set_xlabel("gradient update")
    ax3.set_ylabel("lambda")
    ax3.set_title("Lagrange multiplier (train/lambda)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    keys = [k for k in val[0] if k.startswith("val/")] if val else []
    lines = ["| env steps | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    for xi, r in zip(x, val, strict=True):
        lines.append(f"| {xi} | " + " | ".join(f"{float(r[k]):.3f}" for k in keys) + " |")
    last = val[-5:]
    if last and last[0].get("val/expected_profit"):
        profit = np.mean([float(r["val/expected_profit"]) for r in last])
        err = np.mean([float(r["val/expected_err_rate"]) for r in last])
        params = DishwashingParams()
        best = ceiling(params, profit_grid(params)[0])
        lines.append(
            f"\nHeld (mean of the last {len(last)} evaluations): expected profit {profit:.2f} "
            f"$/hr ({100 * profit / best:.1f}% of the {best:.2f} ceiling), "
            f"expected err rate {err:.4f}; final lambda {lam[-1][1] if lam else float('nan'):.2f}."
        )
    tail = ledger[-50:]
    lines.append(
        f"\nLast {len(tail)} training shifts (ledger): mean wage parity "
        f"{np.mean([float(r['wage_parity']) for r in tail]):.3f}, mean err rate "
        f"{np.mean([float(r['err_rate']) for r in tail]):.4f}, err target "
        f"{float(tail[-1]['err_target']):.4f}; {len(ledger)} shifts in all."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="time of the throughput run")
    parser.add_argument("--resets", type=int, default=1000)
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where PNGs go")
    parser.add_argument("--curve", type=Path, default=None, help="a SAC run's log dir")
    parser.add_argument(
        "--curve-png",
        type=Path,
        default=None,
        help="where --curve's plot goes (default: DOCS/physics_sac_curve.png, the docs' figure)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        metavar="CKPT",
        help="a SAC checkpoint: compare its realised shifts, and fresh placements, to the table",
    )
    parser.add_argument("--shifts", type=int, default=64, help="shifts of --calibration")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.docs.mkdir(parents=True, exist_ok=True)
    out = results_stream()
    if args.curve is not None:
        png = args.curve_png or args.docs / "physics_sac_curve.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        print("\n".join(training_curve(args.curve, png)), file=out)
        return
    if args.calibration is not None:
        from bench.physics_calibration import load_policy, report

        print("\n".join(report(load_policy(args.calibration), shifts=args.shifts)), file=out)
        return
    rate, cpu_rate = steps_per_second(args.seconds)
    before, after = memory_growth(args.resets)
    cores = len(os.sched_getaffinity(0))
    by_workers = {w: vector_steps_per_second(w, args.seconds) for w in (1, 2)}
    print("| measure | figure | target | met |\n|---|---:|---:|---|", file=out)
    print(f"| env steps per wall-clock s, rendering 64x64, one env | {rate:,.0f} | | |", file=out)
    print(
        f"| env steps per CPU s (one core), rendering 64x64, one env | {cpu_rate:,.0f} | 150 | "
        f"{'yes' if cpu_rate >= 150 else 'no'} |",
        file=out,
    )
    print(
        f"| RSS growth over {args.resets} resets [MB] ({before:.1f} -> {after:.1f}) | "
        f"{after - before:.1f} | < 20 | {'yes' if after - before < 20 else 'no'} |",
        file=out,
    )
    for workers, rate in by_workers.items():
        print(
            f"| env steps per wall-clock s, 8 envs in {workers} process"
            f"{'es' if workers > 1 else ''} (env_workers={workers}, {cores} cores) | "
            f"{rate:,.0f} | | |",
            file=out,
        )
    print(file=out)
    print("\n".join(heat_map(args.docs / "physics_profit_heatmap.png")), file=out)
    print(f"Frames: {frame_strip(args.docs / 'physics_frames.png')}", file=out)


if __name__ == "__main__":
    main()
