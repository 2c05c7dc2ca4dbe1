"""SAC scoring its batches with the novelty model: loaded from a checkpoint, or trained online."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from tests.models.conftest import SMALL_MODEL, make_run
from v2p.models.novelty import LatentDiffusionNovelty
from v2p.models.novelty_scoring import load_novelty_checkpoint
from v2p.models.sac import SACModule

LATENT = SMALL_MODEL["latent_dim"]


def novelty_checkpoint(path, calibrate: bool = True) -> LatentDiffusionNovelty:
    L.seed_everything(0, verbose=False)
    model = LatentDiffusionNovelty(latent_dim=LATENT, hidden_dim=32, num_blocks=1)
    z = torch.randn(64, LATENT)
    model.fit_normaliser(z)
    if calibrate:
        model.calibrate(z)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return model


def test_online_novelty_trains_and_scores_every_batch(tmp_path):
    scored = []

    class KeepOutputs(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            scored.append((outputs["novelty"], outputs["novelty_source"]))

    model, dm, trainer = make_run(
        tmp_path,
        max_steps=30,
        callbacks=[KeepOutputs()],
        model_kwargs={"novelty_online": True, "novelty_batch": 8, "novelty_hidden_dim": 32},
    )
    before = [p.clone() for p in model.novelty.denoiser.parameters()]
    trainer.fit(model, dm)
    assert len(scored) == 30
    novelty, source = scored[-1]
    assert novelty.shape == (8,) and source.shape == (8,) and torch.isfinite(novelty).all()
    assert model.novelty._calibrated
    changed = [
        not torch.equal(a, b)
        for a, b in zip(before, model.novelty.denoiser.parameters(), strict=True)
    ]
    assert all(changed)  # the denoiser is trained by the shared optimiser
    assert "train/novelty" in trainer.logged_metrics or "train/novelty" in trainer.callback_metrics


def test_checkpointed_novelty_model_scores_like_the_original(tmp_path):
    path = tmp_path / "novelty.ckpt"
    original = novelty_checkpoint(path)
    sac = SACModule(
        (7,), [0.0, 0.0], [1.0, 1.0], novelty_ckpt=str(path), freeze_encoder=True, **SMALL_MODEL
    )
    z = torch.randn(10, LATENT)
    torch.testing.assert_close(sac.novelty.score(z), original.score(z))
    assert not any(p.requires_grad for p in sac.novelty.parameters())
    assert len(sac.configure_optimizers().param_groups) == 3  # nothing trains it


def test_bad_novelty_settings_fail_clearly(tmp_path):
    path = tmp_path / "novelty.ckpt"
    novelty_checkpoint(path)
    with pytest.raises(ValueError, match="exclusive"):
        SACModule((7,), [0.0], [1.0], novelty_ckpt=str(path), novelty_online=True, **SMALL_MODEL)
    with pytest.raises(ValueError, match=r"inputs of size 16.*scores inputs of size 8"):
        SACModule((7,), [0.0], [1.0], novelty_ckpt=str(path), **{**SMALL_MODEL, "latent_dim": 8})
    uncalibrated = tmp_path / "uncalibrated.ckpt"
    novelty_checkpoint(uncalibrated, calibrate=False)
    with pytest.raises(ValueError, match="no calibration statistics"):
        SACModule((7,), [0.0], [1.0], novelty_ckpt=str(uncalibrated), **SMALL_MODEL)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_novelty_checkpoint(str(tmp_path / "missing.ckpt"))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, foreign)
    with pytest.raises(ValueError, match="not a LatentDiffusionNovelty checkpoint"):
        load_novelty_checkpoint(str(foreign))
    with pytest.warns(UserWarning, match="fine-tuned encoder"):
        SACModule((7,), [0.0], [1.0], novelty_ckpt=str(path), **SMALL_MODEL)


def test_novelty_weighted_replay_sets_priorities_from_novelty(tmp_path):
    model, dm, trainer = make_run(
        tmp_path,
        max_steps=30,
        model_kwargs={"novelty_online": True, "novelty_batch": 16, "novelty_hidden_dim": 32},
        data_kwargs={"replay_priority": "novelty"},
    )
    trainer.fit(model, dm)
    priority = dm.buffer.state_dict()["priority"][: len(dm.buffer) // dm.num_envs]
    assert len(np.unique(priority)) > 20  # scored transitions carry softplus(novelty)
    assert (priority > 0).all()


def test_novelty_weighted_replay_needs_a_novelty_model(tmp_path):
    model, dm, trainer = make_run(tmp_path, max_steps=5, data_kwargs={"replay_priority": "novelty"})
    with pytest.raises(ValueError, match="replay_priority=novelty needs novelty scores"):
        trainer.fit(model, dm)
    with pytest.raises(ValueError, match="replay_priority must be one of"):
        make_run(tmp_path, data_kwargs={"replay_priority": "td_error"})


def test_the_online_novelty_model_keeps_its_own_hyperparameters_under_the_cli():
    """LightningCLI hands the model's config to every save_hyperparameters() call made while
    it builds the model; the nested novelty model must still record its own."""
    from pathlib import Path

    from v2p.cli import main as cli_main

    config = Path(__file__).resolve().parents[2] / "configs" / "dishwashing_sources.yaml"
    cli = cli_main(["--config", str(config), "--trainer.logger=false"], run=False)
    novelty = cli.model.novelty
    assert novelty.hparams.num_train_timesteps == 1000
    assert "gamma" not in novelty.hparams and cli.model.hparams.novelty_online
    z = torch.randn(8, novelty.latent_dim)
    assert torch.isfinite(novelty.diffusion_loss(z))


def test_online_calibration_follows_the_errors_then_stays_fixed(tmp_path):
    stats = []

    class KeepStatistics(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            stats.append(pl_module.novelty.err_mean.clone())

    model, dm, trainer = make_run(
        tmp_path,
        max_steps=20,
        callbacks=[KeepStatistics()],
        model_kwargs={
            "novelty_online": True,
            "novelty_batch": 16,
            "novelty_hidden_dim": 32,
            "novelty_calibration_updates": 6,
        },
    )
    trainer.fit(model, dm)
    assert not torch.equal(stats[0], stats[4])  # following the errors ...
    for later in stats[5:]:
        assert torch.equal(later, stats[5])  # ... then fixed


def test_online_novelty_can_be_fitted_on_the_platforms_data_only(tmp_path):
    from v2p.data.sources import DataSource

    sources = [DataSource("platform", 1), DataSource("customer", 1, {"dish_mix": {"pot": 1.0}})]
    model_kwargs = {
        "novelty_online": True,
        "novelty_hidden_dim": 32,
        "novelty_calibration_updates": 10**6,
    }
    model, dm, trainer = make_run(
        tmp_path,
        max_steps=20,
        data_kwargs={"sources": sources},
        model_kwargs={**model_kwargs, "novelty_fit_sources": ["platform"]},
    )
    kept = []

    class CountPlatform(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            kept.append(int((batch.sample.source == 0).sum()))

    trainer.callbacks.append(CountPlatform())
    trainer.fit(model, dm)
    scored = 20 * dm.batch_size
    # The normaliser counted the platform's transitions only, which are about half of them.
    assert model.novelty.z_count.item() == sum(kept)
    assert 0.3 * scored < sum(kept) < 0.7 * scored

    with pytest.raises(ValueError, match=r"novelty_fit_sources \['site_9'\].*\['platform', "):
        model, dm, trainer = make_run(
            tmp_path / "bad",
            max_steps=1,
            data_kwargs={"sources": sources},
            model_kwargs={**model_kwargs, "novelty_fit_sources": ["site_9"]},
        )
        trainer.fit(model, dm)
    with pytest.raises(ValueError, match="set novelty_online=true too"):
        SACModule((7,), [0.0], [1.0], novelty_fit_sources=["platform"], **SMALL_MODEL)


def test_weighted_novelty_updates_equal_updates_on_the_kept_latents():
    z = torch.randn(12, LATENT)
    weight = (torch.arange(12) % 3 == 0).float()
    kept = z[weight.bool()]
    a = LatentDiffusionNovelty(latent_dim=LATENT, hidden_dim=32, num_blocks=1)
    b = LatentDiffusionNovelty(latent_dim=LATENT, hidden_dim=32, num_blocks=1)
    b.load_state_dict(a.state_dict())
    for model, args in ((a, (z, weight)), (b, (kept,))):
        model.update_normaliser(*args)
        model.update_statistics(*args)
        model.update_statistics(*args)  # the first sets, the second is the EMA
    for name in ("z_mean", "z_std", "z_count", "err_mean", "err_std"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), msg=name)
    # A batch with nothing to keep changes nothing and trains nothing.
    before = {k: v.clone() for k, v in a.state_dict().items()}
    nothing = torch.zeros(12)
    a.update_normaliser(z, nothing)
    a.update_statistics(z, nothing)
    for name, value in a.state_dict().items():
        torch.testing.assert_close(value, before[name], msg=name)
    assert a.diffusion_loss(z, weight=nothing).item() == 0.0
    # Nor does it count as calibration: the first batch that keeps latents sets the statistics.
    c = LatentDiffusionNovelty(latent_dim=LATENT, hidden_dim=32, num_blocks=1)
    c.load_state_dict(b.state_dict())
    d = LatentDiffusionNovelty(latent_dim=LATENT, hidden_dim=32, num_blocks=1)
    d.load_state_dict(b.state_dict())
    for model in (c, d):
        model.calibrated.fill_(False)
    c.update_statistics(z, nothing)
    c.update_statistics(z, weight)
    d.update_statistics(kept)
    for name in ("err_mean", "err_std", "calibrated"):
        torch.testing.assert_close(getattr(c, name), getattr(d, name), msg=name)
    fresh = LatentDiffusionNovelty(latent_dim=LATENT, hidden_dim=32, num_blocks=1)
    fresh.update_normaliser(z, nothing)  # nothing kept yet: still the identity normaliser
    torch.testing.assert_close(fresh.z_mean, torch.zeros(LATENT))
    torch.testing.assert_close(fresh.z_std, torch.ones(LATENT))
