"""Encoder pretraining benchmark (issue 4): linear probe of the task state, and SAC on top.

    python bench/pretrain.py                                  # record, pretrain, probe, SAC
    python bench/pretrain.py --skip-sac                       # the probe only

1. Record ``--episodes`` episodes of ``v2p/DishwashingVideo-v0`` with uniform random actions
   (``v2p record``).
2. Pretrain a ``simple2dcnn`` encoder on them with ``configs/pretrain_encoder.yaml``'s module
   and data for ``--epochs`` epochs (temporal contrast plus outcome prediction with weight
   ``--reward-weight``).
3. Linear probe: a ridge regression from frozen latents to the recorded task state, fitted and
   scored on disjoint validation episodes (:func:`v2p.models.probe.linear_probe_r2`), for the
   pretrained encoder and for a randomly initialised encoder of the same architecture.
4. SAC with ``configs/dishwashing_video.yaml`` for ``--sac-updates`` updates, end to end, on
   the frozen pretrained encoder, on a frozen randomly initialised encoder (a control),
   fine-tuning the pretrained encoder, and on the frozen pretrained trunk with a fresh head
   trained by the critic (``freeze_encoder=trunk``, ``reset_encoder_head=true``), same seed:
   expected profit at the same env steps, and the wall-clock of the SAC runs. Two more rows
   give the frozen encoders ``REPLAY_RATIO`` times the config's updates per env step: with the
   whole encoder frozen the replay stores latents, so an update costs an MLP's, and the same
   env steps can afford more of them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from bench.learn import run_v2p  # noqa: E402
from v2p.data.clips import ClipDataModule, random_shift  # noqa: E402
from v2p.envs import DishwashingParams, optimal_policy  # noqa: E402
from v2p.models.pretrain import EncoderPretrainModule  # noqa: E402
from v2p.models.probe import linear_probe_r2  # noqa: E402
from v2p.record import record  # noqa: E402

ENCODER = dict(encoder_arch="simple2dcnn", encoder_channels=32, latent_dim=64)
VIDEO_CONFIG = "configs/dishwashing_video.yaml"
REPLAY_RATIO = 4  # the frozen rows' updates per env step, relative to the config's


def clip_data(recording: Path, seed: int) -> ClipDataModule:
    """The clips of configs/pretrain_encoder.yaml, with a fifth of the episodes held out."""
    data = ClipDataModule(
        [str(recording)],
        clip_len=8,
        frame_size=64,
        batch_size=64,
        clips_per_epoch=6400,
        val_fraction=0.2,
        seed=seed,
    )
    data.setup("fit")
    return data


def pretrain(
    recording: Path,
    epochs: int,
    root: Path,
    seed: int,
    reward_weight: float,
    time_negatives_after: int | None = 16,
) -> tuple[Path, float, ClipDataModule]:
    """Pretrain as configs/pretrain_encoder.yaml does; (checkpoint, seconds, data)."""
    L.seed_everything(seed, verbose=False)
    data = clip_data(recording, seed)
    module = EncoderPretrainModule(
        data.observation_shape,
        action_dim=data.action_dim,
        reward_weight=reward_weight,
        time_negatives_after=time_negatives_after,
        **ENCODER,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=50,
    )
    start = time.perf_counter()
    trainer.fit(module, data)
    seconds = time.perf_counter() - start
    path = root / "pretrained.ckpt"
    trainer.save_checkpoint(path)
    return path, seconds, data


@torch.no_grad()
def probe(encoder: torch.nn.Module, data: ClipDataModule, shift: int = 0) -> tuple[float, int]:
    """(R^2, validation clips) of the linear probe on ``encoder``'s frozen latents; with
    ``shift``, of clips moved by up to ``shift`` pixels (seeded: the same views every time)."""
    encoder.eval()
    torch.manual_seed(1234)
    latents, states, episodes = [], [], []
    for batch in data.val_dataloader():
        latents.append(encoder(random_shift(batch.anchor, shift)))
        states.append(batch.state)
        episodes.append(batch.episode)
    r2 = linear_probe_r2(torch.cat(latents), torch.cat(states), torch.cat(episodes))
    if r2 is None:
        raise RuntimeError("too few validation clips with a task state for the probe")
    return float(r2), sum(len(e) for e in episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--sac-updates",
        type=int,
        default=2250,
        help="SAC updates (2,250 = 20,000 env steps with the video config)",
    )
    parser.add_argument(
        "--reward-weight",
        type=float,
        default=1.0,
        help="outcome-prediction weight (configs/pretrain_encoder.yaml: 1; 0 = contrast only)",
    )
    parser.add_argument(
        "--time-negatives-after",
        type=lambda v: None if v == "none" else int(v),
        default=16,
        help="same-episode negatives this many frames apart (the config: 16; none: off)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sac", action="store_true")
    parser.add_argument("--keep", default=None, help="keep recordings and logs under this folder")
    parser.add_argument("--recording", default=None, help="reuse this recording (v2p record)")
    parser.add_argument("--encoder-ckpt", default=None, help="reuse this pretraining checkpoint")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        recording = Path(args.recording) if args.recording else root / "recording"
        if args.recording is None:
            start = time.perf_counter()
            record(
                str(recording),
                episodes=args.episodes,
                seed=args.seed,
                overwrite=True,
                progress=False,
            )
            progress(f"recorded {args.episodes} episodes in {time.perf_counter() - start:.0f} s")
        if args.encoder_ckpt is None:
            ckpt, pretrain_seconds, data = pretrain(
                recording,
                args.epochs,
                root / "pretrain",
                args.seed,
                args.reward_weight,
                args.time_negatives_after,
            )
            how = (
                f"{args.epochs} epochs, reward_weight {args.reward_weight:g}, "
                f"time_negatives_after {args.time_negatives_after}, {pretrain_seconds:.0f} s"
            )
            progress(f"pretrained in {pretrain_seconds:.0f} s")
        else:
            ckpt, how = Path(args.encoder_ckpt), f"checkpoint {Path(args.encoder_ckpt).name}"
            data = clip_data(recording, args.seed)

        pretrained = EncoderPretrainModule.load_from_checkpoint(ckpt, map_location="cpu").encoder
        random_module = random_init_module(data.observation_shape, args.seed)
        random_init = random_module.encoder
        (r2_pretrained, clips), (r2_random, _) = probe(pretrained, data), probe(random_init, data)
        shifted = probe(pretrained, data, shift=4)[0], probe(random_init, data, shift=4)[0]
        lines = [
            f"Probe on {clips:,} validation clips of the recording's held-out episodes (ridge "
            "fitted on even episodes, scored on odd ones); the second column moves every clip "
            "by up to 4 pixels, as a jittering camera would:",
            "",
            "| encoder | R^2 of the task state | R^2, clips shifted up to 4 px |",
            "|---|---:|---:|",
            f"| simple2dcnn, pretrained ({how}) | {r2_pretrained:.3f} | {shifted[0]:.3f} |",
            f"| simple2dcnn, random init | {r2_random:.3f} | {shifted[1]:.3f} |",
            f"| difference | {r2_pretrained - r2_random:+.3f} | {shifted[0] - shifted[1]:+.3f} |",
        ]
        if not args.skip_sac:
            random_ckpt = save_untrained(random_module, root / "random_init.ckpt")
            lines += ["", *sac_comparison(ckpt, random_ckpt, args.sac_updates, args.seed, root)]
    print("\n".join(lines))


def random_init_module(observation_shape, seed: int) -> EncoderPretrainModule:
    """An untrained module: the probe's random-init encoder and the frozen-random SAC control."""
    L.seed_everything(seed + 1000, verbose=False)
    return EncoderPretrainModule(observation_shape, **ENCODER)


def save_untrained(module: EncoderPretrainModule, path: Path) -> Path:
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def more_updates(ratio: int, updates: int) -> list[str]:
    """Overrides for ``ratio`` times the video config's updates per env step, at the same env
    steps and the same evaluation points (updates per epoch scale alike)."""
    config = yaml.safe_load((ROOT / VIDEO_CONFIG).read_text())["data"]["init_args"]
    return [
        f"--trainer.max_steps={updates * ratio}",
        f"--data.init_args.updates_per_step={config['updates_per_step'] * ratio}",
        f"--data.init_args.updates_per_epoch={config['updates_per_epoch'] * ratio}",
    ]


def sac_comparison(ckpt: Path, random_ckpt: Path, updates: int, seed: int, root: Path) -> list[str]:
    ceiling = optimal_policy(DishwashingParams()).profit
    frozen = ["--model.init_args.freeze_encoder=true"]
    pretrained = [f"--model.init_args.encoder_ckpt={ckpt}"]
    random_init = [f"--model.init_args.encoder_ckpt={random_ckpt}"]
    runs = {
        "end to end (encoder trained by the critic)": [],
        "frozen pretrained encoder": [*pretrained, *frozen],
        "frozen random-init encoder (control)": [*random_init, *frozen],
        "fine-tuned pretrained encoder": pretrained,
        "frozen pretrained trunk, fresh head": [
            *pretrained,
            "--model.init_args.freeze_encoder=trunk",
            "--model.init_args.reset_encoder_head=true",
        ],
    }
    fast = {  # the rows with REPLAY_RATIO times the updates
        f"frozen pretrained encoder, {REPLAY_RATIO}x updates per env step": pretrained,
        f"frozen random-init encoder, {REPLAY_RATIO}x updates (control)": random_init,
    }
    more = more_updates(REPLAY_RATIO, updates)
    runs.update({name: [*encoder, *frozen, *more] for name, encoder in fast.items()})
    lines = [
        f"SAC, {VIDEO_CONFIG}, {updates:,} updates ({REPLAY_RATIO}x as many in the last two "
        f"rows), seed {seed}; ceiling {ceiling:.2f} $/hr. Profit is the mean of the last two "
        "evaluations.",
        "",
        "| encoder | env steps | updates | expected profit $/hr (of ceiling) | SAC wall-clock s |",
        "|---|---:|---:|---:|---:|",
    ]
    results = {}
    for name, overrides in runs.items():
        run_root = root / ("sac-" + "-".join(name.replace(",", "").split()[:5]))
        curve, _ = run_v2p(
            VIDEO_CONFIG, [f"--trainer.max_steps={updates}", *overrides], seed, str(run_root)
        )
        profit = sum(curve.expected_profit[-2:]) / len(curve.expected_profit[-2:])
        results[name] = (profit, curve.seconds[-1])
        progress(f"{name}: {curve.expected_profit} in {curve.seconds[-1]:.0f} s")
        done = updates * (REPLAY_RATIO if name in fast else 1)
        lines.append(
            f"| {name} | {curve.env_steps[-1]:,} | {done:,} | {profit:.2f} "
            f"({profit / ceiling:.1%}) | {curve.seconds[-1]:.0f} |"
        )
    e2e, e2e_s = results["end to end (encoder trained by the critic)"]
    lines.append("")
    for name in (
        "frozen pretrained encoder",
        "frozen pretrained trunk, fresh head",
        f"frozen pretrained encoder, {REPLAY_RATIO}x updates per env step",
    ):
        profit, seconds = results[name]
        lines.append(
            f"{name[0].upper()}{name[1:]} / end to end: {profit / e2e:.1%} of the profit in "
            f"{seconds / e2e_s:.0%} of the SAC wall-clock (pretraining not included)."
        )
    return lines


if __name__ == "__main__":
    main()
