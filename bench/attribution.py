"""Are customers credited with the productivity their data actually adds? Graded true values.

    python bench/attribution.py --seeds 0 1 2 --updates 6000 [--heads-lr 0.0003]

SAC on the state task (``configs/dishwashing_sources.yaml``'s model and callback) over a dish
catalogue of seven kinds. The platform's two sites wash plates and glasses; each customer's
site has a kind of its own that nobody else brings, at a graded share of its racks, so the
customers' true values are graded and well apart:

- ``customer_pots``: pots only (share 1);
- ``customer_pans``: pans at half its racks, the platform's mix otherwise;
- ``customer_trays``: trays at a quarter;
- ``customer_bowls``: bowls at an eighth;
- ``customer_same``: the platform's own mix, duplicating its data;
- ``customer_corrupt``: woks only, every logged reward replaced by a random number.

The customers' own kinds are handled like pots (the same dynamics: fast and careless is
right, where plates and glasses want care), so a customer's value is, to first order, its
share of a kind the policy has not otherwise seen.

Ground truth: for each seed, one run with every source and one without each customer (same
seed); the actual ΔMPL of customer k is the expected MPL at k's site (the deterministic
policy, the task model's expected completions per hour over 16 shifts of k's mix) with every
source minus without k. Attributed: the run with every source measures each source's
contribution at its own site with leave-one-source-out heads (``SACModule(attribution=...)``,
``v2p/models/attribution.py``); reported are its last measurement (unclipped) and what the
ledger credited (the sum of ``delta_mpl_cust`` over k's shifts: the high-water mark, >= 0).
A second run with every source measures the same by first-order gradient attribution
(``attribution.method=gradient``, ``v2p/models/tracin.py``) in every variant: the site
objective's critic (TD) term, its actor term or both, each raw and cosine. The policy trains
identically with either method, so the leave-one-out runs serve both. ``--heads-lr`` adds,
per seed and rate, a run with every source whose heads learn at that rate
(``attribution.lr``): the heads do not reach the policy, so it shares the ground truth.

Reported: Spearman correlations (torchmetrics) within each seed and pooled, sign agreement
(values within ``--zero-band`` units/hr of 0 count as 0), the duplicate's and the corrupted
source's credit against the most valuable source's, the ex-ante novelty quote's rank
correlation with the attributions it learnt from, and, with ``--overhead``, the wall-clock of
``configs/dishwashing_sources.yaml`` with and without attribution.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml
from torchmetrics.functional import spearman_corrcoef

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from v2p.callbacks import EconomicsCallback  # noqa: E402
from v2p.cli import main as cli_main  # noqa: E402
from v2p.envs import DISH_KINDS, DishKind, DishwashingVectorEnv  # noqa: E402
from v2p.models.attribution import AttributionSettings  # noqa: E402
from v2p.models.tracin import VARIANTS  # noqa: E402

CONFIG = ROOT / "configs" / "dishwashing_sources.yaml"
CORRUPT_ID = "bench/CorruptedLogs-v0"
POT = next(kind for kind in DISH_KINDS if kind.name == "pot")
# The default kinds, then four more handled like pots: one each for the graded customers'
# own kinds and the corrupted customer's.
CATALOGUE = [*DISH_KINDS, *(DishKind(name, *POT[1:]) for name in ("pan", "tray", "bowl", "wok"))]
PLATFORM_MIX = {"plate": 0.5, "glass": 0.5}


def graded_mix(
    kind: str, share: float, platform_mix: dict[str, float] = PLATFORM_MIX
) -> dict[str, float]:
    """``share`` of the racks are ``kind``, the rest the platform's mix."""
    rest = {name: (1.0 - share) * p for name, p in platform_mix.items()}
    return {kind: share, **rest} if share < 1 else {kind: 1.0}


SOURCES = [
    {"name": "platform", "num_envs": 2, "env_kwargs": {"dish_mix": PLATFORM_MIX}},
    {"name": "customer_pots", "num_envs": 1, "env_kwargs": {"dish_mix": graded_mix("pot", 1)}},
    {"name": "customer_pans", "num_envs": 1, "env_kwargs": {"dish_mix": graded_mix("pan", 0.5)}},
    {
        "name": "customer_trays",
        "num_envs": 1,
        "env_kwargs": {"dish_mix": graded_mix("tray", 0.25)},
    },
    {
        "name": "customer_bowls",
        "num_envs": 1,
        "env_kwargs": {"dish_mix": graded_mix("bowl", 0.125)},
    },
    {"name": "customer_same", "num_envs": 1, "env_kwargs": {"dish_mix": PLATFORM_MIX}},
    {
        "name": "customer_corrupt",
        "num_envs": 1,
        "env_kwargs": {"dish_mix": {"wok": 1.0}},
        "env_id": CORRUPT_ID,
    },
]
CUSTOMERS = [s["name"] for s in SOURCES if s["name"] != "platform"]
WORTHLESS = ("customer_same", "customer_corrupt")
COMMON_KWARGS = {"dish_kinds": [kind._asdict() for kind in CATALOGUE]}


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


def site_mpl(model, env_kwargs: dict, shifts: int = 16) -> float:
    """Expected MPL [units/hr] of the deterministic policy over ``shifts`` shifts of a site."""
    return site_outcome(model, site_envs(env_kwargs, shifts), CATALOGUE)[0]


def site_envs(env_kwargs: dict, shifts: int, common_kwargs: dict = COMMON_KWARGS):
    """The ``shifts`` envs of a site that the ground truth evaluates a policy on."""
    return gym.make_vec("v2p/Dishwashing-v0", num_envs=shifts, **common_kwargs, **env_kwargs)


def site_outcome(model, envs, kinds: list[DishKind]) -> tuple[float, dict[str, float]]:
    """The expected MPL [units/hr] of the deterministic policy over one shift of each of
    ``envs`` (reset with a fixed seed, so every policy meets the same racks), and the mean care
    it gives each of the catalogue's ``kinds`` it handles there; closes ``envs``."""
    obs, _ = envs.reset(seed=12345)
    shifts = envs.num_envs
    care_sum, count = np.zeros(len(kinds)), np.zeros(len(kinds))
    completed, hours = np.zeros(shifts), np.zeros(shifts)
    model.eval()
    for _ in range(envs.unwrapped.params.steps):
        action = model.act(obs, deterministic=True)
        kind = obs[:, : len(kinds)].argmax(axis=1)  # the rack about to be handled (one-hot)
        np.add.at(care_sum, kind, action[:, 1])
        np.add.at(count, kind, 1)
        obs, _, _, _, info = envs.step(action)
        completed += info["expected_attempts"] - info["expected_errors"]
        hours += info["step_hours"]
    envs.close()
    care = {kinds[i].name: care_sum[i] / count[i] for i in range(len(kinds)) if count[i]}
    return float(np.mean(completed / hours)), care


def train(
    sources: list[dict] | None,
    seed: int,
    updates: int,
    root: str,
    attribution,
    common_kwargs: dict = COMMON_KWARGS,
    overrides: tuple[str, ...] = (),
):
    """Fit the sources config (with ``sources`` and the catalogue of ``common_kwargs``, or as
    shipped when None), with its attribution (True), none (False) or these attribution
    settings (a dict), and any further command-line ``overrides``; (model,
    EconomicsCallback, log dir, seconds in fit)."""
    args = [
        "--config",
        str(CONFIG),
        f"--seed_everything={seed}",
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={updates}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    if sources is not None:
        args += [
            f"--data.init_args.sources={json.dumps(sources)}",  # JSON is YAML
            f"--data.init_args.env_kwargs={json.dumps(common_kwargs)}",
        ]
    if attribution is False:
        args.append("--model.init_args.attribution=null")
    elif isinstance(attribution, dict):
        args.append(f"--model.init_args.attribution={json.dumps(attribution)}")
    cli = cli_main([*args, *overrides], run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.perf_counter() - start
    economics = next(c for c in cli.trainer.callbacks if isinstance(c, EconomicsCallback))
    return cli.model, economics, Path(cli.trainer.log_dir), seconds


def config_attribution() -> dict:
    """The attribution settings of the sources config (``model.init_args.attribution``)."""
    return dict(yaml.safe_load(CONFIG.read_text())["model"]["init_args"]["attribution"])


def config_heads_lr() -> str:
    """The heads' learning rate of the sources config, as the benchmark's text names it."""
    return f"{AttributionSettings.of(config_attribution()).lr:g}"


def credited(ledger: Path) -> dict[str, float]:
    """Each customer's sum of ``delta_mpl_cust`` over its shifts in a ledger."""
    totals = dict.fromkeys(CUSTOMERS, 0.0)
    with open(ledger) as f:
        for row in csv.DictReader(f):
            if row["source"] in totals and row["delta_mpl_cust"]:
                totals[row["source"]] += float(row["delta_mpl_cust"])
    return totals


def spearman(x: list[float], y: list[float]) -> float:
    return float(spearman_corrcoef(torch.tensor(x), torch.tensor(y)))


def quote_correlation(economics: EconomicsCallback) -> float | None:
    """Spearman of the ex-ante novelty quote against the attributions it learnt from, over its
    samples once it quotes (None before three)."""
    quotes = [q for q in economics.pricer.quotes if q.predicted != 0.0]
    if len(quotes) <= 2:
        return None
    return spearman([q.predicted for q in quotes], [q.attributed for q in quotes])


def mean_of(values: dict[str, list[float]]) -> list[float]:
    """Each customer's mean over seeds, in CUSTOMERS order."""
    return [statistics.mean(values[k]) for k in CUSTOMERS]


def sign(x: float, band: float) -> int:
    return 0 if abs(x) < band else (1 if x > 0 else -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=6000)
    parser.add_argument("--zero-band", type=float, default=1.0)
    parser.add_argument("--overhead", action="store_true", help="time the sources config too")
    parser.add_argument("--every", type=int, default=10, help="gradient attribution's sampling")
    parser.add_argument(
        "--heads-lr",
        type=float,
        nargs="*",
        default=[],
        help="also run the heads at these learning rates (attribution.lr), one more run with "
        "every source per seed and rate; the heads do not reach the policy, so the ground "
        "truth is shared",
    )
    args = parser.parse_args()
    register_corrupted_env()
    site = {s["name"]: s["env_kwargs"] for s in SOURCES}
    names = [s["name"] for s in SOURCES]

    actual = {k: [] for k in CUSTOMERS}
    measured = {k: [] for k in CUSTOMERS}  # the heads' last contribution, unclipped
    credit = {k: [] for k in CUSTOMERS}  # the ledger's sum of delta_mpl_cust
    gradient = {v: {k: [] for k in CUSTOMERS} for v in VARIANTS}  # last, unclipped
    heads = {lr: ({k: [] for k in CUSTOMERS}, {k: [] for k in CUSTOMERS}) for lr in args.heads_lr}
    quote_rho: list[float] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        for seed in args.seeds:
            model, economics, log_dir, _ = train(SOURCES, seed, args.updates, f"{root}/all", True)
            contributions = model.attribution.contributions
            with_all = {k: site_mpl(model, site[k]) for k in CUSTOMERS}
            for k, value in credited(log_dir / "economics.csv").items():
                credit[k].append(value)
                measured[k].append(contributions[names.index(k)])
            for lr, (measured_lr, credit_lr) in heads.items():
                settings = {**config_attribution(), "lr": lr}
                model_lr, _, log_dir_lr, _ = train(
                    SOURCES, seed, args.updates, f"{root}/heads-lr-{lr:g}", settings
                )
                for k, value in credited(log_dir_lr / "economics.csv").items():
                    credit_lr[k].append(value)
                    measured_lr[k].append(model_lr.attribution.contributions[names.index(k)])
            settings = {"method": "gradient", "every": args.every}
            model_g, *_ = train(SOURCES, seed, args.updates, f"{root}/gradient", settings)
            for variant, values in model_g.attribution.variants.items():
                for k in CUSTOMERS:
                    gradient[variant][k].append(values[names.index(k)])
            rho = quote_correlation(economics)
            if rho is not None:
                quote_rho.append(rho)
            for k in CUSTOMERS:
                without = [s for s in SOURCES if s["name"] != k]
                model_k, *_ = train(without, seed, args.updates, f"{root}/without-{k}", False)
                actual[k].append(with_all[k] - site_mpl(model_k, site[k]))
                progress(
                    f"seed {seed} {k}: actual {actual[k][-1]:+.2f}, measured "
                    f"{measured[k][-1]:+.2f}, credited {credit[k][-1]:.2f}, gradient "
                    + " ".join(f"{v} {gradient[v][k][-1]:+.2f}" for v in VARIANTS)
                )
        overhead = measure_overhead(args.updates, root, args.every) if args.overhead else None
    print_results(
        args,
        actual,
        measured,
        credit,
        gradient,
        heads,
        quote_rho,
        overhead,
        time.perf_counter() - start,
    )


def measure_overhead(updates: int, root: str, every: int) -> dict[str, float]:
    """Seconds in fit of the shipped sources config (seed 0) without attribution, with its
    heads, and with gradient attribution."""
    seconds = {}
    runs = {
        "none": False,
        "counterfactual": True,
        "gradient": {"method": "gradient", "every": every},
    }
    for label, attribution in runs.items():
        *_, seconds[label] = train(None, 0, updates, f"{root}/overhead-{label}", attribution)
        progress(f"sources config, attribution {label}: {seconds[label]:.0f} s")
    return seconds


def print_results(
    args, actual, measured, credit, gradient, heads, quote_rho, overhead, seconds: float
) -> None:
    seeds = range(len(args.seeds))
    runs = len(args.seeds) * (2 + len(heads) + len(CUSTOMERS)) + (3 if overhead else 0)
    lines = [
        f"{len(args.seeds)} seeds x {args.updates:,} updates per run, {runs} runs in "
        f"{seconds / 60:.0f} min. The config's heads: attribution.lr "
        f"{config_heads_lr()}.",
        "",
        "| customer source | actual ΔMPL at its site, units/hr (mean; per seed) | "
        "measured contribution (mean; per seed) | credited Σ ΔMPL_cust (mean; per seed) |",
        "|---|---:|---:|---:|",
    ]

    def cell(values: list[float], fmt: str) -> str:
        return f"{statistics.mean(values):{fmt}} ({', '.join(f'{v:{fmt}}' for v in values)})"

    for k in CUSTOMERS:
        lines.append(
            f"| {k} | {cell(actual[k], '+.2f')} | {cell(measured[k], '+.2f')} | "
            f"{cell(credit[k], '.2f')} |"
        )
    lines += [
        "",
        "Gradient attribution (a second run; its policy is the same), each source's "
        "contribution at its own site, units/hr (mean; per seed), by variant "
        "(objective/normalisation):",
        "",
        "| customer source | " + " | ".join(VARIANTS) + " |",
        "|---|" + "---:|" * len(VARIANTS),
    ]
    for k in CUSTOMERS:
        lines.append(
            f"| {k} | " + " | ".join(cell(gradient[v][k], "+.1f") for v in VARIANTS) + " |"
        )
    for lr, (measured_lr, credit_lr) in heads.items():
        lines += [
            "",
            f"Heads at learning rate {lr:g} (attribution.lr; one more run with every source, "
            "the same policy), units/hr (mean; per seed):",
            "",
            "| customer source | measured contribution | credited Σ ΔMPL_cust |",
            "|---|---:|---:|",
        ]
        for k in CUSTOMERS:
            lines.append(f"| {k} | {cell(measured_lr[k], '+.2f')} | {cell(credit_lr[k], '.2f')} |")
    methods = {
        "measured contribution": measured,
        "credit": credit,
        **{
            f"{what}, heads lr {lr:g}": values
            for lr, pair in heads.items()
            for what, values in zip(("measured contribution", "credit"), pair, strict=True)
        },
        **{f"gradient {v}": gradient[v] for v in VARIANTS},
    }
    for label, attributed in methods.items():
        within = [
            spearman([attributed[k][i] for k in CUSTOMERS], [actual[k][i] for k in CUSTOMERS])
            for i in seeds
        ]
        pooled = spearman(
            [attributed[k][i] for k in CUSTOMERS for i in seeds],
            [actual[k][i] for k in CUSTOMERS for i in seeds],
        )
        lines += [
            "",
            f"Spearman(actual, {label}): within each seed "
            + ", ".join(f"{r:.2f}" for r in within)
            + f" (median {statistics.median(within):.2f}); pooled over the "
            f"{len(CUSTOMERS) * len(seeds)} (source, seed) pairs {pooled:.2f}.",
        ]
    if len(seeds) > 1:
        spread = ", ".join(
            f"{k} {statistics.mean(actual[k]):+.1f} ± {statistics.stdev(actual[k]):.1f}"
            for k in CUSTOMERS
        )
        lines += [
            "",
            f"Ground truth across seeds (mean ± sd of the actual ΔMPL): {spread}. Graded values "
            "need the gaps between customers' means to exceed these spreads.",
            "Spearman of the seed means (each method's mean over seeds against the mean actual "
            "ΔMPL, one point per customer): "
            + ", ".join(
                f"{label} {spearman(*(mean_of(d) for d in (attributed, actual))):.2f}"
                for label, attributed in methods.items()
            )
            + ".",
        ]
    band = args.zero_band
    pairs = len(CUSTOMERS) * len(seeds)
    for label, attributed in methods.items():
        if label.startswith("credit"):
            continue  # clipped at 0: its sign says nothing
        agree = sum(
            sign(attributed[k][i], band) == sign(actual[k][i], band)
            for k in CUSTOMERS
            for i in seeds
        )
        strict = sum((attributed[k][i] > 0) == (actual[k][i] > 0) for k in CUSTOMERS for i in seeds)
        lines.append(
            f"Sign agreement of the {label} with the actual ΔMPL (within ±{band:g} units/hr of "
            f"0 counts as 0): {agree}/{pairs}; strict signs (> 0 or not): {strict}/{pairs}."
        )
    # The most valuable source by its actual value (mean over seeds), as the target reads.
    best = max(CUSTOMERS, key=lambda k: statistics.mean(actual[k]))
    for label, attributed in (
        ("credit", credit),
        *((f"credit, heads lr {lr:g}", pair[1]) for lr, pair in heads.items()),
        *((f"gradient {v}", gradient[v]) for v in VARIANTS),
    ):
        clipped = {k: [max(0.0, v) for v in attributed[k]] for k in CUSTOMERS}
        for k in WORTHLESS:
            ratio = [
                f"{100 * clipped[k][i] / clipped[best][i]:.1f}%"
                if clipped[best][i] > 0
                else f"n/a ({best} got 0)"
                for i in seeds
            ]
            lines.append(
                f"{label}: {k} gets {', '.join(ratio)} of {best}'s (clipped at 0; per seed; "
                "target at most 10%)."
            )
    harmful = [
        f"seed {args.seeds[i]}: measured {measured['customer_corrupt'][i]:+.2f}, gradient "
        + ", ".join(f"{v} {gradient[v]['customer_corrupt'][i]:+.2f}" for v in VARIANTS)
        + ", actual "
        f"{actual['customer_corrupt'][i]:+.2f}"
        for i in seeds
    ]
    lines.append(
        "customer_corrupt, named harmful in the report where its measured contribution is "
        f"below 0: {'; '.join(harmful)}."
    )
    if quote_rho:
        lines.append(
            "Ex-ante novelty quote against the attributions it learnt from (Spearman over its "
            "samples once it quotes, per seed): " + ", ".join(f"{r:.2f}" for r in quote_rho) + "."
        )
    if overhead:
        off = overhead["none"]
        lines.append(
            f"Attribution overhead on configs/dishwashing_sources.yaml ({args.updates:,} "
            f"updates, seed 0, time in fit): {off:.0f} s without; "
            + "; ".join(
                f"{label} {s:.0f} s, {100 * (s / off - 1):+.0f}%"
                for label, s in overhead.items()
                if label != "none"
            )
            + " (budget +25%)."
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
