"""Are uploaded demonstrations credited with the productivity they add? (issue 21, item 3)

    python bench/demo_attribution.py --seeds 0 1 2 --updates 2000

``configs/dishwashing_sources.yaml``'s model and callback (the counterfactual heads) on the state
task with three demonstration datasets, each uploaded by a customer (``owner``) and drawn into
SAC's batches (``demo_share`` 0.5 over the three, RLPD's default). The design, fixed before
any run:

- ``platform``: two sites of plates and glasses (no pots).
- ``customer_pots``: a site whose racks are pots at a quarter, the platform's mix otherwise; it
  uploads ``pots_expert``, 20 shifts of the optimal policy on a pots-only site (pots are
  handled fast and carelessly, unlike anything the platform does): a useful upload.
- ``customer_random``: a site of the platform's mix; it uploads ``random_upload``, 20 shifts of
  uniformly random actions on the platform's mix, with their true rewards: expected about
  useless (measured: worth +2.7 units/hr in this budget, docs/benchmarks.md).
- ``customer_corrupt``: a site of the platform's mix; it uploads ``corrupt_upload``, 20
  optimal shifts on the platform's mix whose rewards were replaced by uniform draws over the
  range profits take (-30 to 40 $/hr): a harmful upload (it teaches that the best actions pay
  little).

Ground truth per seed: the same run without each dataset (same seed); the dataset's actual
value is the expected MPL at its owner's site (the deterministic policy over 16 shifts, as in
``bench/attribution.py``) with every dataset minus without it. Attributed: the heads' last
measurement of the dataset's contribution (at its owner's sites, unclipped), and what its owner
is owed for it: the high-water mark of the measurements, clipped at 0, as ``EconomicsCallback``
keeps it to credit the owner's shifts. A short budget, because the state task is learnt in
about 1,000 env steps: data that speeds learning is only worth something while there is
learning left to do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from bench.attribution import (  # noqa: E402
    config_attribution,
    config_heads_lr,
    graded_mix,
    site_envs,
    site_outcome,
    spearman,
    train,
)
from v2p.data.recording import MANIFEST_NAME  # noqa: E402
from v2p.envs import DISH_KINDS  # noqa: E402
from v2p.record import record  # noqa: E402

PLATFORM_MIX = {"plate": 0.5, "glass": 0.5}
SOURCES = [
    {"name": "platform", "num_envs": 2, "env_kwargs": {"dish_mix": PLATFORM_MIX}},
    {
        "name": "customer_pots",
        "num_envs": 1,
        "env_kwargs": {"dish_mix": graded_mix("pot", 0.25, PLATFORM_MIX)},
    },
    {"name": "customer_random", "num_envs": 1, "env_kwargs": {"dish_mix": PLATFORM_MIX}},
    {"name": "customer_corrupt", "num_envs": 1, "env_kwargs": {"dish_mix": PLATFORM_MIX}},
]
# dataset -> (owner, the recorded site's dish mix, the recording policy, corrupt its rewards)
DATASETS = {
    "pots_expert": ("customer_pots", {"pot": 1.0}, "optimal", False),
    "random_upload": ("customer_random", PLATFORM_MIX, "random", False),
    "corrupt_upload": ("customer_corrupt", PLATFORM_MIX, "optimal", True),
}


def record_datasets(root: Path, episodes: int) -> dict[str, Path]:
    """Each dataset's recording on the video env (whose task states the state task observes)."""
    folders = {}
    for i, (name, (_, mix, policy, corrupt)) in enumerate(DATASETS.items()):
        folder = root / name
        record(
            str(folder),
            env_kwargs={"dish_mix": mix},
            episodes=episodes,
            policy=policy,
            seed=500 + i,
            progress=False,
        )
        if corrupt:
            corrupt_rewards(folder, seed=600 + i)
        folders[name] = folder
    return folders


def corrupt_rewards(folder: Path, seed: int) -> None:
    """Replace every step's reward in a recording by a uniform draw over -30 to 40 $/hr."""
    rng = np.random.default_rng(seed)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    for shard in manifest["shards"]:
        path = folder / shard["file"]
        with np.load(path) as data:
            arrays = dict(data)
        arrays["rewards"] = rng.uniform(-30.0, 40.0, arrays["rewards"].shape).astype(np.float32)
        np.savez_compressed(path, **arrays)


def demonstrations(folders: dict[str, Path], names: list[str]) -> str:
    datasets = [
        {"name": name, "path": str(folders[name]), "owner": DATASETS[name][0]} for name in names
    ]
    return f"--data.init_args.demonstrations={json.dumps(datasets)}"


def owner_mpl(model, owner: str) -> float:
    """Expected MPL [units/hr] of the deterministic policy over 16 shifts of ``owner``'s site."""
    env_kwargs = next(s["env_kwargs"] for s in SOURCES if s["name"] == owner)
    return site_outcome(model, site_envs(env_kwargs, 16, {}), list(DISH_KINDS))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=20, help="shifts per dataset")
    parser.add_argument("--eval-every", type=int, default=250, help="updates per evaluation")
    parser.add_argument(
        "--heads-lr",
        type=float,
        nargs="*",
        default=[],
        help="also measure with the heads at these learning rates (attribution.lr); the "
        "heads do not change the training, so every variant has the same ground truth",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads: the runs' figures change with it (rounding differences grow "
        "over 2,000 updates), so the documented figures name the count they were made with",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = list(DATASETS)
    source_names = [s["name"] for s in SOURCES] + names
    settings = config_attribution()
    # The config's heads first, then each learning-rate variant of them.
    variants = {f"config (lr {config_heads_lr()})": True}
    variants.update({f"lr {lr:g}": {**settings, "lr": lr} for lr in args.heads_lr})
    actual = {k: [] for k in names}
    measured = {(v, k): [] for v in variants for k in names}
    owed = {(v, k): [] for v in variants for k in names}
    with tempfile.TemporaryDirectory() as root:
        folders = record_datasets(Path(root) / "recordings", args.episodes)

        def fit(datasets: list[str], seed: int, run: str, attribution):
            overrides = (
                demonstrations(folders, datasets),
                f"--data.init_args.updates_per_epoch={args.eval_every}",
            )
            model, economics, *_ = train(
                SOURCES, seed, args.updates, f"{root}/{run}", attribution, {}, overrides
            )
            return model, economics

        for seed in args.seeds:
            for i, (v, attribution) in enumerate(variants.items()):
                model, economics = fit(names, seed, f"all-{i}", attribution)
                last = model.attribution.evaluations[-1].contributions
                # What the callback keeps to credit each owner: the high-water marks.
                high_water = economics.state_dict()["ranks"][0]["high_water"]
                for k in names:
                    measured[v, k].append(float(last[source_names.index(k)]))
                    owed[v, k].append(float(high_water[source_names.index(k)]))
            # Every variant's policy is the same (the heads' learning rate does not reach it),
            # so one set of runs without each dataset is the ground truth of them all.
            with_all = {k: owner_mpl(model, DATASETS[k][0]) for k in names}
            for k in names:
                without, _ = fit([n for n in names if n != k], seed, f"without-{k}", True)
                actual[k].append(with_all[k] - owner_mpl(without, DATASETS[k][0]))
                progress(f"seed {seed} {k}: actual {actual[k][-1]:+.2f}")
    print(
        f"{len(args.seeds)} seeds, {args.updates:,} updates (evaluated every {args.eval_every}), "
        f"{args.episodes} shifts per dataset, {args.threads} torch thread(s); ΔMPL at the "
        "owner's site [units/hr]"
    )
    print()
    print(
        "| dataset | owner | heads | actual ΔMPL per seed | mean | measured by the heads per "
        "seed | mean | owed (high-water, clipped at 0) per seed | mean |"
    )
    print("|---|---|---|---|---:|---|---:|---|---:|")
    for k in names:
        for v in variants:
            row = [f"| {k} | {DATASETS[k][0]} | {v} "]
            for values in (actual[k], measured[v, k], owed[v, k]):
                row.append(
                    f"| {', '.join(f'{x:+.1f}' for x in values)} | {statistics.mean(values):+.1f} "
                )
            print("".join(row) + "|")
    print()
    pooled_actual = [x for k in names for x in actual[k]]
    for v in variants:
        for label, values in (("measured", measured), ("owed", owed)):
            rho = spearman(pooled_actual, [x for k in names for x in values[v, k]])
            print(
                f"Spearman of {label} ({v}) against actual, pooled over datasets and seeds: "
                f"{rho:+.2f}"
            )


if __name__ == "__main__":
    main()
