"""LatentDiffusionNovelty: schedule use, novelty on a synthetic manifold, determinism, budget,
checkpoints, a Lightning fit, the frozen-encoder path and the errors."""

from __future__ import annotations

from typing import NamedTuple

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.functional.classification import binary_auroc

from v2p.encoders import MLPEncoder
from v2p.models import novelty as novelty_module
from v2p.models.novelty import LatentDiffusionNovelty

D = 4
SMALL = dict(hidden_dim=64, num_blocks=2, score_timesteps=(20, 100, 300), score_draws=3)


def ring(n: int, seed: int, radius: float = 3.0) -> torch.Tensor:
    """Points near a circle of ``radius`` in the first two of D dims, (n, D): a 1-D manifold
    whose mean (the centre) is far from the data, so a Gaussian fit would call it typical."""
    gen = torch.Generator().manual_seed(seed)
    angle = torch.rand(n, generator=gen) * 2 * torch.pi
    z = 0.1 * torch.randn(n, D, generator=gen)
    z[:, 0] += radius * torch.cos(angle)
    z[:, 1] += radius * torch.sin(angle)
    return z


def train(model: LatentDiffusionNovelty, steps: int, seed: int = 0) -> None:
    model.fit_normaliser(ring(2048, seed=100))
    opt = model.configure_optimizers()
    torch.manual_seed(seed)
    for i in range(steps):
        loss = model.diffusion_loss(ring(256, seed=1000 + i))
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture(scope="module")
def trained() -> LatentDiffusionNovelty:
    torch.manual_seed(0)
    model = LatentDiffusionNovelty(latent_dim=D, **SMALL)
    train(model, steps=1000)
    model.calibrate(ring(512, seed=1))
    return model


def auroc(inliers: torch.Tensor, outliers: torch.Tensor) -> float:
    """AUROC of telling ``outliers`` (positives) from ``inliers`` by a higher score."""
    labels = torch.cat([torch.zeros(len(inliers)), torch.ones(len(outliers))]).long()
    scores = torch.cat([inliers, outliers]).double()
    # binary_auroc takes scores outside [0, 1] for logits and applies a sigmoid, which ties
    # every large score at 1.0; a min-max rescale keeps the order (the AUROC) and avoids that.
    scores = (scores - scores.min()) / (scores.max() - scores.min()).clamp_min(1e-300)
    return float(binary_auroc(scores, labels))


# ------------------------------------------------------------------------------- schedule


def test_schedule_is_not_clipped_and_timesteps_are_long_on_the_latents_device():
    model = LatentDiffusionNovelty(latent_dim=1, **SMALL)
    assert model.scheduler.config.clip_sample is False
    assert model.sampling_scheduler.config.clip_sample is False
    x0 = torch.full((6, 1), 10.0)  # 1-D latents far outside [-1, 1]
    t = torch.tensor([0, 1, 10, 100, 500, 999])
    noisy = model.add_noise(x0, torch.zeros_like(x0), t)
    assert noisy.shape == (6, 1) and noisy.dtype == x0.dtype
    assert noisy[:4].min() > 1.0  # sqrt(alpha_bar_t) * 10, not clamped to 1
    abar = model.scheduler.alphas_cumprod[t]
    torch.testing.assert_close(noisy[:, 0], 10.0 * abar.sqrt())

    seen = []
    model.denoiser.register_forward_pre_hook(lambda mod, args: seen.append(args))
    model.diffusion_loss(torch.randn(5, 1))
    x, steps = seen[0]
    assert steps.dtype == torch.long and steps.shape == (5,) and steps.device == x.device
    assert 0 <= int(steps.min()) and int(steps.max()) < model.hparams.num_train_timesteps
    assert model.score_t.dtype == torch.long


def test_double_precision_keeps_the_latents_dtype(trained):
    model = LatentDiffusionNovelty(latent_dim=D, **SMALL).double()
    model.calibrate(ring(64, seed=2).double())
    assert model.diffusion_loss(ring(8, seed=3).double()).dtype == torch.float64
    assert model.score(ring(8, seed=3).double()).dtype == torch.float64
    assert trained.score(ring(8, seed=3)).dtype == torch.float32


# -------------------------------------------------------------------------------- scoring


def test_score_is_higher_off_the_training_manifold(trained):
    inliers = trained.score(ring(1000, seed=7))
    centre = 0.3 * torch.randn(1000, D, generator=torch.Generator().manual_seed(8))
    wide = ring(1000, seed=9, radius=4.5)  # a near shift: a 50% larger ring
    assert inliers.mean().abs() < 0.5  # z-scored on in-distribution latents
    far = trained.score(centre)
    near = trained.score(wide)
    assert far.mean() > inliers.mean() + 2.0
    assert auroc(inliers, far) > 0.95
    assert auroc(inliers, near) > 0.9


def test_score_is_deterministic_and_independent_of_the_batch(trained):
    z = ring(64, seed=11)
    first = trained.score(z)
    torch.testing.assert_close(trained.score(z), first, rtol=0, atol=0)
    torch.testing.assert_close(trained.score(z[:5]), first[:5])
    torch.testing.assert_close(trained.score(z.flip(0)), first.flip(0))


def test_score_spends_at_most_ten_denoiser_evaluations_per_sample(trained):
    rows = []
    handle = trained.denoiser.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
    try:
        trained.score(ring(32, seed=12))
    finally:
        handle.remove()
    assert sum(rows) / 32 <= 10
    assert sum(rows) == 32 * len(SMALL["score_timesteps"]) * SMALL["score_draws"]
    with pytest.raises(ValueError, match="at most 10"):
        LatentDiffusionNovelty(latent_dim=D, score_timesteps=(1, 2, 3, 4), score_draws=3)


def test_update_statistics_tracks_the_errors_as_an_ema(trained):
    model = LatentDiffusionNovelty(latent_dim=D, **SMALL)
    model.load_state_dict(trained.state_dict())
    model.update_statistics(ring(256, seed=13))
    before = model.err_mean.clone()
    far = 0.3 * torch.randn(256, D)
    model.update_statistics(far)
    moved = model.err_mean - before
    full = model.denoising_errors(far).mean(0) - before
    torch.testing.assert_close(moved, model.hparams.stats_momentum * full)


def test_update_online_steps_the_denoiser_and_calibrates():
    model = LatentDiffusionNovelty(latent_dim=D, **SMALL)
    opt = model.configure_optimizers()
    weights = model.denoiser.inp.weight.clone()
    loss = model.update_online(ring(64, seed=14), opt)
    assert loss.dim() == 0 and not loss.requires_grad
    assert not torch.equal(weights, model.denoiser.inp.weight)
    assert model.score(ring(4, seed=15)).shape == (4,)


def test_sample_returns_latents_in_the_data_scale(trained):
    x = trained.sample(256, num_inference_steps=20, seed=0)
    assert x.shape == (256, D) and torch.isfinite(x).all()
    radius = x[:, :2].norm(dim=1)
    assert 2.0 < float(radius.median()) < 4.0  # near the ring of radius 3, not at the origin


# --------------------------------------------------------------------- Lightning and ckpts


def latent_loader(n: int, seed: int, shuffle: bool) -> DataLoader:
    return DataLoader(TensorDataset(ring(n, seed=seed)), batch_size=128, shuffle=shuffle)


def test_fit_lowers_the_loss_and_the_checkpoint_keeps_the_statistics(tmp_path):
    L.seed_everything(0, workers=True)
    model = LatentDiffusionNovelty(latent_dim=D, normaliser_batches=4, **SMALL)
    held_out = ring(512, seed=21)

    @torch.no_grad()
    def loss() -> float:
        return float(model.diffusion_loss(held_out, generator=torch.Generator().manual_seed(0)))

    model.fit_normaliser(held_out)  # only to measure the starting loss on the same scale
    start = loss()
    model.normaliser_frozen.fill_(False)
    model._normaliser_frozen = False
    trainer = L.Trainer(
        max_steps=96,  # 3 epochs of 32 batches, validated after each (the last at the end)
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, latent_loader(4096, 22, True), latent_loader(512, 23, False))
    assert model._normaliser_frozen and model._calibrated
    # The statistics of the last validation are those of the val latents under the final model.
    val_err = model.denoising_errors(ring(512, seed=23))
    torch.testing.assert_close(model.err_mean, val_err.mean(0))
    torch.testing.assert_close(model.err_std, val_err.std(0))
    assert loss() < 0.7 * start
    assert "val/loss" in trainer.callback_metrics and "train/loss" in trainer.callback_metrics

    path = tmp_path / "novelty.ckpt"
    trainer.save_checkpoint(path)
    loaded = LatentDiffusionNovelty.load_from_checkpoint(path)
    for name in ("z_mean", "z_std", "err_mean", "err_std", "calibrated", "normaliser_frozen"):
        torch.testing.assert_close(getattr(loaded, name), getattr(model, name))
    assert loaded._calibrated and loaded._normaliser_frozen
    z = ring(16, seed=24)
    torch.testing.assert_close(loaded.score(z), model.score(z))


# ----------------------------------------------------------------------- frozen encoder


class FakeClipBatch(NamedTuple):
    anchor: torch.Tensor
    positive: torch.Tensor


@pytest.fixture
def with_encoder(monkeypatch):
    """Stands in for v2p.models.pretrain.load_pretrained_encoder: an MLP encoder of (5,) obs."""

    def load(path: str) -> torch.nn.Module:
        if path != "enc.ckpt":
            raise ValueError(f"no encoder checkpoint at {path!r}")
        torch.manual_seed(0)
        return MLPEncoder(5, latent_dim=D, hidden_dim=16).eval().requires_grad_(False)

    monkeypatch.setattr(novelty_module, "load_frozen_encoder", load)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_clip_batches_train_through_the_frozen_encoder(with_encoder):
    model = LatentDiffusionNovelty(encoder_ckpt="enc.ckpt", observation_shape=(5,), **SMALL)
    assert model.latent_dim == D
    model.train()
    assert not model.encoder.training
    assert all(not p.requires_grad for p in model.encoder.parameters())
    opt_params = {id(p) for g in model.configure_optimizers().param_groups for p in g["params"]}
    assert opt_params == {id(p) for p in model.denoiser.parameters()}
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}

    obs = torch.randn(32, 5)
    batch = FakeClipBatch(anchor=obs, positive=obs)
    loss = model.training_step(batch, 0)
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key])

    model.calibrate(model.encode(obs))
    torch.testing.assert_close(model.score_observations(obs), model.score(model.encode(obs)))


# --------------------------------------------------------------------------------- errors


def test_errors_name_the_bad_value(with_encoder):
    model = LatentDiffusionNovelty(latent_dim=D, **SMALL)
    with pytest.raises(RuntimeError, match="calibrat"):
        model.score(ring(4, seed=0))
    with pytest.raises(ValueError, match=r"shape \(B, 4\), got \(4, 3\)"):
        model.diffusion_loss(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"shape \(B, 4\)"):
        model.training_step(torch.zeros(4, 3), 0)
    with pytest.raises(ValueError, match="latent_dim or encoder_ckpt"):
        LatentDiffusionNovelty()
    with pytest.raises(ValueError, match=r"observation_shape \(8, 3, 64, 64\).*expects \(5,\)"):
        LatentDiffusionNovelty(encoder_ckpt="enc.ckpt", observation_shape=(8, 3, 64, 64))
    with pytest.raises(ValueError, match="latent_dim=7 does not match"):
        LatentDiffusionNovelty(encoder_ckpt="enc.ckpt", latent_dim=7)
    with pytest.raises(ValueError, match="pass encoder_ckpt"):
        LatentDiffusionNovelty(latent_dim=D, observation_shape=(8, 3, 64, 64))
    with pytest.raises(ValueError, match=r"no encoder checkpoint at 'missing\.ckpt'"):
        LatentDiffusionNovelty(encoder_ckpt="missing.ckpt")
    with pytest.raises(RuntimeError, match="no encoder"):
        model.score_observations(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"score_timesteps .* in \[0, 1000\)"):
        LatentDiffusionNovelty(latent_dim=D, score_timesteps=(1000,))
