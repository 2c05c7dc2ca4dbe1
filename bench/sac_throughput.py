"""SAC gradient updates per second on CPU: V2P against Stable-Baselines3, side by side.

    pip install -r requirements-bench.txt
    python bench/sac_throughput.py [--updates 3000] [--threads 1]

Same env (``v2p/Dishwashing-v0``, one env), same settings: batch 256, two 256-unit hidden layers
for actor and critics, one gradient update per env step, after the same warm-up. Each library
runs its own full training loop (acting, replay, update, logging), timed from the first
update to the last. V2P also runs its MLP encoder (the critic trains it), which SB3 does not
have: V2P does more work per update. V2P also runs with ``precision="bf16-mixed"`` (Lightning's
CPU autocast; matmuls in bfloat16 where the CPU has AVX512-BF16), which SB3 does not offer.
V2P also runs with ``compile_update=True`` (the SAC losses through ``torch.compile``). The
first SKIP updates of every run are not timed, so compilation is excluded. Target (issue 3):
V2P >= 1.5x SB3.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import lightning as L
import torch

import v2p  # noqa: F401  (registers the ids)

ENV_ID = "v2p/Dishwashing-v0"
BATCH = 256
HIDDEN = 256
WARMUP = 1_000


SKIP = 50  # updates before the clock starts: compilation and allocator warm-up, for both


class _UpdateClock(L.Callback):
    """Wall time from the start of update SKIP to the end of the last."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == SKIP:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def v2p_updates_per_second(
    updates: int, seed: int = 0, precision: str = "32-true", compile_update: bool = False
) -> float:
    from v2p.data.checkpoint_io import ReplayCheckpointIO
    from v2p.data.rollout import RolloutDataModule
    from v2p.models.sac import SACModule

    L.seed_everything(seed, verbose=False)
    dm = RolloutDataModule(
        ENV_ID,
        num_envs=1,
        batch_size=BATCH,
        warmup_steps=WARMUP,
        updates_per_step=1,
        updates_per_epoch=updates,
        buffer_size=100_000,
    )
    model = SACModule(
        dm.observation_shape,
        dm.action_low,
        dm.action_high,
        hidden_dim=HIDDEN,
        hidden_layers=2,
        compile_update=compile_update,
    )
    clock = _UpdateClock()
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            max_steps=SKIP + updates,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=L.pytorch.loggers.CSVLogger(root),
            log_every_n_steps=50,
            callbacks=[clock],
            plugins=[ReplayCheckpointIO()],
            accelerator="cpu",
            precision=precision,
        )
        trainer.fit(model, dm)
    return updates / clock.seconds


def sb3_updates_per_second(updates: int, seed: int = 0) -> float:
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            # Updates start once num_timesteps passes learning_starts.
            if self.num_timesteps == WARMUP + SKIP:
                self.start = time.perf_counter()
            return True

    model = SAC(
        "MlpPolicy",
        gym.make(ENV_ID),
        batch_size=BATCH,
        learning_starts=WARMUP,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs={"net_arch": [HIDDEN, HIDDEN]},
        device="cpu",
        seed=seed,
        verbose=0,
    )
    clock = Clock()
    model.learn(total_timesteps=WARMUP + SKIP + updates, callback=clock)
    return updates / (time.perf_counter() - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3000, help="gradient updates to time")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = {
        ("V2P SACModule (Lightning loop)", "fp32"): lambda: v2p_updates_per_second(args.updates),
        ("V2P SACModule, compile_update=true", "fp32"): lambda: v2p_updates_per_second(
            args.updates, compile_update=True
        ),
        ("V2P SACModule (Lightning loop)", "bf16-mixed"): lambda: v2p_updates_per_second(
            args.updates, precision="bf16-mixed"
        ),
        ("Stable-Baselines3 SAC", "fp32"): lambda: sb3_updates_per_second(args.updates),
    }
    rates = {key: run() for key, run in runs.items()}  # one after another, same process
    theirs = rates[("Stable-Baselines3 SAC", "fp32")]
    threads = f"{args.threads} thread{'s' if args.threads > 1 else ''}"
    print(f"| library | precision | updates/s ({threads}) | ratio to SB3 |")
    print("|---|---|---:|---:|")
    for (name, precision), rate in rates.items():
        print(f"| {name} | {precision} | {rate:,.0f} | {rate / theirs:.2f}x |")


if __name__ == "__main__":
    main()
