"""Does the callback credit each customer with the productivity its data actually adds?

    python bench/attribution.py --seeds 0 1 --updates 6000

Counterfactual runs of ``configs/dishwashing_sources.yaml`` (SAC on the state task, a novelty
model trained online, the EconomicsCallback pricing every batch per source) with the config's
sources plus one customer whose logged rewards are corrupted:

- ``platform``: the platform's own sites (plates and glasses);
- ``customer_pots``: pots only, states the platform never sees;
- ``customer_glass``: glasses only, covered by the platform's data;
- ``customer_same``: the platform's own mix, duplicating its data;
- ``customer_corrupt``: pots, but every logged reward is replaced by a random number.

For each seed: one run with every source, and one run without each customer (same seed). The
actual ΔMPL of customer k is the expected MPL at k's site (deterministic policy, the task
model's expected completions per hour over 16 shifts of k's dish mix) with all sources minus
without k. The attributed ΔMPL is the sum of the ledger's ``delta_mpl_cust`` over k's shifts in
the run with every source. Reported: both per source, their Spearman correlation (torchmetrics)
and how often their signs agree; and, to explain the credit, the data-value estimator's
weights at the end of the run with every source (ΔMPL per batch = w0 + w1 * mean novelty) and
each source's mean novelty over its shifts in that run's ledger.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torchmetrics.functional import spearman_corrcoef

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from v2p.callbacks import EconomicsCallback  # noqa: E402
from v2p.cli import main as cli_main  # noqa: E402
from v2p.envs import DishwashingVectorEnv  # noqa: E402

CONFIG = ROOT / "configs" / "dishwashing_sources.yaml"
CORRUPT_ID = "bench/CorruptedLogs-v0"
PLATFORM_MIX = {"plate": 0.5, "glass": 0.5}
SOURCES = [
    {"name": "platform", "num_envs": 2, "env_kwargs": {"dish_mix": PLATFORM_MIX}},
    {"name": "customer_pots", "num_envs": 1, "env_kwargs": {"dish_mix": {"pot": 1.0}}},
    {"name": "customer_glass", "num_envs": 1, "env_kwargs": {"dish_mix": {"glass": 1.0}}},
    {"name": "customer_same", "num_envs": 1, "env_kwargs": {"dish_mix": PLATFORM_MIX}},
    {
        "name": "customer_corrupt",
        "num_envs": 1,
        "env_kwargs": {"dish_mix": {"pot": 1.0}},
        "env_id": CORRUPT_ID,
    },
]
CUSTOMERS = [s["name"] for s in SOURCES if s["name"] != "platform"]


class CorruptedLogsVectorEnv(DishwashingVectorEnv):
    """Dishwashing sites whose logged rewards are garbage: each step's profit is replaced by a
    uniform draw over the range profits take. The work (and its accounting) is real."""

    def step(self, actions):
        obs, reward, terminated, truncated, info = super().step(actions)
        return obs, self.np_random.uniform(-30.0, 40.0, reward.shape), terminated, truncated, info


def register_corrupted_env() -> None:
    if CORRUPT_ID not in gym.registry:
        gym.register(
            CORRUPT_ID,
            entry_point="v2p.envs.dishwashing:DishwashingEnv",
            vector_entry_point=CorruptedLogsVectorEnv,
        )


def site_mpl(model, env_kwargs: dict, shifts: int = 16, seed: int = 12345) -> float:
    """Expected MPL [units/hr] of the deterministic policy over ``shifts`` shifts of a site."""
    envs = gym.make_vec("v2p/Dishwashing-v0", num_envs=shifts, **env_kwargs)
    obs, _ = envs.reset(seed=seed)
    completed = np.zeros(shifts)
    hours = np.zeros(shifts)
    model.eval()
    for _ in range(envs.unwrapped.params.steps):
        obs, _, _, _, info = envs.step(model.act(obs, deterministic=True))
        completed += info["expected_attempts"] - info["expected_errors"]
        hours += info["step_hours"]
    envs.close()
    return float(np.mean(completed / hours))


def train(sources: list[dict], seed: int, updates: int, root: str):
    """Fit the sources config; (model, ledger path, the estimator's final [w0, w1])."""
    cli = cli_main(
        [
            "--config",
            str(CONFIG),
            f"--seed_everything={seed}",
            f"--trainer.default_root_dir={root}",
            f"--trainer.max_steps={updates}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--data.init_args.sources={json.dumps(sources)}",  # JSON is YAML
        ],
        run=False,
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    economics = next(c for c in cli.trainer.callbacks if isinstance(c, EconomicsCallback))
    weights = economics.pricer.estimator.weights.tolist()
    return cli.model, Path(cli.trainer.log_dir) / "economics.csv", weights


def mean_novelty(ledger: Path) -> dict[str, float]:
    """Each source's mean ``novelty`` over its shifts in a ledger."""
    values: dict[str, list[float]] = {}
    with open(ledger) as f:
        for row in csv.DictReader(f):
            if row["novelty"]:
                values.setdefault(row["source"], []).append(float(row["novelty"]))
    return {source: statistics.mean(v) for source, v in values.items()}


def attributed(ledger: Path) -> dict[str, float]:
    totals = dict.fromkeys(CUSTOMERS, 0.0)
    with open(ledger) as f:
        for row in csv.DictReader(f):
            if row["source"] in totals and row["delta_mpl_cust"]:
                totals[row["source"]] += float(row["delta_mpl_cust"])
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--updates", type=int, default=6000)
    args = parser.parse_args()
    register_corrupted_env()
    site = {s["name"]: s["env_kwargs"] for s in SOURCES}

    actual: dict[str, list[float]] = {k: [] for k in CUSTOMERS}
    credit: dict[str, list[float]] = {k: [] for k in CUSTOMERS}
    diagnosis: list[str] = []
    start = time.perf_counter()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as root:
            model, ledger, (w0, w1) = train(SOURCES, seed, args.updates, f"{root}/all")
            novelty = mean_novelty(ledger)
            diagnosis.append(
                f"| {seed} | {w0:+.4f} | {w1:+.4f} | "
                + " | ".join(f"{novelty.get(s['name'], math.nan):+.3f}" for s in SOURCES)
                + " |"
            )
            with_all = {k: site_mpl(model, site[k]) for k in CUSTOMERS}
            for k, value in attributed(ledger).items():
                credit[k].append(value)
            for k in CUSTOMERS:
                without = [s for s in SOURCES if s["name"] != k]
                model_k, *_ = train(without, seed, args.updates, f"{root}/without-{k}")
                actual[k].append(with_all[k] - site_mpl(model_k, site[k]))
                progress(
                    f"seed {seed} {k}: actual {actual[k][-1]:+.2f}, attributed {credit[k][-1]:.3f}"
                )
    print_table(actual, credit, args, time.perf_counter() - start, diagnosis)


def print_table(actual, credit, args, seconds: float, diagnosis: list[str]) -> None:
    lines = [
        f"{len(args.seeds)} seeds x {args.updates:,} updates per run, "
        f"{len(args.seeds) * (1 + len(CUSTOMERS))} runs in {seconds / 60:.0f} min.",
        "",
        "| customer source | actual ΔMPL at its site, units/hr (mean; per seed) | "
        "attributed Σ ΔMPL_cust (mean; per seed) |",
        "|---|---:|---:|",
    ]
    for k in CUSTOMERS:
        a = ", ".join(f"{x:+.2f}" for x in actual[k])
        c = ", ".join(f"{x:.3f}" for x in credit[k])
        lines.append(
            f"| {k} | {statistics.mean(actual[k]):+.2f} ({a}) | "
            f"{statistics.mean(credit[k]):.3f} ({c}) |"
        )
    pooled_a = torch.tensor([x for k in CUSTOMERS for x in actual[k]])
    pooled_c = torch.tensor([x for k in CUSTOMERS for x in credit[k]])
    means_a = torch.tensor([statistics.mean(actual[k]) for k in CUSTOMERS])
    means_c = torch.tensor([statistics.mean(credit[k]) for k in CUSTOMERS])
    per_seed = [
        float(
            spearman_corrcoef(
                torch.tensor([credit[k][i] for k in CUSTOMERS]),
                torch.tensor([actual[k][i] for k in CUSTOMERS]),
            )
        )
        for i in range(len(args.seeds))
    ]
    signs = (pooled_a > 0) == (pooled_c > 0)
    lines += [
        "",
        f"Spearman(actual, attributed): {float(spearman_corrcoef(means_c, means_a)):.2f} over "
        f"the {len(CUSTOMERS)} source means, {float(spearman_corrcoef(pooled_c, pooled_a)):.2f} "
        f"over all {len(pooled_a)} (source, seed) pairs; within each seed: "
        + ", ".join(f"{rho:.2f}" for rho in per_seed)
        + ".",
        f"Sign agreement (actual > 0 iff attributed > 0): {int(signs.sum())}/{len(signs)}.",
        "",
        "The data-value estimator at the end of each run with every source (ΔMPL per batch = "
        "w0 + w1 * mean novelty), and each source's mean novelty over its shifts:",
        "",
        "| seed | w0 | w1 | " + " | ".join(s["name"] for s in SOURCES) + " |",
        "|---|---:|---:|" + "---:|" * len(SOURCES),
        *diagnosis,
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
