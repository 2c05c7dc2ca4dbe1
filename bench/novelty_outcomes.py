"""How much of a dynamics shift one shift's outcomes carry: an episode-level test of summed
outcomes given the actions (issue 20's next step, measured before it is built).

    python bench/novelty_outcomes.py --seeds 0 1 2                      # bench/novelty.py's encoder
    python bench/novelty_outcomes.py --seeds 0 1 2 --encoder-ckpt PATH  # any pretraining/SAC ckpt
    python bench/novelty_outcomes.py --oracle                           # the bound, no encoder

``bench/novelty.py`` scores a shift by the mean of its transitions' scores, and its diffusion
model over transitions misses both dynamics shifts (the outcome is 2 of 134 numbers). This
benchmark asks what a model of the outcome alone can see. Per seed, on the same random-action
episodes and shifts as ``bench/novelty.py`` (its seeds and ``SHIFTS``):

1. A regression (an MLP, mean-squared error on standardised columns) predicts a step's outcome
   from the clip's latent and the action, fitted on the training episodes' steps only.
2. A shift's statistic per outcome column is the sum over its steps of the residual
   (outcome minus prediction), standardised by the mean and spread of that sum over the
   calibration episodes (in-distribution): a z-score of the shift's total against what its
   actions lead to on the training task.
3. Scores: the sum of the squared z-scores (two-sided: a shift in any direction), and each
   column's z alone (one-sided: higher is more novel; a shift that lowers a column reads
   below 0.5).

Two outcomes: what a transition carries today (the step's reward and error rate,
``v2p.models.novelty_features``), and the step's counts (attempts and errors, from the env's
``info``; the replay does not store them). Per-episode AUROC (torchmetrics) of held-out
default-task shifts against each shifted task's, mean ± std over seeds.

``--oracle`` prints another table instead, in seconds: a bound on what any test of one
shift's outcomes can reach. An oracle that knows the training task's model exactly (each
step's expected attempts and error probability at its kind and action, section 2) scores a
shift by the Poisson and binomial score statistics of its total attempts and errors, at
random actions and at the optimal policy's. No learned model of the outcome knows more, so
for a test that does not know the shift's direction (the novelty's case) its two-sided rows
are the ceiling. Simulated without rendering (the task model's counts do not depend on the
camera), many shifts per task, so each figure is within about 0.01 (two standard errors);
the lighting shifts are the default task there.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from bench.novelty import (  # noqa: E402
    SHIFTS,
    add_episode_arguments,
    auroc,
    episode_sets,
    frozen_encoder,
)
from v2p.envs import DishwashingParams, DishwashingVideoVectorEnv, optimal_policy  # noqa: E402
from v2p.envs.dynamics import ShiftSimulator, expected_outcome  # noqa: E402
from v2p.models.outcome_test import wilson_hilferty  # noqa: E402

# outcome name -> (its columns, the step's values from (reward, info))
OUTCOMES = {
    "reward, error rate (a transition's outcome)": ("reward", "err_rate"),
    "attempts, errors (the step's counts)": ("attempts", "errors"),
}


@torch.no_grad()
def outcome_episodes(
    encoder: nn.Module, task: dict, episodes: int, seed: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random-action shifts: each step's (latent, action) (E, T, D + A) and every outcome
    column (E, T); ``bench/novelty.py``'s envs, seeds and action draws."""
    env = DishwashingVideoVectorEnv(num_envs=episodes, **task)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    inputs, columns = [], {name: [] for pair in OUTCOMES.values() for name in pair}
    for _ in range(env.params.steps - 1):  # the steps bench/novelty.py's transitions cover
        action = rng.uniform(0.0, 1.0, (episodes, 2))
        inputs.append(torch.cat([encoder(torch.from_numpy(obs)), torch.from_numpy(action)], 1))
        obs, reward, _, _, info = env.step(action)
        for name in columns:
            value = reward if name == "reward" else info[name]
            columns[name].append(torch.as_tensor(np.asarray(value, np.float32)))
    return torch.stack(inputs, 1).float(), {k: torch.stack(v, 1) for k, v in columns.items()}


def fit_regression(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int):
    """An MLP from standardised ``x`` (N, F) to standardised ``y`` (N, C); returns the
    residual function (x, y) -> standardised y minus its prediction."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_mean, x_std = x.mean(0), x.std(0).clamp_min(1e-3)
    y_mean, y_std = y.mean(0), y.std(0).clamp_min(1e-3)
    net = nn.Sequential(
        nn.Linear(x.shape[1], 128),
        nn.SiLU(),
        nn.Linear(128, 128),
        nn.SiLU(),
        nn.Linear(128, y.shape[1]),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    xn, yn = (x - x_mean) / x_std, (y - y_mean) / y_std
    for _ in range(steps):
        idx = torch.randint(0, len(x), (256,), generator=gen)
        loss = (net(xn[idx]) - yn[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def residual(xe: torch.Tensor, ye: torch.Tensor) -> torch.Tensor:
        return (ye - y_mean) / y_std - net((xe - x_mean) / x_std)

    return residual


def run_seed(encoder: nn.Module, seed: int, args: argparse.Namespace) -> dict:
    """{(outcome, score, shift): per-episode AUROC}."""
    episodes_of = functools.partial(outcome_episodes, encoder)
    train, calib, test, shifted = episode_sets(episodes_of, seed, args)
    results = {}
    for outcome, names in OUTCOMES.items():

        def columns(episodes, names=names) -> tuple[torch.Tensor, torch.Tensor]:
            x, values = episodes
            return x, torch.stack([values[n] for n in names], -1)  # (E, T, F), (E, T, C)

        x, y = columns(train)
        residual = fit_regression(x.flatten(0, 1), y.flatten(0, 1), args.steps, seed)

        def sums(episodes, columns=columns, residual=residual) -> torch.Tensor:
            x, y = columns(episodes)
            return residual(x.flatten(0, 1), y.flatten(0, 1)).view(*y.shape).sum(1)  # (E, C)

        reference = sums(calib)
        mean, std = reference.mean(0), reference.std(0)

        def z(episodes, sums=sums, mean=mean, std=std) -> torch.Tensor:
            return (sums(episodes) - mean) / std

        inliers = z(test)
        for shift, episodes in shifted.items():
            outliers = z(episodes)
            results[(outcome, "sum of squared z (two-sided)", shift)] = auroc(
                inliers.pow(2).sum(1), outliers.pow(2).sum(1)
            )
            for c, name in enumerate(names):
                results[(outcome, f"z of {name} (one-sided)", shift)] = auroc(
                    inliers[:, c], outliers[:, c]
                )
    progress(f"seed {seed}: {results}")
    return results


ORACLE_ACTIONS = {
    "random": "uniform random (the tables above)",
    "optimal": "the optimal policy's per kind",
}


def oracle_statistics(task: dict, shifts: int, seed: int, actions: str = "random") -> torch.Tensor:
    """(shifts, 3): each shift's score statistics under the default task's model, of its
    total attempts (Poisson) and of its total errors given its attempts (binomial): standard
    normal under the default task, up to the counts' discreteness; and a standard normal
    draw, what a test of the looks reads on a shift it cannot see. ``actions``: ``random``
    (uniform, as the tables above) or ``optimal`` (the default task's best action per kind,
    what a trained robot does)."""
    if actions not in ORACLE_ACTIONS:
        raise ValueError(f"actions must be one of {list(ORACLE_ACTIONS)}, got {actions!r}")
    dynamics = {k: v for k, v in task.items() if k != "lighting"}  # the camera is not counted
    sim, default = ShiftSimulator(DishwashingParams(**dynamics), shifts), DishwashingParams()
    if actions == "optimal":  # kinds outside the mix are never drawn: any action stands in
        best = optimal_policy(default).actions
        per_kind = np.array([best.get(kind.name, (0.0, 0.0)) for kind in default.dish_kinds])
    rng = np.random.default_rng(seed)
    sim.reset(rng)
    sums = np.zeros((4, shifts))  # attempts, their expectation, errors, their expectation
    variance = np.zeros(shifts)  # of the errors given the attempts
    for _ in range(sim.params.steps - 1):  # the steps the tables above cover
        if actions == "random":
            action = rng.uniform(0.0, 1.0, (shifts, 2))
        else:
            action = per_kind[sim.kind]
        expected = expected_outcome(default, sim.kind, action[:, 0], action[:, 1])
        outcome = sim.step(action, rng)
        sums += [
            outcome.attempts,
            expected.attempts * default.step_hours,
            outcome.errors,
            outcome.attempts * expected.p_err,
        ]
        variance += outcome.attempts * expected.p_err * (1.0 - expected.p_err)
    z_attempts = (sums[0] - sums[1]) / np.sqrt(sums[1])
    z_errors = (sums[2] - sums[3]) / np.sqrt(np.maximum(variance, 1e-12))
    looks = rng.standard_normal(shifts)
    return torch.from_numpy(np.stack([z_attempts, z_errors, looks], 1))


ORACLE_SCORES = {
    "z of attempts (one-sided, the shift's direction known)": lambda z: z[:, 0],
    "abs(z) of attempts (two-sided)": lambda z: z[:, 0].abs(),
    "z of errors (one-sided)": lambda z: z[:, 1],
    "abs(z) of errors (two-sided)": lambda z: z[:, 1].abs(),
    "sum of squared z of both (two-sided)": lambda z: z[:, :2].pow(2).sum(1),
    # The shape of LatentDiffusionNovelty.episode_scores: the larger of the outcome test's z
    # and the looks' z, so one score catches both kinds of shift.
    "the larger of the last (as a z) and a looks test's z": lambda z: torch.maximum(
        wilson_hilferty(z[:, :2].pow(2).sum(1), 2), z[:, 2]
    ),
}


def oracle_table(shifts: int, seed: int) -> list[str]:
    """Markdown lines: per-shift AUROC of :func:`oracle_statistics`' scores, under either
    actions."""
    lines = [
        f"oracle: the default task's own model, {shifts:,} shifts per task and actions; "
        "per-episode AUROC",
        "",
        "| actions | score | " + " | ".join(SHIFTS) + " |",
        "|---|---|" + "---:|" * len(SHIFTS),
    ]
    for actions, described in ORACLE_ACTIONS.items():
        inliers = oracle_statistics({}, shifts, seed, actions)
        outliers = [
            oracle_statistics(task, shifts, seed + 1 + i, actions)
            for i, (_, task) in enumerate(SHIFTS.values())
        ]
        for score, of in ORACLE_SCORES.items():
            cells = [f"{auroc(of(inliers), of(z)):.3f}" for z in outliers]
            lines.append(f"| {described} | {score} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_episode_arguments(parser)
    parser.add_argument("--steps", type=int, default=2000, help="regression updates")
    parser.add_argument("--oracle-shifts", type=int, default=10_000, help="shifts per task")
    parser.add_argument(
        "--oracle", action="store_true", help="the oracle's table instead (first seed)"
    )
    args = parser.parse_args()
    if args.oracle:
        print("\n".join(oracle_table(args.oracle_shifts, args.seeds[0])))
        return
    ckpt, encoder = frozen_encoder(args)
    per_seed = [run_seed(encoder, seed, args) for seed in args.seeds]
    print(f"encoder: {ckpt}; {len(args.seeds)} seeds; per-episode AUROC, mean ± std over seeds")
    print()
    print("| outcome | score | " + " | ".join(SHIFTS) + " |")
    print("|---|---|" + "---:|" * len(SHIFTS))
    for outcome, score in dict.fromkeys((o, s) for o, s, _ in per_seed[0]):
        cells = []
        for shift in SHIFTS:
            values = [r[(outcome, score, shift)] for r in per_seed]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"| {outcome} | {score} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
