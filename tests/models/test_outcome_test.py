"""Episode-level novelty: the outcome test of a shift's summed outcomes, the mean step score's
episode z, and the transition novelty model that trains and calibrates both."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.functional.classification import binary_auroc

from v2p.models.novelty import LatentDiffusionNovelty
from v2p.models.novelty_scoring import load_novelty_checkpoint
from v2p.models.outcome_test import OutcomeResidualTest, wilson_hilferty

D, A, STEPS = 3, 2, 50  # latent and action sizes; steps per episode
SMALL = dict(hidden_dim=64, num_blocks=2, score_timesteps=(20, 100, 300), score_draws=3)


def transitions(episodes: int, seed: int, faster: float = 0.0, offset: float = 0.0):
    """(episodes * STEPS, 2 D + A + 2) transitions and their episode ids. The reward is
    linear in the latent and action plus noise; ``faster`` adds that many noise sds to every
    step's reward (a dynamics shift, invisible per step), ``offset`` moves the latents (an
    appearance shift)."""
    gen = torch.Generator().manual_seed(seed)
    n = episodes * STEPS
    z = torch.randn(n, D, generator=gen) + offset
    action = torch.rand(n, A, generator=gen)
    noise = torch.randn(n, 2, generator=gen)
    reward = 2.0 * action[:, 0] + z[:, 0] + noise[:, 0] + faster
    err = 0.5 * action[:, 1] + 0.3 * noise[:, 0] + 0.5 * noise[:, 1]  # correlated with reward
    z_next = z + 0.1 * torch.randn(n, D, generator=gen)
    features = torch.cat([z, action, reward[:, None], err[:, None], z_next], dim=1)
    return features, torch.arange(episodes).repeat_interleave(STEPS)


def auroc(inliers: torch.Tensor, outliers: torch.Tensor) -> float:
    labels = torch.cat([torch.zeros(len(inliers)), torch.ones(len(outliers))]).long()
    scores = torch.cat([inliers, outliers]).double()
    scores = (scores - scores.min()) / (scores.max() - scores.min()).clamp_min(1e-300)
    return float(binary_auroc(scores, labels))


@pytest.fixture(scope="module")
def trained() -> LatentDiffusionNovelty:
    torch.manual_seed(0)
    model = LatentDiffusionNovelty(
        latent_dim=2 * D + A + 2, inputs="transition", action_dim=A, **SMALL
    )
    train, _ = transitions(80, seed=1)
    model.fit_normaliser(train)
    opt = model.configure_optimizers()
    gen = torch.Generator().manual_seed(2)
    for _ in range(600):
        model.update_online(train[torch.randint(0, len(train), (256,), generator=gen)], opt)
    model.calibrate(transitions(40, seed=3)[0])
    return model


# ------------------------------------------------------------------------ the outcome test


def test_wilson_hilferty_maps_chi_squared_quantiles_to_normal_ones():
    # chi-squared(2) has CDF 1 - exp(-x / 2): its 50% and 97.5% quantiles.
    median, upper = -2 * torch.log(torch.tensor(0.5)), -2 * torch.log(torch.tensor(0.025))
    z = wilson_hilferty(torch.stack([median, upper]), 2)
    torch.testing.assert_close(z, torch.tensor([0.0, 1.96]), atol=0.03, rtol=0)
    assert torch.all(wilson_hilferty(torch.tensor([0.0, 1.0, 4.0, 9.0]), 2).diff() > 0)


def test_the_statistic_is_the_whitened_norm_of_the_summed_residuals():
    test = OutcomeResidualTest(latent_dim=1, action_dim=1, hidden_dim=4)
    torch.nn.init.zeros_(test.net[-1].weight)
    torch.nn.init.zeros_(test.net[-1].bias)  # predicts 0: the residual is the outcome
    cov = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    test.set_moments(torch.zeros(2), cov)
    n, s = 25, 0.2

    def z_of(shift: tuple[float, float]) -> float:
        x = torch.zeros(n, 5)
        x[:, 2:4] = torch.tensor(shift)
        return float(test.episode_z(x, torch.zeros(n, dtype=torch.long)))

    total = n * torch.tensor([s, -s])
    chi2 = total @ torch.linalg.inv(cov + 1e-4 * torch.eye(2)) @ total / n  # with the ridge
    assert z_of((s, -s)) == pytest.approx(float(wilson_hilferty(chi2, 2)), rel=1e-5)
    # Against the columns' correlation the same shift is far more novel than along it.
    assert z_of((s, -s)) > z_of((s, s)) + 2.0


def test_a_shift_invisible_per_step_is_seen_per_episode(trained):
    inliers, ids = transitions(40, seed=4)
    faster, _ = transitions(40, seed=5, faster=0.45)
    per_episode = trained.episode_statistics(inliers, ids)
    shifted = trained.episode_statistics(faster, ids)
    one_step = torch.arange(len(inliers))  # each step an episode of its own
    step_in = trained.episode_statistics(inliers, one_step)[:, 1]
    step_out = trained.episode_statistics(faster, one_step)[:, 1]
    assert auroc(step_in, step_out) < 0.6
    assert auroc(per_episode[:, 1], shifted[:, 1]) > 0.95
    # On in-distribution episodes the outcome z is about standard normal.
    assert abs(float(per_episode[:, 1].mean())) < 0.5
    assert 0.5 < float(per_episode[:, 1].std()) < 1.6


def test_episode_scores_take_the_larger_of_appearance_and_outcome(trained):
    inliers, ids = transitions(40, seed=6)
    looks, _ = transitions(40, seed=7, offset=2.5)
    statistics = trained.episode_statistics(looks, ids)
    assert statistics.shape == (40, 2)
    torch.testing.assert_close(trained.episode_scores(looks, ids), statistics.amax(1))
    normal = trained.episode_statistics(inliers, ids)
    assert auroc(normal[:, 0], statistics[:, 0]) > 0.95  # the mean step score sees the looks
    # The appearance z: sqrt(n) times the mean step score over its calibration spread.
    scores = trained.score(inliers[:STEPS])
    expected = scores.mean() * STEPS**0.5 / trained.score_std
    torch.testing.assert_close(normal[0, 0], expected)


def test_calibration_sets_the_score_spread_and_the_residual_moments(trained):
    calib, _ = transitions(40, seed=3)
    torch.testing.assert_close(trained.score(calib).std(), trained.score_std, rtol=1e-4, atol=0)
    residuals = trained.outcome_test.residuals(trained.normalise(calib))
    torch.testing.assert_close(trained.outcome_test.residual_mean, residuals.mean(0))
    torch.testing.assert_close(trained.outcome_test.residual_cov, torch.cov(residuals.T))


def test_online_statistics_track_the_score_spread(trained):
    model = LatentDiffusionNovelty(
        latent_dim=2 * D + A + 2, inputs="transition", action_dim=A, **SMALL
    )
    model.load_state_dict(trained.state_dict())
    model.calibrated.fill_(False)  # the next update sets the statistics outright
    batch, _ = transitions(20, seed=8)
    model.update_statistics(batch)
    torch.testing.assert_close(model.score(batch).std(), model.score_std, rtol=1e-3, atol=0)
    residuals = model.outcome_test.residuals(model.normalise(batch))
    torch.testing.assert_close(model.outcome_test.residual_cov, torch.cov(residuals.T))
    # Later batches move the residual moments by the EMA rate.
    shifted, _ = transitions(20, seed=9, faster=1.0)
    before = model.outcome_test.residual_mean.clone()
    model.update_statistics(shifted)
    full = model.outcome_test.residuals(model.normalise(shifted)).mean(0) - before
    moved = model.outcome_test.residual_mean - before
    torch.testing.assert_close(moved, model.hparams.stats_momentum * full)


def test_observation_episodes_have_no_outcome_column():
    model = LatentDiffusionNovelty(latent_dim=D, **SMALL)
    z = torch.randn(40, D)
    model.calibrate(z)
    ids = torch.arange(4).repeat_interleave(10)
    statistics = model.episode_statistics(z, ids)
    assert model.outcome_test is None and torch.isnan(statistics[:, 1]).all()
    torch.testing.assert_close(model.episode_scores(z, ids), statistics[:, 0])
    assert {id(p) for p in model.trainable_parameters()} == {
        id(p) for p in model.denoiser.parameters()
    }


# ------------------------------------------------------------------ Lightning and checkpoints


def test_validation_calibrates_the_outcome_test_and_the_checkpoint_keeps_it(tmp_path):
    L.seed_everything(0, workers=True)
    model = LatentDiffusionNovelty(
        latent_dim=2 * D + A + 2, inputs="transition", action_dim=A, normaliser_batches=4, **SMALL
    )
    opt_params = {id(p) for g in model.configure_optimizers().param_groups for p in g["params"]}
    assert {id(p) for p in model.outcome_test.parameters()} <= opt_params
    train, _ = transitions(80, seed=10)
    val, val_ids = transitions(20, seed=11)
    trainer = L.Trainer(
        max_steps=64,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    loaders = [
        DataLoader(TensorDataset(x), batch_size=128, shuffle=s)
        for x, s in ((train, True), (val, False))
    ]
    trainer.fit(model, *loaders)
    residuals = model.outcome_test.residuals(model.normalise(val))
    torch.testing.assert_close(model.outcome_test.residual_mean, residuals.mean(0))
    torch.testing.assert_close(model.score(val).std(), model.score_std, rtol=1e-4, atol=0)
    assert "train/outcome_loss" in trainer.callback_metrics
    assert "val/outcome_loss" in trainer.callback_metrics

    path = tmp_path / "novelty.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_novelty_checkpoint(str(path))
    torch.testing.assert_close(
        loaded.episode_scores(val, val_ids), model.episode_scores(val, val_ids)
    )


def test_checkpoints_from_before_episode_scores_fail_clearly(tmp_path, trained):
    state = {k: v for k, v in trained.state_dict().items() if k != "score_std"}
    model = LatentDiffusionNovelty(
        latent_dim=2 * D + A + 2, inputs="transition", action_dim=A, **SMALL
    )
    model.load_state_dict(state)  # the step scores still work ...
    z, ids = transitions(2, seed=12)
    torch.testing.assert_close(model.score(z), trained.score(z))
    with pytest.raises(RuntimeError, match="predates episode scores"):
        model.episode_statistics(z, ids)  # ... the episode scores need a recalibration

    old = {k: v for k, v in state.items() if not k.startswith("outcome_test.")}
    path = tmp_path / "old_transitions.ckpt"
    torch.save({"hyper_parameters": dict(trained.hparams), "state_dict": old}, path)
    with pytest.raises(ValueError, match="before the outcome test"):
        load_novelty_checkpoint(str(path))


def test_transitions_need_the_action_size():
    with pytest.raises(ValueError, match="inputs=transition needs action_dim"):
        LatentDiffusionNovelty(latent_dim=10, inputs="transition")
    with pytest.raises(ValueError, match="11 features are not transitions of 2-D actions"):
        LatentDiffusionNovelty(latent_dim=11, inputs="transition", action_dim=2)
    model = LatentDiffusionNovelty(latent_dim=D, **SMALL)
    model.calibrate(torch.randn(4, D))
    with pytest.raises(ValueError, match=r"episode must be \(4,\) long ids, got \(3,\)"):
        model.episode_statistics(torch.randn(4, D), torch.zeros(3, dtype=torch.long))
