"""SAC on a frozen clip encoder: replaying pixels against replaying stored latents.

    python bench/frozen_replay.py                       # simple2dcnn, simple3dcnn, r3d18
    python bench/frozen_replay.py --archs r3d18 --updates 20

With ``freeze_encoder: true`` the encoder is a fixed function, so the replay can store the
latent of each clip once, when the clip is added (``cache_frame_features``, the default),
instead of its frames; every update then runs the actor and critics only. With
``cache_frame_features=false`` it stores pixels and runs the frozen CNN over 2 x B clips in
every update. Each row is ``configs/dishwashing_video.yaml`` through the CLI (random-init
encoder, 16 envs, batch 64, one update per 8 env steps), timed from the first update to the
end of fit, after a short warm-up and with no evaluation: updates/s includes stepping the envs
and acting, which runs the encoder on the 16 envs' clips either way.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from v2p.cli import main as cli_main  # noqa: E402


class _UpdateClock(L.Callback):
    """Seconds from the first training batch (after the warm-up) to the end of fit."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.seconds = float("nan")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - (self.start or time.perf_counter())


def updates_per_second(arch: str, cache: bool, updates: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        cli = cli_main(
            [
                "--config",
                str(ROOT / "configs/dishwashing_video.yaml"),
                "--seed_everything=0",
                f"--trainer.default_root_dir={root}",
                f"--trainer.max_steps={updates}",
                "--trainer.limit_val_batches=0",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
                "--trainer.logger=false",
                "--trainer.enable_checkpointing=false",
                "--trainer.callbacks=null",
                f"--model.init_args.encoder_arch={arch}",
                "--model.init_args.freeze_encoder=true",
                f"--model.init_args.cache_frame_features={str(cache).lower()}",
                "--data.init_args.warmup_steps=256",
                f"--data.init_args.updates_per_epoch={updates}",
            ],
            run=False,
        )
        clock = _UpdateClock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, cli.datamodule)
        stored = "latents" if cli.datamodule.buffer.clip_features else "pixels"
        assert stored == ("latents" if cache else "pixels"), stored
    return updates / clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=["simple2dcnn", "simple3dcnn", "r3d18"])
    parser.add_argument("--updates", type=int, default=200, help="updates per timed run")
    parser.add_argument(
        "--r3d18-pixel-updates",
        type=int,
        default=10,
        help="updates of the r3d18 pixel run (each runs R3D-18 over 128 clips on the CPU)",
    )
    args = parser.parse_args()

    print("| encoder (frozen, random init) | replay stores | updates/s | speed-up |")
    print("|---|---|---:|---:|")
    for arch in args.archs:
        pixel_updates = args.r3d18_pixel_updates if arch == "r3d18" else args.updates
        pixels = updates_per_second(arch, cache=False, updates=pixel_updates)
        progress(f"{arch} pixels: {pixels:.2f} updates/s")
        latents = updates_per_second(arch, cache=True, updates=args.updates)
        progress(f"{arch} latents: {latents:.2f} updates/s")
        print(f"| {arch} | pixels | {pixels:,.2f} | 1.0x |")
        print(f"| {arch} | clip latents | {latents:,.2f} | {latents / pixels:.1f}x |")


if __name__ == "__main__":
    main()
