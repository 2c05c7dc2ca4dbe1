"""SACModule + RolloutDataModule: fit, update counting, resume, other envs, bad input."""

from __future__ import annotations

import glob
import itertools
import multiprocessing
import os

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.models.conftest import make_run
from v2p.contracts import RolloutBatch
from v2p.data.rollout import RolloutDataModule
from v2p.envs.physics.sites import LocalSites, WorkerSites
from v2p.models.sac import SACModule


def side_files(checkpoint) -> list[str]:
    """The replay side files beside a checkpoint (``<ckpt>.replay-<token>.npz``)."""
    return sorted(glob.glob(glob.escape(str(checkpoint)) + ".replay-*.npz"))


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_max_steps_counts_gradient_updates(run_factory):
    model, dm, trainer = run_factory(max_steps=30)
    calls = []
    original = model.update
    model.update = lambda batch: calls.append(1) or original(batch)
    trainer.fit(model, dm)
    assert trainer.global_step == 30
    assert len(calls) == 30  # not 10: one optimiser step per update (Lightning issue 17958)
    assert model.optimizers().optimizer.state[model.log_alpha]["step"] == 30


def test_fit_updates_every_part_and_evaluates(run_factory):
    model, dm, trainer = run_factory(max_steps=40)
    before = weights(model)
    trainer.fit(model, dm)
    after = weights(model)
    for prefix in ("encoder.", "actor.", "critic.", "critic_target.", "log_alpha"):
        changed = [
            k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])
        ]
        assert changed, f"no parameter under {prefix} changed"
    metrics = trainer.callback_metrics
    for key in ("val/profit", "val/err_rate", "val/expected_profit", "val/expected_err_rate"):
        assert key in metrics and torch.isfinite(metrics[key])
    # 40 updates at 2 per collection step of 2 envs: warm-up 64 env steps + 20 collections.
    assert dm.env_steps == 64 + 2 * 20
    assert len(dm.buffer) == dm.env_steps


def test_expected_profit_is_the_task_model_of_the_actions(run_factory):
    """val/expected_profit equals the expectation of the deterministic actions per kind."""
    from v2p.envs import DishwashingParams, expected_outcome

    model, dm, trainer = run_factory(max_steps=20)
    trainer.fit(model, dm)
    batch = dm.evaluate()
    params = DishwashingParams()
    env = dm._eval_envs
    obs, _ = env.reset(seed=dm._eval_seed)
    expected = []
    for _ in range(params.steps):
        action = model.act(obs, deterministic=True)
        kind = env.sim.kind.copy()
        expected.append(expected_outcome(params, kind, action[:, 0], action[:, 1]).profit)
        obs, *_ = env.step(action)
    np.testing.assert_allclose(
        [e.shift.expected_profit for e in batch.episodes], np.mean(expected, axis=0), rtol=1e-5
    )


def test_lagrangian_penalty_uses_the_current_lambda(run_factory):
    """The penalty is computed at sample time from err, with lambda and e* as they are now."""
    model, dm, trainer = run_factory(max_steps=4)
    trainer.fit(model, dm)
    sample = dm.buffer.sample(64, np.random.default_rng(0))
    sample = sample._replace(err=torch.full_like(sample.err, 0.5))
    model.constraint.lagrange.fill_(2.0)
    model.constraint.err_target.fill_(0.1)
    assert model.update(RolloutBatch(sample, ()))["penalty"].item() == pytest.approx(0.8)
    model.constraint.lagrange.fill_(0.0)
    assert model.update(RolloutBatch(sample, ()))["penalty"].item() == 0.0


def test_dual_ascent_once_per_finished_shift(run_factory):
    # Cheap breakage and careless warm-up: errors above target push lambda up.
    model, dm, trainer = run_factory(
        max_steps=80,
        env_kwargs={"damage_cost": 0.0, "steps": 10},
        model_kwargs={"dual_lr": 0.5, "err_target_init": 0.0, "err_target_final": 0.0},
    )
    trainer.fit(model, dm)
    assert model.constraint.shifts_seen == dm.env_steps // 10
    assert model.constraint.value > 0
    assert model.constraint.lagrange.item() == pytest.approx(model.constraint.value)


@pytest.mark.parametrize("skip_warmup", [False, True])
def test_warmup_shifts_are_left_out_of_the_multiplier_when_asked(run_factory, skip_warmup):
    """Each env's 32 warm-up steps (64 env steps over 2 envs) fill three 10-step shifts and 2
    steps of the fourth: with lambda_skip_warmup those 4 shifts per env move neither lambda nor
    the curriculum."""
    model, dm, trainer = run_factory(
        max_steps=80,
        env_kwargs={"damage_cost": 0.0, "steps": 10},
        model_kwargs={
            "dual_lr": 0.5,
            "err_target_init": 0.0,
            "err_target_final": 0.0,
            "lambda_skip_warmup": skip_warmup,
        },
    )
    seen = []
    account = model.constraint.account_episodes
    model.constraint.account_episodes = lambda episodes, *a: (
        seen.extend(episodes) or account(episodes, *a)
    )
    trainer.fit(model, dm)
    random_steps = sorted((r.random_steps for r in seen), reverse=True)
    assert random_steps[:8] == [10] * 6 + [2] * 2 and set(random_steps[8:]) == {0}
    left_out = 8 if skip_warmup else 0
    assert model.constraint.shifts_seen == len(seen) - left_out == dm.env_steps // 10 - left_out
    assert model.constraint.value > 0


def test_pendulum_trains_with_the_same_module(run_factory):
    model, dm, trainer = run_factory(env_id="Pendulum-v1", max_steps=20)
    trainer.fit(model, dm)
    assert trainer.global_step == 20
    assert "val/episode_return" in trainer.callback_metrics
    assert "val/expected_profit" not in trainer.callback_metrics


def test_video_task_trains_with_a_cnn_encoder(run_factory):
    model, dm, trainer = run_factory(
        env_id="v2p/DishwashingVideo-v0",
        env_kwargs={"frames": 4, "height": 32, "width": 32},
        model_kwargs={"encoder_arch": "simple2dcnn", "encoder_channels": 8},
        max_steps=6,
        data_kwargs={"batch_size": 8, "warmup_steps": 16, "updates_per_epoch": 3},
    )
    trainer.fit(model, dm)
    assert trainer.global_step == 6
    assert dm.buffer.frame_stack == 4
    sample = dm.buffer.sample(4, np.random.default_rng(0))
    assert sample.obs.dtype == torch.uint8 and sample.obs.shape == (4, 4, 3, 32, 32)


TINY_VIDEO = {
    "env_id": "v2p/DishwashingVideo-v0",
    "env_kwargs": {"frames": 4, "height": 32, "width": 32},
    "data_kwargs": {"batch_size": 8, "warmup_steps": 16, "updates_per_epoch": 3},
}


def shift_of(stored: torch.Tensor, seen: torch.Tensor, pad: int) -> tuple[int, int] | None:
    """The offset by which ``seen`` is a replicate-padded translation of clip ``stored``
    (T, C, H, W), or None."""
    h, w = stored.shape[-2:]
    for dy, dx in itertools.product(range(-pad, pad + 1), repeat=2):
        rows = (torch.arange(h) + dy).clamp(0, h - 1)
        cols = (torch.arange(w) + dx).clamp(0, w - 1)
        if torch.equal(stored[..., rows, :][..., cols], seen):
            return dy, dx
    return None


def test_augment_shift_trains_on_clips_shifted_one_by_one(tmp_path):
    model, dm, trainer = make_run(
        tmp_path,
        **TINY_VIDEO,
        max_steps=3,
        model_kwargs={"encoder_arch": "simple2dcnn", "encoder_channels": 8, "augment_shift": 2},
    )
    samples, latents_of = [], []
    update, replay_latent = model.update, model.encoding.replay_latent
    model.update = lambda batch: samples.append(batch.sample) or update(batch)
    model.encoding.replay_latent = lambda obs: latents_of.append(obs) or replay_latent(obs)
    trainer.fit(model, dm)
    assert len(samples) == 3 and len(latents_of) == 6  # the next clips, then the clips
    for sample, next_seen, seen in zip(samples, latents_of[::2], latents_of[1::2], strict=True):
        shifts = [shift_of(a, b, 2) for a, b in zip(sample.obs, seen, strict=True)]
        next_shifts = [shift_of(a, b, 2) for a, b in zip(sample.next_obs, next_seen, strict=True)]
        assert None not in shifts and None not in next_shifts  # translations by at most 2
        assert len(set(shifts)) > 1  # each clip its own shift
        assert shifts != next_shifts  # the next clips shifted apart
    assert not torch.equal(samples[0].obs, latents_of[1])


def test_resume_with_augment_shift_retraces_the_uninterrupted_run(tmp_path):
    kwargs = {
        **TINY_VIDEO,
        "model_kwargs": {"encoder_arch": "simple2dcnn", "encoder_channels": 8, "augment_shift": 2},
    }
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    model_a, dm_a, trainer_a = make_run(tmp_path / "a", max_steps=6, **kwargs)
    trainer_a.fit(model_a, dm_a)
    model_b, dm_b, trainer_b = make_run(
        tmp_path / "b", max_steps=3, callbacks=[checkpoint], **kwargs
    )
    trainer_b.fit(model_b, dm_b)
    model_c, dm_c, trainer_c = make_run(tmp_path / "b", max_steps=6, seed=5, **kwargs)
    trainer_c.fit(model_c, dm_c, ckpt_path=str(tmp_path / "ckpt" / "epoch=0-step=3.ckpt"))
    a, c = weights(model_a), weights(model_c)
    for key in a:
        torch.testing.assert_close(a[key], c[key], rtol=0, atol=0, msg=key)


def test_augment_shift_needs_clip_pixels_in_the_replay():
    with pytest.raises(ValueError, match=r"augment_shift=2 .* shape \(7,\), not clips"):
        SACModule((7,), [0.0, 0.0], [1.0, 1.0], augment_shift=2)
    clip = (4, 3, 32, 32)
    with pytest.raises(ValueError, match=r"augment_shift=2 .*set cache_frame_features=false"):
        SACModule(
            clip, [0.0, 0.0], [1.0, 1.0], encoder_arch="simple2dcnn", freeze_encoder="trunk",
            augment_shift=2,
        )  # fmt: skip
    with pytest.raises(ValueError, match="augment_shift"):
        SACModule(clip, [0.0, 0.0], [1.0, 1.0], encoder_arch="simple2dcnn", augment_shift=-1)
    # The frozen trunk with pixels in the replay is augmented.
    SACModule(
        clip, [0.0, 0.0], [1.0, 1.0], encoder_arch="simple2dcnn", freeze_encoder="trunk",
        cache_frame_features=False, augment_shift=2,
    )  # fmt: skip


def test_exact_resume_matches_an_uninterrupted_run(tmp_path):
    """N updates, then resume for M more == N + M in one run: weights, losses, RNG."""
    root_a, root_b = tmp_path / "a", tmp_path / "b"
    checkpoint = ModelCheckpoint(dirpath=root_b / "ckpt", every_n_train_steps=30, save_top_k=-1)
    model_a, dm_a, trainer_a = make_run(root_a, max_steps=60)
    trainer_a.fit(model_a, dm_a)

    model_b, dm_b, trainer_b = make_run(root_b, max_steps=30, callbacks=[checkpoint])
    trainer_b.fit(model_b, dm_b)
    ckpt = root_b / "ckpt" / "epoch=1-step=30.ckpt"
    assert ckpt.exists() and len(side_files(ckpt)) == 1

    model_c, dm_c, trainer_c = make_run(root_b, max_steps=60, seed=123)  # a different seed
    trainer_c.fit(model_c, dm_c, ckpt_path=str(ckpt))
    assert trainer_c.global_step == 60
    a, c = weights(model_a), weights(model_c)
    for key in a:
        torch.testing.assert_close(a[key], c[key], rtol=0, atol=0, msg=key)
    assert dm_a.env_steps == dm_c.env_steps
    for name in ("train/critic_loss", "train/actor_loss"):
        assert trainer_a.callback_metrics[name] == trainer_c.callback_metrics[name]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=10, save_top_k=-1)
    model, dm, trainer = make_run(
        tmp_path, max_steps=60, callbacks=[checkpoint], model_kwargs={"finite_check_every": 5}
    )
    forward = model.critic.forward

    def poisoned(z, action):
        q1, q2 = forward(z, action)
        if model.global_step >= 23:
            q1 = q1 * float("nan")
        return q1, q2

    model.critic.forward = poisoned
    with pytest.raises(FloatingPointError, match="NaN or inf"):  # from the loss or the actions
        trainer.fit(model, dm)
    saved = sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt"))
    assert saved == ["epoch=0-step=10.ckpt", "epoch=0-step=20.ckpt"]
    state = torch.load(tmp_path / "ckpt" / "epoch=0-step=20.ckpt", weights_only=True)
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )


def test_missing_and_corrupt_checkpoints_fail_clearly(tmp_path):
    model, dm, trainer = make_run(tmp_path, max_steps=5)
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        trainer.fit(model, dm, ckpt_path=str(tmp_path / "nope.ckpt"))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    model, dm, trainer = make_run(tmp_path, max_steps=5)
    with pytest.raises(ValueError, match=r"bad\.ckpt"):
        trainer.fit(model, dm, ckpt_path=str(bad))


def test_checkpoint_without_its_replay_file_fails_clearly(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5)
    model, dm, trainer = make_run(tmp_path, max_steps=5, callbacks=[checkpoint])
    trainer.fit(model, dm)
    ckpt = next((tmp_path / "ckpt").glob("*.ckpt"))
    (side,) = side_files(ckpt)
    os.remove(side)
    model, dm, trainer = make_run(tmp_path, max_steps=10)
    with pytest.raises(FileNotFoundError, match="replay"):
        trainer.fit(model, dm, ckpt_path=str(ckpt))


@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "match"),
    [
        ("v2p/NoSuchTask-v0", None, "NoSuchTask"),
        ("v2p/Dishwashing-v0", {"damage_cost": -1}, "damage_cost"),
        ("v2p/Dishwashing-v0", {"dammage_cost": 0.1}, "dammage_cost"),
        ("CartPole-v1", None, "action space"),
    ],
)
def test_bad_env_configuration_is_named(env_id, env_kwargs, match):
    with pytest.raises(ValueError, match=match):
        RolloutDataModule(env_id, env_kwargs)


def test_encoder_that_does_not_fit_the_observation():
    dm = RolloutDataModule("v2p/DishwashingVideo-v0")
    with pytest.raises(ValueError, match="mlp"):
        SACModule(dm.observation_shape, dm.action_low, dm.action_high, encoder_arch="mlp")
    dm = RolloutDataModule("v2p/Dishwashing-v0")
    with pytest.raises(ValueError, match="simple2dcnn"):
        SACModule(dm.observation_shape, dm.action_low, dm.action_high, encoder_arch="simple2dcnn")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"gamma": 1.5}, "gamma"),
        ({"critic_lr": 0.0}, "critic_lr"),
        ({"tau": -0.1}, "tau"),
        # Named where they enter, not at the first finished shift or as diverged weights.
        ({"err_target_init": 1.5}, r"err_target_init must be .*\[0, 1\].*1\.5"),
        ({"err_target_final": -0.1}, "err_target_final"),
        ({"curriculum_episodes": -1}, "curriculum_episodes"),
        ({"target_entropy": float("nan")}, "target_entropy"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SACModule((7,), [0.0, 0.0], [1.0, 1.0], **kwargs)


def test_bad_data_parameters_are_named():
    with pytest.raises(ValueError, match="num_envs"):
        RolloutDataModule(num_envs=0)
    with pytest.raises(ValueError, match="buffer_size"):
        RolloutDataModule(num_envs=8, buffer_size=4)
    # A replay smaller than a batch would draw the same transitions twice in every batch.
    with pytest.raises(ValueError, match=r"buffer_size \(100\) must be >= batch_size \(256\)"):
        RolloutDataModule(num_envs=2, buffer_size=100, warmup_steps=256)
    # The first update draws batch_size transitions: the warm-up must have stored them.
    with pytest.raises(ValueError, match=r"warmup_steps \(64\) must be >= batch_size \(256\)"):
        RolloutDataModule(num_envs=2, warmup_steps=64)


def test_same_seed_same_actions():
    def first_actions(seed):
        L.seed_everything(seed, verbose=False)
        dm = RolloutDataModule(num_envs=3)
        model = SACModule(dm.observation_shape, dm.action_low, dm.action_high)
        obs = np.random.default_rng(0).random((3, 7)).astype(np.float32)
        return model.act(obs)

    np.testing.assert_array_equal(first_actions(1), first_actions(1))
    assert not np.array_equal(first_actions(1), first_actions(2))


def test_validate_and_test_run_the_evaluation_episodes(run_factory):
    model, dm, trainer = run_factory(max_steps=10)
    trainer.fit(model, dm)
    val = trainer.validate(model, dm)[0]
    test = trainer.test(model, dm)[0]
    # Same seeded evaluation envs and the same deterministic policy: the same numbers.
    assert val["val/expected_profit"] == test["test/expected_profit"]
    assert test["test/env_steps"] == dm.env_steps


def test_replay_file_from_another_save_is_refused(tmp_path):
    """A kill between writing the replay file and the checkpoint leaves a mismatched pair."""
    import shutil

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=-1)
    model, dm, trainer = make_run(tmp_path, max_steps=10, callbacks=[checkpoint])
    trainer.fit(model, dm)
    first, second = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    (side,) = side_files(first)
    shutil.copy(*side_files(second), side)
    model, dm, trainer = make_run(tmp_path, max_steps=15)
    with pytest.raises(ValueError, match="was not written with checkpoint"):
        trainer.fit(model, dm, ckpt_path=str(first))


@pytest.mark.slow
def test_compiled_update_trains_and_matches_eager_critic(run_factory):
    model, dm, trainer = run_factory(max_steps=12, model_kwargs={"compile_update": True})
    trainer.fit(model, dm)
    assert trainer.global_step == 12
    assert model._compiled_losses is not None
    sample = dm.buffer.sample(32, np.random.default_rng(0))
    # The critic's value of stored actions involves no sampling: compiled == eager.
    *_, compiled = model._compiled_losses(sample)
    *_, eager = model._losses(sample)
    torch.testing.assert_close(compiled["q"], eager["q"], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="compile_mode must be one of"):
        run_factory(model_kwargs={"compile_mode": "fastest"})


def test_replay_on_device_retraces_host_replay(tmp_path):
    """The device mirror is an implementation detail: same seed, same weights."""
    model_a, dm_a, trainer_a = make_run(tmp_path / "a", max_steps=20)
    trainer_a.fit(model_a, dm_a)
    model_b, dm_b, trainer_b = make_run(
        tmp_path / "b", max_steps=20, data_kwargs={"replay_on_device": True}
    )
    trainer_b.fit(model_b, dm_b)
    assert dm_b.buffer._mirror is not None and dm_b.buffer.device == torch.device("cpu")
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("freeze_encoder", [False, "trunk"])
def test_acting_uses_the_running_statistics_and_leaves_them(freeze_encoder):
    """With BatchNorm in the encoder (R3D-18), an env's action does not depend on the other
    envs' clips, acting does not move the running statistics, and the modes come back."""
    torch.manual_seed(0)
    clip = (2, 3, 16, 16)
    model = SACModule(
        clip,
        [0.0],
        [1.0],
        encoder_arch="r3d18",
        latent_dim=8,
        hidden_dim=16,
        freeze_encoder=freeze_encoder,
    )
    statistics = {k: v.clone() for k, v in model.encoder.state_dict().items() if "running" in k}
    obs = np.random.default_rng(0).integers(0, 256, (3, *clip), dtype=np.uint8)
    together = model.act(obs, deterministic=True)
    alone = np.concatenate([model.act(obs[i : i + 1], deterministic=True) for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)
    for name, value in model.encoder.state_dict().items():
        if name in statistics:
            assert torch.equal(value, statistics[name]), name
    assert model.encoder.training and model.encoder.head.training
    assert model.encoder.trunk.training == (freeze_encoder is False)


def test_a_checkpoint_from_before_the_constraint_component_loads(tmp_path):
    """State dicts once held the multiplier as ``lagrange`` / ``err_target``."""
    model, dm, trainer = make_run(tmp_path, max_steps=20)
    trainer.fit(model, dm)
    model.constraint.lagrange.fill_(3.5)
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    checkpoint = torch.load(tmp_path / "new.ckpt", weights_only=True)
    weights = checkpoint["state_dict"]
    for old in ("lagrange", "err_target"):
        weights[old] = weights.pop(f"constraint.{old}")
    torch.save(checkpoint, tmp_path / "old.ckpt")
    loaded = SACModule.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True)
    assert loaded.constraint.lagrange.item() == 3.5


def test_evaluation_hands_the_observer_every_step_of_each_first_episode(run_factory):
    """observe sees each eval env's first episode whole, in order, with its last observation
    (not the autoreset one) as the final next_obs, and the episodes are those returned."""
    model, dm, trainer = run_factory(max_steps=20, env_kwargs={"steps": 5})
    trainer.fit(model, dm)
    steps = []
    batch = dm.evaluate(observe=steps.append)
    n = len(batch.episodes)  # eval_episodes envs per source
    assert [len(t.obs) for t in steps] == [n] * 5
    for before, after in itertools.pairwise(steps):
        np.testing.assert_array_equal(after.obs, before.next_obs)  # one episode, in order
    last = steps[-1].next_obs
    assert np.allclose(last[:, -4], 1.0)  # shift progress t/steps = 1: the episode's end
    returns = np.sum([t.reward for t in steps], axis=0)
    np.testing.assert_allclose(returns, [e.episode_return for e in batch.episodes], rtol=1e-5)
    assert batch == dm.evaluate()  # observing changes nothing


def test_physics_envs_in_worker_processes_train_as_in_one_process(tmp_path):
    """``env_workers=2`` steps the physics sites (training and evaluation) in two processes:
    the same transitions, so the same weights after the same updates."""
    runs = []
    for workers in (1, 2):
        model, dm, trainer = make_run(
            tmp_path / f"w{workers}",
            env_id="v2p/DishwashingPhysics-v0",
            env_kwargs={"frames": 2, "height": 32, "width": 32, "steps": 10},
            model_kwargs={"encoder_arch": "simple2dcnn", "encoder_channels": 4},
            max_steps=8,
            data_kwargs={
                "batch_size": 8,
                "warmup_steps": 16,
                "updates_per_epoch": 4,
                "env_workers": workers,
            },
        )
        trainer.fit(model, dm)
        sites = dm.envs.unwrapped.sites
        assert isinstance(sites, WorkerSites if workers > 1 else LocalSites)
        runs.append((weights(model), trainer.callback_metrics["val/expected_profit"]))
        assert not multiprocessing.active_children()  # fit's teardown stopped every worker
    (a, profit_a), (b, profit_b) = runs
    assert profit_a == profit_b
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
