"""Novelty benchmark (issue 5): does the diffusion prior tell shifted tasks from the training task?

    nice python bench/novelty.py --seeds 0 1 2                        # pretrains an encoder first
    nice python bench/novelty.py --seeds 0 1 2 --encoder-ckpt PATH    # any pretraining/SAC ckpt

1. Encoder: unless ``--encoder-ckpt`` is given, ``record`` default-task episodes (random
   policy) and pretrain :class:`~v2p.models.pretrain.EncoderPretrainModule` on them briefly.
2. Per seed, episodes of ``DishwashingVideoVectorEnv`` under uniformly random actions (each set
   from its own env seed): training, calibration and held-out test episodes of the default
   task, and test episodes of each shifted task. Every observation (clip) of an episode is
   encoded by the frozen encoder.
3. :class:`~v2p.models.novelty.LatentDiffusionNovelty` is trained on the training latents
   (normaliser fitted on them), calibrated on the calibration latents, and scores the held-out
   default-task clips against each shifted task's clips. Its settings (timesteps, draws, size)
   are the module defaults, fixed before any shifted data was seen. Baselines on the same
   latents: the distance to the k-th nearest training latent (standardised latents) and the
   Mahalanobis distance to the training latents' Gaussian.

Every method runs twice: on the clips' latents (observation novelty) and on the transitions
(:mod:`v2p.models.novelty_features`: the latent, the action, the step's reward and error rate,
and the next latent), each step of a shift but its last. On transitions the model is trained
with its outcome test (:class:`~v2p.models.outcome_test.OutcomeResidualTest`), and its episode
score (:meth:`~v2p.models.novelty.LatentDiffusionNovelty.episode_scores`) is the larger of the
mean step score's z and the outcome test's z; both parts are also reported alone.

AUROC (torchmetrics) per clip or step and per episode (the model's episode score; the mean
score of an episode for the baselines), mean and sample std over seeds. Shifts: far = a darker
scene (lighting 0.7) and much more fragile dishes (k_err x5); near = a 20% faster line
(base_rate 2.0 -> 2.4) and a 10% dimmer scene. Targets (issue 20): per-episode AUROC of the
model's episode score on transitions >= 0.95 on the far shifts and >= 0.80 on the near ones,
and on the dynamics shifts above kNN and Mahalanobis on the same transitions.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from v2p.data.clips import ClipDataModule  # noqa: E402
from v2p.envs import DishwashingVideoVectorEnv  # noqa: E402
from v2p.models.novelty import LatentDiffusionNovelty, load_frozen_encoder  # noqa: E402
from v2p.models.novelty_features import transition_features  # noqa: E402
from v2p.models.pretrain import EncoderPretrainModule  # noqa: E402
from v2p.record import record  # noqa: E402

# name -> (kind, task kwargs). Fixed before any result was seen.
SHIFTS: dict[str, tuple[str, dict[str, Any]]] = {
    "darker scene (lighting 0.7)": ("far", {"lighting": (0.7, 0.7, 0.7)}),
    "fragile dishes (k_err x5)": ("far", {"k_err": 0.6}),
    "faster line (base_rate +20%)": ("near", {"base_rate": 2.4}),
    "dimmer scene (lighting 0.9)": ("near", {"lighting": (0.9, 0.9, 0.9)}),
}
TARGETS = {"far": 0.95, "near": 0.80}


def pretrain_encoder(workdir: Path, episodes: int, steps: int) -> Path:
    """Record default-task episodes and pretrain a simple2dcnn encoder; returns its checkpoint."""
    recordings = workdir / "recordings"
    if not (recordings / "manifest.json").exists():
        record(str(recordings), episodes=episodes, seed=12345, progress=False, overwrite=True)
    data = ClipDataModule([str(recordings)], batch_size=64, clips_per_epoch=64 * 50, seed=0)
    model = EncoderPretrainModule(data.observation_shape, encoder_arch="simple2dcnn")
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=workdir,
    )
    L.seed_everything(0, verbose=False)
    trainer.fit(model, data)
    path = workdir / "encoder.ckpt"
    trainer.save_checkpoint(path)
    progress(f"pretrained encoder: {steps} steps, {trainer.callback_metrics}")
    return path


class Episodes(NamedTuple):
    """Random-action shifts, encoded: what observation and transition novelty score."""

    latents: torch.Tensor  # (E, steps, D) every clip's latent
    transitions: torch.Tensor  # (E, steps - 1, 2 D + A + 2) v2p.models.novelty_features


@torch.no_grad()
def encoded_episodes(
    encoder: torch.nn.Module, task: dict[str, Any], episodes: int, seed: int
) -> Episodes:
    """Latents of every clip of ``episodes`` random-action shifts, and their transitions."""
    env = DishwashingVideoVectorEnv(num_envs=episodes, **task)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    latents, actions, rewards, errs = [], [], [], []
    for _ in range(env.params.steps):  # the reset clip and the next steps - 1; no autoreset
        latents.append(encoder(torch.from_numpy(obs)))
        action = rng.uniform(0.0, 1.0, (episodes, 2))
        obs, reward, _, _, info = env.step(action)
        actions.append(torch.from_numpy(action).float())
        rewards.append(torch.from_numpy(np.asarray(reward, np.float32)))
        errs.append(torch.from_numpy(np.asarray(info["err_rate"], np.float32)))
    z = torch.stack(latents, dim=1)  # (E, steps, D)
    # Step t leads from clip t to clip t + 1; the last step's next clip is the reset one.
    a, r, e = (torch.stack(x[:-1], dim=1) for x in (actions, rewards, errs))
    flat = transition_features(
        z[:, :-1].flatten(0, 1), a.flatten(0, 1), r.flatten(), e.flatten(), z[:, 1:].flatten(0, 1)
    )
    return Episodes(z, flat.view(episodes, env.params.steps - 1, -1))


def knn_scorer(train: torch.Tensor, k: int = 5) -> Callable[[torch.Tensor], torch.Tensor]:
    """Distance to the k-th nearest training latent, in train-standardised coordinates."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-3)
    reference = (train - mean) / std

    def score(z: torch.Tensor) -> torch.Tensor:
        dist = torch.cdist((z - mean) / std, reference)  # (B, N)
        return dist.topk(k, dim=1, largest=False).values[:, -1]

    return score


def mahalanobis_scorer(train: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Squared Mahalanobis distance to the training latents' Gaussian (ridge 1e-4 x trace/D)."""
    mean = train.mean(0)
    cov = torch.cov((train - mean).T)
    cov += 1e-4 * cov.trace() / cov.shape[0] * torch.eye(cov.shape[0])
    precision = torch.linalg.inv(cov)
    return lambda z: ((z - mean) @ precision * (z - mean)).sum(-1)


class Scorer(NamedTuple):
    step: Callable[[torch.Tensor], torch.Tensor]  # (N, D) -> (N,)
    episode: Callable[[torch.Tensor], torch.Tensor]  # (E, S, D) -> (E,)


def step_scores(step: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """(E, S, D) -> (E, S) scores of every step, in chunks."""
    return torch.cat([step(chunk) for chunk in z.flatten(0, 1).split(4096)]).view(z.shape[:2])


def mean_of_steps(step: Callable[[torch.Tensor], torch.Tensor]) -> Scorer:
    """A baseline's episode score: the mean of its steps' scores."""
    return Scorer(step, lambda z: step_scores(step, z).mean(1))


def of_episodes(
    statistic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``statistic(z (N, D), episode ids (N,))`` as a score of (E, S, D) episodes."""
    return lambda z: statistic(z.flatten(0, 1), torch.arange(len(z)).repeat_interleave(z.shape[1]))


def novelty_model(
    train: torch.Tensor, calib: torch.Tensor, steps: int, seed: int, inputs: str
) -> LatentDiffusionNovelty:
    """The module-default model on ``inputs`` (2-D actions), trained and calibrated."""
    torch.manual_seed(seed)
    action_dim = 2 if inputs == "transition" else None
    model = LatentDiffusionNovelty(latent_dim=train.shape[1], inputs=inputs, action_dim=action_dim)
    model.fit_normaliser(train)
    opt = model.configure_optimizers()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = train[torch.randint(0, len(train), (256,), generator=gen)]
        loss = model.online_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.calibrate(calib)
    progress(f"  novelty ({inputs}s): {steps} steps, last loss {loss.item():.3f}")
    return model


def novelty_scorers(model: LatentDiffusionNovelty) -> dict[str, Scorer]:
    """The model's scores: on transitions, its episode score and each of its two parts."""
    if model.outcome_test is None:
        return {"diffusion (ours)": Scorer(model.score, of_episodes(model.episode_scores))}

    def part(column: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return lambda z, episode: model.episode_statistics(z, episode)[:, column]

    # The outcome test alone, per step: each step tested as an episode of one step.
    outcome_per_step = part(1)
    return {
        "diffusion + outcome test (ours)": Scorer(model.score, of_episodes(model.episode_scores)),
        "its mean step score alone": Scorer(model.score, of_episodes(part(0))),
        "its outcome test alone": Scorer(
            lambda z: outcome_per_step(z, torch.arange(len(z))), of_episodes(outcome_per_step)
        ),
    }


def auroc(inliers: torch.Tensor, outliers: torch.Tensor) -> float:
    """AUROC of telling ``outliers`` (positives) from ``inliers`` by a higher score."""
    labels = torch.cat([torch.zeros(len(inliers)), torch.ones(len(outliers))]).long()
    scores = torch.cat([inliers, outliers]).double()
    # binary_auroc takes scores outside [0, 1] for logits and applies a sigmoid, which ties
    # every large score at 1.0; a min-max rescale keeps the order (the AUROC) and avoids that.
    scores = (scores - scores.min()) / (scores.max() - scores.min()).clamp_min(1e-300)
    return float(binary_auroc(scores, labels))


def evaluate(
    scorer: Scorer, test: torch.Tensor, shifted: dict[str, torch.Tensor]
) -> dict[tuple[str, str], float]:
    """{(shift, 'clip' | 'episode'): AUROC} of held-out default-task vs shifted episodes."""
    inl, inl_episodes = step_scores(scorer.step, test), scorer.episode(test)
    out = {}
    for name, z in shifted.items():
        out[(name, "clip")] = auroc(inl.flatten(), step_scores(scorer.step, z).flatten())
        out[(name, "episode")] = auroc(inl_episodes, scorer.episode(z))
    return out


def episode_sets(episodes_of: Callable[..., Any], seed: int, args: argparse.Namespace):
    """A seed's training, calibration and held-out default-task episodes and each shift's
    episodes, ``episodes_of(task, episodes, env_seed)`` drawn from this benchmark's env seeds
    (so bench/novelty_outcomes.py scores the same shifts)."""
    base = 1000 * (seed + 1)
    train = episodes_of({}, args.train_episodes, base + 1)
    calib = episodes_of({}, args.calib_episodes, base + 2)
    test = episodes_of({}, args.test_episodes, base + 3)
    shifted = {
        name: episodes_of(task, args.test_episodes, base + 4 + i)
        for i, (name, (_, task)) in enumerate(SHIFTS.items())
    }
    return train, calib, test, shifted


def run_seed(encoder: torch.nn.Module, seed: int, args: argparse.Namespace) -> dict:
    """{method: {(shift, unit): AUROC}} of every method on observations and on transitions."""
    start = time.perf_counter()
    episodes_of = functools.partial(encoded_episodes, encoder)
    train, calib, test, shifted = episode_sets(episodes_of, seed, args)
    progress(f"seed {seed}: latents in {time.perf_counter() - start:.0f} s")
    results = {}
    for inputs in ("observation", "transition"):
        field = "latents" if inputs == "observation" else "transitions"

        def of(episodes: Episodes, field: str = field) -> torch.Tensor:
            return getattr(episodes, field)

        fit, held = of(train).flatten(0, 1), of(calib).flatten(0, 1)
        model = novelty_model(fit, held, args.novelty_steps, seed, inputs)
        scorers = {
            **novelty_scorers(model),
            "kNN (k=5)": mean_of_steps(knn_scorer(fit)),
            "Mahalanobis": mean_of_steps(mahalanobis_scorer(fit)),
        }
        shifted_inputs = {name: of(episodes) for name, episodes in shifted.items()}
        for method, f in scorers.items():
            results[f"{method}, {inputs}s"] = evaluate(f, of(test), shifted_inputs)
    progress(f"seed {seed}: {results}")
    return results


def table(per_seed: list[dict]) -> list[str]:
    """Mean ± std over seeds. "met" (issue 20's targets): the model's per-episode AUROC on
    transitions (its episode score) reaches the shift's target, and on a dynamics shift also
    beats kNN and Mahalanobis on the same transitions (a lighting shift needs the level only:
    "the lighting shifts still at least 0.95 / 0.80")."""
    lines = [
        "| shift | kind | method | AUROC per clip or step | AUROC per episode | target | met |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    methods = list(per_seed[0])

    def mean(method: str, name: str, unit: str) -> float:
        return statistics.mean(r[method][(name, unit)] for r in per_seed)

    for name, (kind, task) in SHIFTS.items():
        dynamics = "lighting" not in task
        ours = "diffusion + outcome test (ours), transitions"
        baselines = [
            mean(m, name, "episode")
            for m in methods
            if m.endswith("transitions") and m.split(",")[0] in ("kNN (k=5)", "Mahalanobis")
        ]
        for method in methods:
            cells = []
            for unit in ("clip", "episode"):
                values = [r[method][(name, unit)] for r in per_seed]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
            met, target = "", ""
            if method == ours:
                episode = mean(method, name, "episode")
                beats = episode >= max(baselines) or not dynamics
                met = "yes" if episode >= TARGETS[kind] and beats else "no"
                target = f"{TARGETS[kind]:.2f}"
            lines.append(
                f"| {name} | {kind} | {method} | {cells[0]} | {cells[1]} | {target} | {met} |"
            )
    return lines


def add_episode_arguments(parser: argparse.ArgumentParser) -> None:
    """The encoder and episode options this benchmark shares with bench/novelty_outcomes.py."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--encoder-ckpt", default=None, help="skip pretraining; use this encoder")
    parser.add_argument("--workdir", default="/tmp/v2p_bench_novelty")
    parser.add_argument("--record-episodes", type=int, default=100)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--train-episodes", type=int, default=64)
    parser.add_argument("--calib-episodes", type=int, default=16)
    parser.add_argument("--test-episodes", type=int, default=32)


def frozen_encoder(args: argparse.Namespace) -> tuple[str, torch.nn.Module]:
    """``--encoder-ckpt``, or an encoder pretrained in ``--workdir``; (checkpoint, encoder)."""
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = args.encoder_ckpt or pretrain_encoder(workdir, args.record_episodes, args.pretrain_steps)
    return str(ckpt), load_frozen_encoder(str(ckpt))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_episode_arguments(parser)
    parser.add_argument("--novelty-steps", type=int, default=3000)
    args = parser.parse_args()
    ckpt, encoder = frozen_encoder(args)
    print(f"encoder: {ckpt} ({type(encoder).__name__}, latent_dim {encoder.latent_dim})")
    per_seed = [run_seed(encoder, seed, args) for seed in args.seeds]
    print("\n".join(table(per_seed)))


if __name__ == "__main__":
    main()
