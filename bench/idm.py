"""Inverse dynamics model benchmark (issue 21): how identifiable is each action dimension
from the frames, how good are the labels it gives an action-free recording, and does SAC
learn from them as from the true actions?

    python bench/idm.py --epochs 5
    python bench/idm.py --epochs 20 --env v2p/DishwashingPhysics-v0   # step 1 only

1. Record ``--episodes`` shifts of ``v2p/DishwashingVideo-v0`` with uniform random actions
   (``v2p record``: the labelled set) and train the IDM of ``configs/idm.yaml`` on them;
   report the R^2 of each action dimension (speed, care) on held-out episodes.
2. Record ``--demos`` shifts of the optimal policy twice with the same seed, once with and once
   without actions (``--store_actions false``; the policy is deterministic, so the episodes are
   the same), label the action-free one with the IDM (``v2p label``), and compare its labels
   with the true actions.
3. SAC on the state task (``configs/dishwashing_state.yaml``, ``--steps`` env steps after one
   batch of warm-up) with the true-action and the IDM-labelled demonstrations, and without.

``--env`` records step 1's shifts on another clip env (the physics env); steps 2 and 3 need
the synthetic video's optimal policy and state task, so they run on the default env only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import lightning as L
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress, results_stream  # noqa: E402
from bench.learn import HEADER, STATE_CONFIG, env_step_budget, run_v2p, summarise  # noqa: E402
from v2p.data.steps import StepDataModule  # noqa: E402
from v2p.envs import DishwashingParams, optimal_policy  # noqa: E402
from v2p.label import label  # noqa: E402
from v2p.models.idm import InverseDynamicsModule  # noqa: E402
from v2p.record import record  # noqa: E402

VIDEO_ENV = "v2p/DishwashingVideo-v0"


def train_idm(recording: Path, epochs: int, seed: int, root: Path) -> tuple[Path, dict]:
    config = yaml.safe_load((ROOT / "configs" / "idm.yaml").read_text())
    L.seed_everything(seed, verbose=False)
    data = StepDataModule(**{**config["data"]["init_args"], "paths": [str(recording)]})
    model = InverseDynamicsModule(
        data.observation_shape, data.action_low, data.action_high, **config["model"]["init_args"]
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(model, data)
    ckpt = root / "idm.ckpt"
    trainer.save_checkpoint(ckpt)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return ckpt, metrics


def r2(predicted: np.ndarray, truth: np.ndarray) -> list[str]:
    """R^2 per action dimension, formatted; "n/a" where the true action is constant."""
    residual = ((predicted - truth) ** 2).sum(axis=0)
    total = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    return [
        "n/a (constant)" if t < 1e-9 * len(truth) else f"{1.0 - r / t:.3f}"
        for r, t in zip(residual, total, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=100, help="labelled random shifts")
    parser.add_argument("--demos", type=int, default=20, help="expert shifts to label")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2000, help="SAC env steps")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--env", default=VIDEO_ENV, help="the env of step 1's labelled shifts")
    args = parser.parse_args()
    out = results_stream()  # PyBullet's connect messages go to stderr, not the results
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        record(
            str(root / "random"), env_id=args.env, episodes=args.episodes, seed=1, progress=False
        )
        ckpt, metrics = train_idm(root / "random", args.epochs, 0, root)
        progress(f"IDM: {metrics}")
        lines += [
            f"IDM trained {args.epochs} epochs on {args.episodes} random-action shifts of "
            f"`{args.env}`; held-out episodes:",
            "",
            "| R^2 speed | R^2 care | mean abs error |",
            "|---:|---:|---:|",
            f"| {metrics['val/r2/speed']:.3f} | {metrics['val/r2/care']:.3f} | "
            f"{metrics['val/mae']:.3f} |",
            "",
        ]
        if args.env != VIDEO_ENV:  # steps 2 and 3 need the synthetic task's optimal policy
            print("\n".join(lines), file=out)
            return
        for name, keep in (("expert", True), ("expert_free", False)):
            record(
                str(root / name),
                episodes=args.demos,
                policy="optimal",
                seed=2,
                store_actions=keep,
                progress=False,
            )
        label(str(ckpt), str(root / "expert_free"), str(root / "expert_labelled"), progress=False)
        truth = np.load(root / "expert" / "shard_00000.npz")["actions"]
        labelled = np.load(root / "expert_labelled" / "shard_00000.npz")
        fit = r2(labelled["actions"], truth)
        error = np.abs(labelled["actions"] - truth).mean(axis=0)
        lines += [
            f"Labels of {args.demos} optimal-policy shifts recorded without actions, against "
            "the true actions (the optimal policy's speed and care per dish kind):",
            "",
            "| | speed | care |",
            "|---|---:|---:|",
            f"| R^2 | {fit[0]} | {fit[1]} |",
            f"| mean abs error | {error[0]:.3f} | {error[1]:.3f} |",
            f"| mean label std (IDM confidence) | {labelled['action_std'][:, 0].mean():.3f} | "
            f"{labelled['action_std'][:, 1].mean():.3f} |",
            "",
        ]
        ceiling = optimal_policy(DishwashingParams()).profit
        warmup = yaml.safe_load((ROOT / STATE_CONFIG).read_text())["data"]["init_args"][
            "batch_size"
        ]
        budget = env_step_budget(STATE_CONFIG, args.steps, args.eval_every, warmup)
        lines += [
            f"SAC, {STATE_CONFIG}, {args.steps:,} env steps after {warmup} warm-up steps, "
            f"ceiling {ceiling:.2f} $/hr:",
            "",
            *HEADER,
        ]
        arms = {"no demonstrations": []}
        for name in ("expert", "expert_labelled"):
            arms[f"{name} demonstrations"] = [
                f'--data.init_args.demonstrations=[{{"name": "{name}", "path": "{root / name}"}}]'
            ]
        for name, overrides in arms.items():
            curves = []
            for seed in args.seeds:
                with tempfile.TemporaryDirectory() as run_root:
                    curve, _ = run_v2p(STATE_CONFIG, [*budget, *overrides], seed, run_root)
                curves.append(curve)
                progress(f"{name} seed {seed}: {curve.expected_profit}")
            lines += summarise(name, curves, ceiling, args.steps)
    print("\n".join(lines), file=out)


if __name__ == "__main__":
    main()
