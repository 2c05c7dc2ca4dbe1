"""GPU figures: SAC updates eager vs compiled, clip encoders in bf16, novelty scoring, a CLI run.

    python bench/gpu.py                 # on a machine with CUDA
    python bench/gpu.py --quick         # fewer iterations
    python bench/gpu.py --device cpu    # the same measurements on the CPU (to check the script)

Without CUDA (and without ``--device cpu``) it prints the table with every row marked as not
yet measured. Rows:

- SAC gradient updates/s on the state task (batch 256, 256x256 networks), the Lightning loop,
  eager and with ``--model.compile_update=true`` (``reduce-overhead``: CUDA graphs on a GPU);
  target: compiled >= 2x eager.
- R3D-18 and Simple3DCNN at ``(8, 3, 64, 64)``: training clips/s (forward, backward, AdamW) and
  inference clips/s, bf16 autocast and channels-last; target: R3D-18 training >= 3,000 clips/s
  on an H100 or H200.
- Novelty scoring latents/s (``LatentDiffusionNovelty.score``, 10 denoiser passes per latent).
- A short ``python cli.py fit --config configs/dishwashing_video.yaml
  --trainer.accelerator=gpu`` run: its wall-clock and whether it finished.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from v2p.data.rollout import RolloutDataModule  # noqa: E402
from v2p.encoders import build_encoder  # noqa: E402
from v2p.models.novelty import LatentDiffusionNovelty  # noqa: E402
from v2p.models.sac import SACModule  # noqa: E402

CLIP = (8, 3, 64, 64)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _UpdateClock(L.Callback):
    """Seconds from the end of update ``skip`` (compilation and warm-up done) to the last."""

    def __init__(self, skip: int) -> None:
        self.skip, self.start, self.end, self.timed = skip, None, None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.skip:
            synchronize(pl_module.device)
            self.start = time.perf_counter()
        elif trainer.global_step > self.skip:
            self.timed += 1

    def on_train_end(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self.end = time.perf_counter()


def sac_updates_per_second(device: torch.device, compiled: bool, updates: int) -> float:
    L.seed_everything(0, verbose=False)
    # One env step per 64 updates: the loop is dominated by updates, as on a GPU it should be.
    # The replay sits on the GPU, so a batch needs no host-to-device copy.
    dm = RolloutDataModule(
        num_envs=1,
        batch_size=256,
        warmup_steps=256,
        updates_per_step=64,
        updates_per_epoch=10**9,
        buffer_size=10_000,
        replay_on_device=device.type == "cuda",
    )
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    model = SACModule(
        dm.observation_shape,
        dm.action_low,
        dm.action_high,
        gamma=0.9,
        target_entropy=-9.0,
        compile_update=compiled,
        compile_mode=mode,
    )
    skip = 100
    clock = _UpdateClock(skip)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        max_steps=skip + updates,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[clock],
    )
    trainer.fit(model, dm)
    return clock.timed / (clock.end - clock.start)


def encoder_clips_per_second(
    arch: str, device: torch.device, batch: int, iterations: int, train: bool
) -> float:
    torch.manual_seed(0)
    encoder = build_encoder(arch, CLIP, latent_dim=64, channels_last=device.type == "cuda")
    encoder.to(device).train(train)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-4) if train else None
    clips = torch.randint(0, 256, (batch, *CLIP), dtype=torch.uint8, device=device)
    dtype = torch.bfloat16

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype), torch.set_grad_enabled(train):
            z = encoder(clips)
        if train:
            optimizer.zero_grad(set_to_none=True)
            z.float().square().mean().backward()
            optimizer.step()

    for _ in range(3):  # cuDNN autotuning and allocator warm-up
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    synchronize(device)
    return batch * iterations / (time.perf_counter() - start)


@torch.no_grad()
def novelty_latents_per_second(device: torch.device, batch: int, iterations: int) -> float:
    model = LatentDiffusionNovelty(latent_dim=64).to(device).eval()
    z = torch.randn(batch, 64, device=device)
    model.fit_normaliser(z)
    model.calibrate(z)
    model.score(z)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        model.score(z)
    synchronize(device)
    return batch * iterations / (time.perf_counter() - start)


def cli_run(device: torch.device, updates: int) -> tuple[float, bool]:
    with tempfile.TemporaryDirectory() as root:
        argv = [
            sys.executable,
            "cli.py",
            "fit",
            "--config",
            "configs/dishwashing_video.yaml",
            f"--trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
            f"--trainer.max_steps={updates}",
            f"--trainer.default_root_dir={root}",
            "--data.init_args.warmup_steps=1000",
            "--data.init_args.updates_per_epoch=250",
            "--trainer.enable_progress_bar=false",
        ]
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start, result.returncode == 0


def attempt(what: str, measure, *args, **kwargs) -> float | None:
    """Run one measurement; a failure prints its cause and leaves that row unmeasured."""
    try:
        return measure(*args, **kwargs)
    except Exception as error:  # one broken row must not lose the others
        progress(f"{what} failed: {type(error).__name__}: {error}")
        return None


def figure(value: float | None) -> str:
    return "failed (see the log)" if value is None else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    args = parser.parse_args()
    name = args.device or ("cuda" if torch.cuda.is_available() else None)
    rows = [
        "SAC updates/s, eager",
        "SAC updates/s, compiled",
        "R3D-18 train clips/s",
        "R3D-18 inference clips/s",
        "Simple3DCNN train clips/s",
        "Simple3DCNN inference clips/s",
        "novelty scoring latents/s",
        "CLI fit, video config, 500 updates",
    ]
    print("| measure | figure | target | met |\n|---|---:|---:|---|")
    if name is None:
        for row in rows:
            print(f"| {row} | not yet measured (no GPU on this machine) | | |")
        return
    device = torch.device(name)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    n = 1 if args.quick else 5
    progress(f"measuring on {label}, torch {torch.__version__}")
    eager = attempt("eager SAC", sac_updates_per_second, device, False, 200 * n)
    compiled = attempt("compiled SAC", sac_updates_per_second, device, True, 200 * n)
    print(f"| SAC updates/s, eager ({label}) | {figure(eager)} | | |")
    if eager and compiled:
        print(
            f"| SAC updates/s, compiled | {compiled:,.0f} ({compiled / eager:.2f}x) | 2x eager "
            f"| {'yes' if compiled >= 2 * eager else 'no'} |"
        )
    else:
        print(f"| SAC updates/s, compiled | {figure(compiled)} | 2x eager | no |")
    # Clips/s depends on the batch: report a modest and a large one rather than pick the best.
    batches = (64, 256) if device.type == "cuda" else (4,)
    iters = 10 * n if device.type == "cuda" else 2
    for arch, title in (("r3d18", "R3D-18"), ("simple3dcnn", "Simple3DCNN")):
        for batch in batches:
            measure = encoder_clips_per_second
            train = attempt(f"{title} training", measure, arch, device, batch, iters, True)
            infer = attempt(f"{title} inference", measure, arch, device, batch, iters, False)
            target, met = "", ""
            if arch == "r3d18":
                target, met = "3,000", "yes" if train and train >= 3000 else "no"
            print(
                f"| {title} train clips/s, 8x64x64 bf16, batch {batch} | {figure(train)} "
                f"| {target} | {met} |"
            )
            print(
                f"| {title} inference clips/s, 8x64x64 bf16, batch {batch} | {figure(infer)} | | |"
            )
    rate = attempt("novelty scoring", novelty_latents_per_second, device, 4096, 20 * n)
    print(f"| novelty scoring latents/s, batch 4096 | {figure(rate)} | | |")
    updates = 100 if args.quick else 500
    seconds, ok = cli_run(device, updates)
    print(
        f"| CLI fit, video config, {updates} updates | {seconds:.0f} s, "
        f"{'finished' if ok else 'FAILED'} | | |"
    )


if __name__ == "__main__":
    main()
