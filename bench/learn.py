"""Learning benchmarks, judged against the ceilings of ``v2p.envs.optimal_policy``.

    pip install -r requirements-bench.txt
    python bench/learn.py --task state --seeds 0 1 2        # V2P and SB3 side by side
    python bench/learn.py --task constrained --seeds 0 1 2  # error target binds; plot in docs/
    python bench/learn.py --task video --seeds 0            # synthetic camera clips
    python bench/learn.py --task demos --eval-every 100     # RLPD: recorded shifts in batches
    python bench/learn.py --task demos --demo-task video --eval-every 2000

Each V2P run is the job's real config (``configs/*.yaml`` through the CLI) with the overrides
printed in the table; on the state and video tasks, arguments the script does not know are more
CLI overrides (``--model.init_args.unit_head_inputs=true``). The learning signal is
``val/expected_profit``: the task model's expected profit of the deterministic policy's actions
per dish kind, over 8 evaluation shifts, so Poisson noise cannot hide a gap. SB3 SAC runs with
the same hyperparameters where it has them (gamma, batch, learning rate, target entropy,
warm-up, updates per env step, 256x256 networks) and is evaluated the same way, through the
env's ``expected_*`` info.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from v2p.cli import main as cli_main  # noqa: E402
from v2p.envs import DishwashingParams, optimal_policy  # noqa: E402

STATE_CONFIG = "configs/dishwashing_state.yaml"
VIDEO_CONFIG = "configs/dishwashing_video.yaml"


def env_step_budget(
    config: str,
    env_steps: int,
    eval_every: int | None = None,
    warmup_steps: int | None = None,
    updates_per_step: int | None = None,
) -> list[str]:
    """CLI overrides that end a run of ``config`` at ``env_steps`` env steps, evaluating every
    ``eval_every`` env steps (default: the config's epochs), after ``warmup_steps`` random
    ones, with ``updates_per_step`` updates per batched env step (defaults: the config's).

    ``trainer.max_steps`` counts gradient updates, which start after the config's warm-up env
    steps; then every batched step of ``num_envs`` env steps makes ``updates_per_step``
    updates. (SB3 counts its warm-up in ``total_timesteps`` as well.)
    """
    data = yaml.safe_load((ROOT / config).read_text())["data"]["init_args"]
    if warmup_steps is not None:
        data["warmup_steps"] = warmup_steps
    if updates_per_step is not None:
        data["updates_per_step"] = updates_per_step
    per_env_step = data["updates_per_step"] / data["num_envs"]
    if env_steps <= data["warmup_steps"]:
        raise ValueError(
            f"a budget of {env_steps} env steps leaves no updates after the "
            f"{data['warmup_steps']} warm-up env steps of {config}"
        )
    overrides = [f"--trainer.max_steps={round((env_steps - data['warmup_steps']) * per_env_step)}"]
    if warmup_steps is not None:
        overrides.append(f"--data.init_args.warmup_steps={warmup_steps}")
    if updates_per_step is not None:
        overrides.append(f"--data.init_args.updates_per_step={updates_per_step}")
    if eval_every is not None:
        overrides.append(f"--data.init_args.updates_per_epoch={round(eval_every * per_env_step)}")
    return overrides


HELD_EVALUATIONS = 5  # "held at the end" = the mean of the last 5 evaluations (issue 19)


class Curve(NamedTuple):
    """One run's evaluations: env steps, wall-clock seconds, expected profit and error rate."""

    env_steps: list[int]
    seconds: list[float]
    expected_profit: list[float]
    expected_err_rate: list[float]
    err_rate: list[float]  # realised, over the evaluation shifts

    def held(self, last: int = HELD_EVALUATIONS) -> tuple[float, float]:
        """Mean expected profit and expected error rate of the last ``last`` evaluations:
        what a run holds at its end, not what it reached once."""
        return (
            float(np.mean(self.expected_profit[-last:])),
            float(np.mean(self.expected_err_rate[-last:])),
        )

    def first_reaching(self, level: float) -> tuple[float, float]:
        """(env steps, seconds) of the first evaluation at or above ``level``; inf if never."""
        points = zip(self.env_steps, self.seconds, self.expected_profit, strict=False)
        for steps, secs, profit in points:
            if profit >= level:
                return steps, secs
        return float("inf"), float("inf")


class _EvalClock(L.Callback):
    """Seconds since the first training batch at every validation end."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.seconds: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - (self.start or time.perf_counter()))


def run_dir(keep: str | None, name: str):
    """A folder for one run's logs: kept under ``keep`` when given, else temporary."""
    if keep is None:
        return tempfile.TemporaryDirectory()
    path = Path(keep) / name
    path.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(path))


def run_v2p(config: str, overrides: list[str], seed: int, root: str) -> tuple[Curve, Path]:
    args = [
        "--config",
        str(ROOT / config),
        f"--seed_everything={seed}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *overrides,
    ]
    cli = cli_main(args, run=False)
    clock = _EvalClock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    log_dir = Path(cli.trainer.log_dir)
    rows = [
        r for r in csv.DictReader(open(log_dir / "metrics.csv")) if r.get("val/expected_profit")
    ]
    curve = Curve(
        env_steps=[int(float(r["val/env_steps"])) for r in rows],
        seconds=clock.seconds[: len(rows)],
        expected_profit=[float(r["val/expected_profit"]) for r in rows],
        expected_err_rate=[float(r["val/expected_err_rate"]) for r in rows],
        err_rate=[float(r["val/err_rate"]) for r in rows],
    )
    return curve, log_dir


def run_sb3(env_kwargs: dict, seed: int, total_steps: int, eval_every: int) -> Curve:
    """SB3 SAC with V2P's state-task hyperparameters, evaluated like V2P."""
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    num_envs = 4
    eval_env = gym.make_vec("v2p/Dishwashing-v0", num_envs=8, **env_kwargs)
    curve = Curve([], [], [], [], [])

    class Evaluate(BaseCallback):
        def _on_training_start(self) -> None:
            self.start = None
            self.next_eval = eval_every

        def _on_step(self) -> bool:
            if self.start is None and self.num_timesteps >= 1000:
                self.start = time.perf_counter()
            if self.num_timesteps >= self.next_eval:  # steps advance by num_envs at a time
                self.next_eval += eval_every
                seconds = time.perf_counter() - (self.start or time.perf_counter())
                profit, err, real_err = evaluate_expected(self.model, eval_env)
                curve.env_steps.append(self.num_timesteps)
                curve.seconds.append(seconds)
                curve.expected_profit.append(profit)
                curve.expected_err_rate.append(err)
                curve.err_rate.append(real_err)
            return True

    env = make_vec_env("v2p/Dishwashing-v0", n_envs=num_envs, seed=seed, env_kwargs=env_kwargs)
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=3e-4,
        buffer_size=100_000,
        learning_starts=1000,
        batch_size=256,
        gamma=0.9,
        tau=0.005,
        train_freq=1,
        gradient_steps=num_envs,
        target_entropy=-9.0,
        policy_kwargs={"net_arch": [256, 256]},
        device="cpu",
        seed=seed,
        verbose=0,
    )
    model.learn(total_timesteps=total_steps, callback=Evaluate())
    return curve


def evaluate_expected(model, envs) -> tuple[float, float, float]:
    """Expected profit and error rate of the deterministic policy over one shift per env."""
    obs, _ = envs.reset(seed=10_000)
    profit, attempts, errors, real_errors, real_attempts = 0.0, 0.0, 0.0, 0.0, 0.0
    steps = 0
    while True:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, _, truncated, info = envs.step(action)
        profit += info["expected_profit"].mean()
        attempts += info["expected_attempts"].sum()
        errors += info["expected_errors"].sum()
        real_errors += info["errors"].sum()
        real_attempts += info["attempts"].sum()
        steps += 1
        if truncated.all():
            return profit / steps, errors / attempts, real_errors / max(real_attempts, 1)


def summarise(name: str, curves: list[Curve], ceiling: float, budget: int) -> list[str]:
    """Median over seeds of the first env step / second at 95% and 98% of the ceiling."""

    def median(values):
        return statistics.median(values)

    final = [c.expected_profit[-1] for c in curves]
    best_within = [
        max(
            (p for s, p in zip(c.env_steps, c.expected_profit, strict=True) if s <= budget),
            default=np.nan,
        )
        for c in curves
    ]
    at95 = [c.first_reaching(0.95 * ceiling) for c in curves]
    at98 = [c.first_reaching(0.98 * ceiling) for c in curves]
    err_final = [c.expected_err_rate[-1] for c in curves]
    held = [c.held()[0] for c in curves]
    held_err = [c.held()[1] for c in curves]
    return [
        f"| {name} | {len(curves)} | {median(final):.2f} ({median(final) / ceiling:.1%}) | "
        f"{median(held) / ceiling:.1%} ({min(held) / ceiling:.1%}) | "
        f"{median(held_err):.4f} ({max(held_err):.4f}) | "
        f"{median(best_within) / ceiling:.1%} | "
        f"{median(s for s, _ in at95):,.0f} | {median(t for _, t in at95):.0f} | "
        f"{median(s for s, _ in at98):,.0f} | {median(t for _, t in at98):.0f} | "
        f"{median(err_final):.4f} |"
    ]


HEADER = [
    "| run | seeds | final expected profit $/hr (of ceiling) | "
    f"held: mean of last {HELD_EVALUATIONS} evaluations, of ceiling (worst seed) | "
    "held expected err (worst seed) | best within budget | "
    "env steps to 95% | seconds to 95% | env steps to 98% | seconds to 98% | final expected err |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def bench_state(
    seeds: list[int],
    steps: int,
    with_sb3: bool,
    eval_every: int,
    overrides: Sequence[str] = (),
    updates_per_step: int | None = None,
) -> list[str]:
    """V2P on configs/dishwashing_state.yaml (with CLI ``overrides``, and ``updates_per_step``
    updates per batched env step instead of the config's), then SB3 on the same seeds (one
    update per env step, whatever V2P's ratio)."""
    ceiling = optimal_policy(DishwashingParams()).profit
    lines = [
        f"Ceiling (optimal_policy, default mix): {ceiling:.2f} $/hr; budget {steps:,} env steps.",
        "",
        *HEADER,
    ]
    curves = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as root:
            budget = env_step_budget(STATE_CONFIG, steps, eval_every, None, updates_per_step)
            curve, _ = run_v2p(STATE_CONFIG, [*budget, *overrides], seed, root)
        curves.append(curve)
        progress(f"v2p seed {seed}: {curve.expected_profit}")
    ratio = [] if updates_per_step is None else [f"updates_per_step {updates_per_step}"]
    name = " ".join([f"V2P SACModule, {STATE_CONFIG}", *ratio, *overrides])
    lines += summarise(name, curves, ceiling, steps)
    if with_sb3:
        sb3 = []
        for seed in seeds:
            sb3.append(run_sb3({}, seed, steps, eval_every=eval_every))
            progress(f"sb3 seed {seed}: {sb3[-1].expected_profit}")
        lines += summarise("Stable-Baselines3 SAC, same hyperparameters", sb3, ceiling, steps)
    return lines


def demo_arms(
    folders: dict[str, Path],
    config: str,
    skip_baseline: bool = False,
    demo_overrides: Sequence[str] = (),
) -> dict[str, list[str]]:
    """The runs of :func:`bench_demos`: their names and CLI overrides, one per dataset in
    ``folders`` (policy -> recording) besides the run without demonstrations.
    ``demo_overrides`` go to the runs with demonstrations only, and into their names."""

    def name(policy: str) -> str:
        return " ".join([f"{policy} demonstrations, demo_share 0.5", *demo_overrides])

    arms = {} if skip_baseline else {"no demonstrations": []}
    for policy, folder in folders.items():
        demos = f'--data.init_args.demonstrations=[{{"name": "{policy}", "path": "{folder}"}}]'
        arms[name(policy)] = [demos, *demo_overrides]
    if config == STATE_CONFIG and "optimal" in folders:  # RLPD's LayerNorm in the critics
        layer_norm = "--model.init_args.critic_layer_norm=true"
        arms[f"{name('optimal')}, critic LayerNorm"] = [*arms[name("optimal")], layer_norm]
        arms["no demonstrations, critic LayerNorm"] = [layer_norm]
    return arms


def bench_demos(
    config: str,
    seeds: list[int],
    steps: int,
    eval_every: int,
    episodes: int,
    datasets: Sequence[str] = ("optimal", "random"),
    skip_baseline: bool = False,
    overrides: Sequence[str] = (),
    updates_per_step: int | None = None,
    demo_overrides: Sequence[str] = (),
) -> list[str]:
    """RLPD on ``config``'s task: half of every batch from ``episodes`` recorded shifts,
    against the same run without them, all after a warm-up of one batch (the least the data
    module accepts).

    Two datasets, recorded on the video env of the task (its clips are the video task's
    observations, its task states the state task's): the optimal policy's shifts (an expert)
    and uniformly random actions (what a useless upload looks like); ``datasets`` chooses
    them, and ``skip_baseline`` leaves out the arm without demonstrations (to add arms to a
    table measured before). The critic LayerNorm arms run on the state task only.
    ``overrides`` (CLI arguments, e.g. ``--model.init_args.augment_shift=4``) go to every arm
    and into its name, ``demo_overrides`` to the arms with demonstrations only (a setting
    the recipe with demonstrations needs, measured against the config without them);
    ``updates_per_step`` replaces the config's update-to-data ratio (RLPD
    takes many updates per env step) with the budget still counted in env steps.
    """
    from v2p.record import record

    ceiling = optimal_policy(DishwashingParams()).profit
    warmup = yaml.safe_load((ROOT / config).read_text())["data"]["init_args"]["batch_size"]
    lines = [
        f"{config}: ceiling {ceiling:.2f} $/hr; budget {steps:,} env steps after a warm-up of "
        f"{warmup} random env steps, evaluated every {eval_every}; {episodes} recorded "
        "shifts per dataset (`v2p record --policy optimal` / `random`).",
        "",
        *HEADER,
    ]
    budget = env_step_budget(config, steps, eval_every, warmup, updates_per_step)
    ratio = [] if updates_per_step is None else [f"updates_per_step {updates_per_step}"]
    label = [*ratio, *overrides]
    with tempfile.TemporaryDirectory() as data_root:
        folders = {}
        for policy in datasets:
            folder = Path(data_root) / policy
            record(str(folder), episodes=episodes, policy=policy, seed=99, progress=False)
            folders[policy] = folder
        arms = demo_arms(folders, config, skip_baseline, demo_overrides)
        for name, arm in arms.items():
            curves = []
            for seed in seeds:
                with tempfile.TemporaryDirectory() as root:
                    curve, _ = run_v2p(config, [*budget, *arm, *overrides], seed, root)
                curves.append(curve)
                progress(f"{name} seed {seed}: {curve.expected_profit}")
            lines += summarise(" ".join([name, *label]), curves, ceiling, steps)
    return lines


def bench_video(seeds: list[int], steps: int, overrides: list[str], keep: str | None) -> list[str]:
    best = optimal_policy(DishwashingParams())
    ceiling = best.profit
    title = (
        f"Ceiling {ceiling:.2f} $/hr; a policy blind to the frames reaches at most "
        f"{best.blind_profit:.2f} ({best.blind_profit / ceiling:.0%}); budget {steps:,} env steps."
    )
    lines = [title, "", *HEADER]
    curves = []
    for seed in seeds:
        with run_dir(keep, f"video-seed{seed}") as root:
            curve, _ = run_v2p(VIDEO_CONFIG, overrides, seed, root)
        curves.append(curve)
        progress(f"video seed {seed}: {curve.expected_profit}")
    lines += summarise(
        "V2P, configs/dishwashing_video.yaml " + " ".join(overrides), curves, ceiling, steps
    )
    return lines


def bench_constrained(
    seeds: list[int], steps: int, plot: Path, dual_lr: float, extra: Sequence[str] = ()
) -> list[str]:
    env_kwargs = "{damage_cost: 0.0}"
    target = 0.06
    params = DishwashingParams(damage_cost=0.0)
    free = optimal_policy(params)
    best = optimal_policy(params, err_target=target)
    overrides = [
        *env_step_budget(STATE_CONFIG, steps),
        f"--data.init_args.env_kwargs={env_kwargs}",
        "--model.init_args.err_target_init=0.10",
        f"--model.init_args.err_target_final={target}",
        "--model.init_args.curriculum_episodes=50",
        f"--model.init_args.dual_lr={dual_lr}",
        *extra,  # e.g. the PID gains: --model.init_args.lambda_kp=...
    ]
    lines = [
        f"Task: damage_cost=0 (breakage is free, only the service level stops careless work); "
        f"unconstrained optimum {free.profit:.2f} $/hr at error rate {free.err_rate:.3f}; "
        f"constrained ceiling at e*={target}: {best.profit:.2f} $/hr. "
        f"Overrides: `{' '.join(overrides)}`.",
        "",
        "| seed | final expected profit (of constrained ceiling) | final expected err | "
        "final realised err (8 shifts) | final lambda | "
        f"held: mean of last {HELD_EVALUATIONS} evaluations, expected profit (of ceiling) | "
        "held expected err |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ledgers = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as root:
            curve, log_dir = run_v2p(STATE_CONFIG, overrides, seed, root)
            ledger = list(csv.DictReader(open(log_dir / "economics.csv")))
        ledgers.append(ledger)
        lam = float(ledger[-1]["lambda"])
        profit = curve.expected_profit[-1]
        held, held_err = curve.held()
        lines.append(
            f"| {seed} | {profit:.2f} ({profit / best.profit:.1%}) | "
            f"{curve.expected_err_rate[-1]:.4f} | {curve.err_rate[-1]:.4f} | {lam:.1f} | "
            f"{held:.2f} ({held / best.profit:.1%}) | {held_err:.4f} |"
        )
        progress(f"constrained seed {seed}: {curve.expected_profit} {curve.expected_err_rate}")
    plot_constraint(ledgers, target, plot)
    return lines


def plot_constraint(ledgers: list[list[dict]], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax2 = ax.twinx()
    for i, ledger in enumerate(ledgers):
        episodes = [int(r["episode"]) for r in ledger]
        err = np.array([float(r["err_rate"]) for r in ledger])
        smooth = np.convolve(err, np.ones(20) / 20, mode="valid")  # trailing 20-shift mean
        ax.plot(
            episodes[19:],
            smooth,
            color=f"C{i}",
            lw=1.2,
            label=f"error rate (20-shift mean), seed {i}",
        )
        ax2.plot(episodes, [float(r["lambda"]) for r in ledger], color=f"C{i}", ls="--", lw=1)
        ax.plot(episodes, [float(r["err_target"]) for r in ledger], color="k", lw=0.8)
    ax.axhline(target, color="k", ls=":", lw=0.8)
    ax.set_xlabel("shift (training episode)")
    ax.set_ylabel("error rate (solid); target (black)")
    ax2.set_ylabel("lambda [$/hr per unit error rate] (dashed)")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title("Lagrangian quality constraint: error rate and multiplier over training")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["state", "video", "constrained", "demos"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="env-step budget")
    parser.add_argument("--no-sb3", action="store_true", help="skip the SB3 runs (state task)")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "constrained_lambda.png"))
    parser.add_argument("--dual-lr", type=float, default=20.0, help="eta (constrained task)")
    parser.add_argument("--keep", default=None, help="keep the video runs' logs under this dir")
    parser.add_argument("--eval-every", type=int, default=1000, help="env steps (state task)")
    parser.add_argument("--episodes", type=int, default=20, help="recorded shifts (demos)")
    parser.add_argument("--demo-task", choices=["state", "video"], default="state")
    parser.add_argument("--skip-baseline", action="store_true", help="demos: no demo-free arm")
    parser.add_argument(
        "--updates-per-step",
        type=int,
        default=None,
        help="state, demos: updates per batched env step (default: the config's)",
    )
    parser.add_argument(
        "--datasets",
        nargs="*",
        choices=["optimal", "random"],
        default=["optimal", "random"],
        help="demos: the recorded datasets (none: the arm without demonstrations only)",
    )
    parser.add_argument(
        "--demo-override",
        action="append",
        default=[],
        metavar="ARG",
        help="demos: a CLI override for the arms with demonstrations only, given with '=' "
        "(--demo-override=--model.init_args.unit_head_inputs=true); repeatable",
    )
    args, overrides = parser.parse_known_args()
    if args.task == "state":
        steps = args.steps or 20_000
        lines = bench_state(
            args.seeds, steps, not args.no_sb3, args.eval_every, overrides, args.updates_per_step
        )
    elif args.task == "demos":
        config = VIDEO_CONFIG if args.demo_task == "video" else STATE_CONFIG
        steps = args.steps or (16_000 if args.demo_task == "video" else 2_000)
        lines = bench_demos(
            config,
            args.seeds,
            steps,
            args.eval_every,
            args.episodes,
            args.datasets,
            args.skip_baseline,
            overrides,
            args.updates_per_step,
            args.demo_override,
        )
    elif args.task == "video":
        if args.steps is not None:
            overrides = [*env_step_budget(VIDEO_CONFIG, args.steps), *overrides]
        lines = bench_video(args.seeds, args.steps or 50_000, overrides, args.keep)
    else:
        steps = args.steps or 20_000
        lines = bench_constrained(args.seeds, steps, Path(args.plot), args.dual_lr, overrides)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
