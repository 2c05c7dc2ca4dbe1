"""Encoder pretraining: the contrastive objective, the probe, and SAC starting from the result."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from tests.models.conftest import make_run
from v2p.cli import main as cli_main
from v2p.data.clips import ClipDataModule
from v2p.models.pretrain import EncoderPretrainModule, load_pretrained_encoder, time_retrieval
from v2p.models.probe import linear_probe_r2
from v2p.models.sac import SACModule
from v2p.record import record

ROOT = Path(__file__).resolve().parents[2]
CLIP = (4, 3, 32, 32)
SMALL = dict(encoder_arch="simple2dcnn", encoder_channels=8, latent_dim=16, projection_dim=16)
VIDEO_ENV = {"frames": 4, "height": 32, "width": 32}


def pretrain_checkpoint(path, **kwargs) -> EncoderPretrainModule:
    """A pretraining module with non-default weights, saved as a Lightning checkpoint."""
    L.seed_everything(0, verbose=False)
    module = EncoderPretrainModule(CLIP, **{**SMALL, **kwargs})
    with torch.no_grad():
        for p in module.encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))  # so loading is distinguishable from a fresh init
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return module


def test_contrastive_loss_masks_other_clips_of_the_same_episode():
    module = EncoderPretrainModule(CLIP, **SMALL)
    clips = torch.randint(0, 256, (6, *CLIP), dtype=torch.uint8)
    episode = torch.tensor([0, 0, 1, 1, 2, 2])
    loss, accuracy = module.contrastive_loss(clips, clips, episode)
    assert torch.isfinite(loss) and 0.0 <= accuracy <= 1.0
    # With every clip in one episode only the positive is left in each row: the loss is zero.
    loss_one_episode, accuracy_one = module.contrastive_loss(clips, clips, torch.zeros(6).long())
    assert loss_one_episode.item() == pytest.approx(0.0, abs=1e-6) and accuracy_one == 1.0


def test_clips_of_one_episode_far_apart_in_time_are_negatives():
    module = EncoderPretrainModule(CLIP, time_negatives_after=16, **SMALL)
    clips = torch.randint(0, 256, (6, *CLIP), dtype=torch.uint8)
    one_episode, gap = torch.zeros(6).long(), torch.ones(6).long()
    # Anchors 20 frames apart: every other clip of the batch is a negative, the loss is not 0.
    far = torch.arange(6) * 20
    loss, accuracy = module.contrastive_loss(clips, clips, one_episode, time=far, gap=gap)
    assert loss.item() > 0.1 and accuracy.item() < 1.0
    # Anchors 2 frames apart: all nearer than 16 frames, masked as before (loss 0).
    near = torch.arange(6) * 2
    loss, _ = module.contrastive_loss(clips, clips, one_episode, time=near, gap=gap)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # time_negatives_after=None: the episode's clips are never negatives, whatever the time.
    old = EncoderPretrainModule(CLIP, time_negatives_after=None, **SMALL)
    loss, _ = old.contrastive_loss(clips, clips, one_episode, time=far, gap=gap)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="time_negatives_after must be an integer >= 1"):
        EncoderPretrainModule(CLIP, time_negatives_after=0, **SMALL)


def test_time_retrieval_counts_hits_among_distant_clips_of_the_episode():
    anchor = torch.eye(4)
    episode, time, gap = torch.zeros(4).long(), torch.tensor([0, 20, 40, 41]), torch.ones(4).long()
    # Positives equal to their anchors: each is nearer than any distractor (orthogonal).
    hits, chance, scored = time_retrieval(anchor, anchor.clone(), episode, time, gap)
    # Anchor 0's distractors start at 20, 40, 41 and their positives at 21, 41, 42: 6 clips.
    assert scored == 4 and hits == 4
    assert chance.item() == pytest.approx(1 / 7 + 1 / 7 + 1 / 5 + 1 / 5)
    # Positives pointing away: no hits.
    hits, _, _ = time_retrieval(anchor, -anchor, episode, time, gap)
    assert hits == 0
    # Another episode's clips are never distractors: none left, nothing scored.
    _, _, scored = time_retrieval(anchor, anchor, torch.arange(4), time, gap)
    assert scored == 0


def test_momentum_target_moves_toward_the_online_encoder():
    module = EncoderPretrainModule(CLIP, momentum=0.5, **SMALL)
    with torch.no_grad():
        for p in module.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in module.target_encoder.parameters()]
    module.on_train_batch_end(None, None, 0)
    after = module.target_encoder.parameters()
    for b, t, o in zip(before, after, module.encoder.parameters(), strict=True):
        torch.testing.assert_close(t, 0.5 * b + 0.5 * o)


def test_linear_probe_scores_a_linear_signal_and_rejects_noise():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(400, 8, generator=g)
    episodes = torch.arange(400) // 10
    linear = latents @ torch.randn(8, 3, generator=g)
    noise = torch.randn(400, 3, generator=g)
    assert linear_probe_r2(latents, linear, episodes) > 0.99
    assert linear_probe_r2(latents, noise, episodes) < 0.1
    # A constant state dimension and unknown (NaN) rows neither crash nor count.
    states = torch.cat([linear, torch.ones(400, 1)], dim=1)
    states[:50] = float("nan")
    assert linear_probe_r2(latents, states, episodes) > 0.99
    assert linear_probe_r2(latents, torch.empty(400, 0), episodes) is None


def test_bad_hyper_parameters_are_named():
    with pytest.raises(ValueError, match="temperature"):
        EncoderPretrainModule(CLIP, temperature=0.0)
    with pytest.raises(ValueError, match="momentum"):
        EncoderPretrainModule(CLIP, momentum=1.5)


def test_sac_starts_from_the_pretrained_encoder(tmp_path):
    path = tmp_path / "pretrain.ckpt"
    pretrained = pretrain_checkpoint(path)
    sac = SACModule(CLIP, [0.0, 0.0], [1.0, 1.0], encoder_ckpt=str(path), **_sac_encoder())
    fresh = SACModule(CLIP, [0.0, 0.0], [1.0, 1.0], **_sac_encoder())
    clips = torch.randint(0, 256, (5, *CLIP), dtype=torch.uint8)
    pretrained.eval(), sac.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(sac.encoder(clips), pretrained.encoder(clips), rtol=0, atol=0)
        assert not torch.allclose(fresh.encoder(clips), pretrained.encoder(clips))
    # load_pretrained_encoder also reads a SAC checkpoint's encoder.
    assert type(load_pretrained_encoder(path)).__name__ == "Simple2DCNN"


def test_frozen_encoder_keeps_its_weights_through_sac_updates(tmp_path):
    path = tmp_path / "pretrain.ckpt"
    pretrained = pretrain_checkpoint(path)
    model, dm, trainer = _video_run(tmp_path, encoder_ckpt=str(path), freeze_encoder=True)
    critic_before = [p.clone() for p in model.critic.parameters()]
    trainer.fit(model, dm)
    assert trainer.global_step == 6
    for name, p in model.encoder.state_dict().items():
        torch.testing.assert_close(p, pretrained.encoder.state_dict()[name], rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert any(  # the rest of SAC did train
        not torch.equal(a, b) for a, b in zip(model.critic.parameters(), critic_before, strict=True)
    )


def test_unfrozen_encoder_is_fine_tuned(tmp_path):
    path = tmp_path / "pretrain.ckpt"
    pretrained = pretrain_checkpoint(path)
    model, dm, trainer = _video_run(tmp_path, encoder_ckpt=str(path), freeze_encoder=False)
    trainer.fit(model, dm)
    changed = [
        not torch.equal(p, pretrained.encoder.state_dict()[name])
        for name, p in model.encoder.state_dict().items()
    ]
    assert any(changed)


def test_trunk_freezing_trains_only_a_fresh_head(tmp_path):
    path = tmp_path / "pretrain.ckpt"
    pretrained = pretrain_checkpoint(path).encoder
    model, dm, trainer = _video_run(
        tmp_path, encoder_ckpt=str(path), freeze_encoder="trunk", reset_encoder_head=True
    )
    fresh_head = [p.clone() for p in model.encoder.head.parameters()]
    for mine, loaded in zip(fresh_head, pretrained.head.parameters(), strict=True):
        assert not torch.equal(mine, loaded)  # re-initialised, not the checkpoint's
    trainer.fit(model, dm)
    for mine, loaded in zip(
        model.encoder.trunk.parameters(), pretrained.trunk.parameters(), strict=True
    ):
        torch.testing.assert_close(mine, loaded, rtol=0, atol=0)
    assert all(  # the critic trained the head
        not torch.equal(a, b)
        for a, b in zip(model.encoder.head.parameters(), fresh_head, strict=True)
    )


def test_a_fixed_trunk_has_the_replay_store_frame_features(tmp_path):
    model, dm, trainer = _video_run(tmp_path, freeze_encoder="trunk")
    trainer.fit(model, dm)
    assert trainer.global_step == 6
    assert dm.buffer.frame_feature_dim == model.encoder.frame_dim > 0
    assert not dm.buffer.clip_features
    # Stored features give the latents the pixels give: the updates see what acting sees.
    encode, dim, clip = model.replay_feature_encoder()
    assert not clip
    clips = torch.randint(0, 256, (5, *CLIP), dtype=torch.uint8)
    features = encode(clips.reshape(-1, *CLIP[1:]).numpy()).reshape(5, CLIP[0], dim)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model.encoding.replay_latent(torch.from_numpy(features)), model.encoder(clips)
        )


@pytest.mark.parametrize("arch", ["simple2dcnn", "simple3dcnn", "r3d18"])
def test_a_frozen_encoder_has_the_replay_store_clip_latents(tmp_path, arch):
    model, dm, trainer = _video_run(tmp_path, freeze_encoder=True, encoder_arch=arch)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trainer.fit(model, dm)
    assert trainer.global_step == 6
    assert dm.buffer.clip_features and dm.buffer.frame_feature_dim == model.encoder.latent_dim
    for name, value in model.encoder.state_dict().items():  # BatchNorm statistics included
        assert torch.equal(value, frozen[name]), name
    # What the updates replay is what acting computes, in eval mode, for the stored clips.
    model.eval()
    sample = dm.buffer.sample(8, np.random.default_rng(0))
    assert sample.obs.shape == (8, model.encoder.latent_dim)
    assert torch.equal(model.encoding.replay_latent(sample.obs), sample.obs)
    # The newest stored latent of each env is the eval-mode latent of the env's current clip
    # (its last next_obs: no episode ended in these few steps).
    buffer, envs = dm.buffer, np.arange(dm.num_envs)
    newest = buffer._frames[(buffer._frame_count - 1) % buffer.frame_capacity, envs]
    with torch.no_grad():
        torch.testing.assert_close(
            torch.from_numpy(newest), model.encoder(torch.from_numpy(dm._obs))
        )
    assert model.replay_feature_encoder().clip


@pytest.mark.parametrize(
    "settings", [{"freeze_encoder": "trunk", "cache_frame_features": False}, {}]
)
def test_pixels_stay_in_the_replay_without_a_fixed_trunk_or_when_asked(tmp_path, settings):
    model, dm, trainer = _video_run(tmp_path, **settings)
    trainer.fit(model, dm)
    assert model.replay_feature_encoder() is None
    assert dm.buffer.frame_feature_dim == 0
    assert dm.buffer.sample(2, np.random.default_rng(0)).obs.dtype == torch.uint8


def test_resume_with_frame_features_retraces_the_uninterrupted_run(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(root, max_steps, **kwargs):
        return _video_run(root, freeze_encoder="trunk", max_steps=max_steps, **kwargs)

    model_a, dm_a, trainer_a = run(tmp_path / "a", 9)
    trainer_a.fit(model_a, dm_a)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=6)
    model_b, dm_b, trainer_b = run(tmp_path / "b", 6, callbacks=[checkpoint])
    trainer_b.fit(model_b, dm_b)
    model_c, dm_c, trainer_c = run(tmp_path / "c", 9)
    trainer_c.fit(model_c, dm_c, ckpt_path=checkpoint.best_model_path)
    assert dm_c.buffer.frame_feature_dim > 0 and trainer_c.global_step == 9
    for name, weight in model_a.state_dict().items():
        torch.testing.assert_close(model_c.state_dict()[name], weight, rtol=0, atol=0, msg=name)
    # Resuming it with pixels instead is a clear error, not a silent restart of the replay.
    model_d, dm_d, trainer_d = run(tmp_path / "d", 9, cache_frame_features=False)
    with pytest.raises(ValueError, match=r"stores frame features; resume with .*cache_frame_feat"):
        trainer_d.fit(model_d, dm_d, ckpt_path=checkpoint.best_model_path)


def test_bad_freeze_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"freeze_encoder must be.*'convs'"):
        SACModule(CLIP, [0.0], [1.0], freeze_encoder="convs", **_sac_encoder())
    with pytest.raises(ValueError, match=r"reset_encoder_head.*encoder_ckpt"):
        SACModule(CLIP, [0.0], [1.0], reset_encoder_head=True, **_sac_encoder())


def test_missing_corrupt_and_incompatible_encoder_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt"):
        SACModule(CLIP, [0.0], [1.0], encoder_ckpt=str(tmp_path / "nowhere.ckpt"), **_sac_encoder())
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"corrupt\.ckpt.*corrupt or not a V2P checkpoint"):
        load_pretrained_encoder(corrupt)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1.0}}, foreign)
    with pytest.raises(ValueError, match="no encoder hyper-parameters"):
        load_pretrained_encoder(foreign)

    path = tmp_path / "pretrain.ckpt"
    pretrain_checkpoint(path)
    with pytest.raises(ValueError, match=r"latent_dim 16.*latent_dim 32"):
        SACModule(CLIP, [0.0], [1.0], encoder_ckpt=str(path), **_sac_encoder(latent_dim=32))
    with pytest.raises(ValueError, match=r"Simple2DCNN.*\(4, 3, 32, 32\).*\(8, 3, 32, 32\)"):
        SACModule((8, 3, 32, 32), [0.0], [1.0], encoder_ckpt=str(path), **_sac_encoder())
    with pytest.raises(ValueError, match="encoder_channels"):
        SACModule(CLIP, [0.0], [1.0], encoder_ckpt=str(path), **_sac_encoder(encoder_channels=4))


def _sac_encoder(**overrides) -> dict:
    return {**{k: v for k, v in SMALL.items() if k != "projection_dim"}, **overrides}


def _video_run(root, max_steps=6, callbacks=(), **model_kwargs):
    return make_run(
        root,
        env_id="v2p/DishwashingVideo-v0",
        env_kwargs=VIDEO_ENV,
        model_kwargs={**_sac_encoder(), **model_kwargs},
        max_steps=max_steps,
        callbacks=callbacks,
        data_kwargs={"batch_size": 8, "warmup_steps": 16, "updates_per_epoch": 3},
    )


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    out = tmp_path_factory.mktemp("recording")
    record(str(out), env_kwargs=VIDEO_ENV, episodes=12, seed=0, progress=False)
    return out


def _small_clip_data(recording) -> ClipDataModule:
    """32x32 clips of the recording, 25 batches an epoch, without the random shift."""
    return ClipDataModule(
        [str(recording)],
        clip_len=4,
        frame_size=32,
        batch_size=32,
        clips_per_epoch=32 * 25,
        val_fraction=0.34,
        shift_pad=0,
    )


def test_shrunk_pretraining_fit_lowers_its_loss_and_reports_the_probe(tmp_path, recording):
    L.seed_everything(0, verbose=False)
    # No random shift: at 32x32 pixels it makes the task too hard for 50 updates.
    data = _small_clip_data(recording)
    module = EncoderPretrainModule(data.observation_shape, lr=3e-3, momentum=0.9, **SMALL)
    losses = []

    class KeepLoss(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(
        max_epochs=2,
        logger=CSVLogger(tmp_path, name=""),
        callbacks=[KeepLoss()],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=5,
    )
    trainer.fit(module, data)
    assert len(losses) == 50
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    assert {"val/loss", "val/probe_r2", "val/time_retrieval"} <= set(trainer.callback_metrics)
    chance = float(trainer.callback_metrics["val/time_retrieval_chance"])
    assert 0.0 < chance < 0.5
    # The checkpoint it wrote starts a SAC encoder.
    ckpt = next((tmp_path / "version_0" / "checkpoints").glob("*.ckpt"))
    sac = SACModule(data.observation_shape, [0.0], [1.0], encoder_ckpt=str(ckpt), **_sac_encoder())
    clips = next(iter(data.val_dataloader())).anchor
    module.eval(), sac.eval()
    with torch.no_grad():
        torch.testing.assert_close(sac.encoder(clips), module.encoder(clips), rtol=0, atol=0)


def test_pretrain_config_instantiates_through_the_cli(recording):
    cli = cli_main(
        [
            "--config",
            str(ROOT / "configs" / "pretrain_encoder.yaml"),
            f"--data.init_args.paths=[{recording}]",
            "--data.init_args.clip_len=4",
            "--data.init_args.frame_size=32",
        ],
        run=False,
    )
    assert isinstance(cli.model, EncoderPretrainModule)
    assert cli.model.hparams.observation_shape == (4, 3, 32, 32)  # linked from the data
    assert cli.model.hparams.action_dim == 2
    assert cli.model.reward_head is not None  # the config's outcome prediction


def test_outcome_prediction_learns_the_recorded_rewards(tmp_path, recording):
    L.seed_everything(0, verbose=False)
    data = _small_clip_data(recording)
    module = EncoderPretrainModule(
        data.observation_shape, action_dim=data.action_dim, reward_weight=1.0, lr=3e-3, **SMALL
    )
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, data, verbose=False)
    before = float(trainer.callback_metrics["val/reward_r2"])
    trainer.fit(module, data)
    after = float(trainer.callback_metrics["val/reward_r2"])
    # Held-out episodes: the head predicts rewards from the clip and the action better than
    # their mean does. Per-step rewards are Poisson counts, so most of their variance is noise
    # that no prediction explains (R^2 ~0.1 is near the ceiling here).
    assert after > 0.05 and after > before + 0.1, (before, after)
    assert float(trainer.callback_metrics["val/loss"]) > float(
        trainer.callback_metrics["val/contrast"]
    )


def test_outcome_prediction_needs_recorded_actions():
    with pytest.raises(ValueError, match=r"reward_weight=1\.0 needs recorded actions.*None"):
        EncoderPretrainModule(CLIP, reward_weight=1.0, **SMALL)


def test_a_corrupt_clip_file_fails_clearly(tmp_path):
    (tmp_path / "shard_00000.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"shard_00000\.npz"):
        ClipDataModule([str(tmp_path / "shard_00000.npz")])


class _FloatClipEnv(gym.Env):
    """Clips of float pixels: a video observation the replay keeps whole (not frame rings)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (4, 3, 32, 32), np.float32)
    action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        return self.observation_space.sample(), 0.0, False, self._t >= 5, {}


def test_a_frozen_encoder_on_float_clips_asks_for_pixel_replay_by_name(tmp_path):
    env_id = "v2p-test/FloatClips-v0"
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=_FloatClipEnv, disable_env_checker=True)
    settings = dict(encoder_arch="simple3dcnn", freeze_encoder=True)
    data = {"batch_size": 4, "warmup_steps": 8, "updates_per_epoch": 2, "eval_episodes": 1}

    def run(root, **model_kwargs):
        return make_run(
            root,
            env_id=env_id,
            model_kwargs={**_sac_encoder(**settings), **model_kwargs},
            max_steps=2,
            data_kwargs=data,
            limit_val_batches=0,
        )

    model, dm, trainer = run(tmp_path / "cached")
    with pytest.raises(ValueError, match=r"uint8 frame-history.*cache_frame_features=false"):
        trainer.fit(model, dm)
    model, dm, trainer = run(tmp_path / "pixels", cache_frame_features=False)
    trainer.fit(model, dm)
    assert trainer.global_step == 2 and dm.buffer.frame_stack is None
