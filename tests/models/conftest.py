"""Shrunk versions of the real SAC job, for fit / resume / failure tests."""

from __future__ import annotations

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger

from v2p.data.checkpoint_io import ReplayCheckpointIO
from v2p.data.rollout import RolloutDataModule
from v2p.models.sac import SACModule

SMALL_DATA = dict(
    num_envs=2,
    buffer_size=4096,
    batch_size=32,
    warmup_steps=64,
    updates_per_step=2,
    updates_per_epoch=20,
    eval_episodes=2,
)
SMALL_MODEL = dict(latent_dim=16, encoder_hidden_dim=32, hidden_dim=32, reward_scale=0.1, gamma=0.9)


def make_run(
    root,
    env_id="v2p/Dishwashing-v0",
    env_kwargs=None,
    max_steps=40,
    seed=0,
    callbacks=(),
    data_kwargs=None,
    model_kwargs=None,
    **trainer_kwargs,
):
    """A seeded (module, datamodule, trainer) triple, like the CLI builds from a config."""
    L.seed_everything(seed, verbose=False)
    dm = RolloutDataModule(env_id, env_kwargs, **{**SMALL_DATA, **(data_kwargs or {})})
    model = SACModule(
        dm.observation_shape,
        dm.action_low,
        dm.action_high,
        **{**SMALL_MODEL, **(model_kwargs or {})},
    )
    trainer = L.Trainer(
        max_steps=max_steps,
        logger=CSVLogger(root, name="", version=0),
        default_root_dir=root,
        plugins=[ReplayCheckpointIO()],
        callbacks=list(callbacks),
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=5,
        **trainer_kwargs,
    )
    return model, dm, trainer


@pytest.fixture
def run_factory(tmp_path):
    return lambda **kwargs: make_run(tmp_path, **kwargs)


__all__ = ["SMALL_DATA", "SMALL_MODEL", "make_run"]
