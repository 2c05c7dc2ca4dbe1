"""Demonstrations: recordings drawn into every SAC batch beside the online replay (RLPD)."""

from __future__ import annotations

import itertools
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from tests.models.conftest import make_run
from v2p.data.demonstrations import Demonstration, even_interleaving
from v2p.data.recording import record_episode
from v2p.data.rollout import RolloutDataModule
from v2p.envs.optimal import optimal_policy
from v2p.envs.params import DishwashingParams
from v2p.models.components import TwinCritic
from v2p.record import record

SMALL_VIDEO = {"frames": 4, "height": 32, "width": 32}


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    """Four episodes of the optimal policy on the video env (its task states are the state
    env's observations)."""
    out = tmp_path_factory.mktemp("expert")
    record(str(out), env_kwargs=SMALL_VIDEO, episodes=4, policy="optimal", progress=False)
    return out


def test_recordings_store_each_steps_cost_and_termination():
    env = gym.make("v2p/DishwashingVideo-v0", **SMALL_VIDEO)
    twin = gym.make("v2p/DishwashingVideo-v0", **SMALL_VIDEO)
    rng = np.random.default_rng(0)
    actions = rng.uniform(0, 1, (60, 2)).astype(np.float32)
    steps = iter(actions)
    episode = record_episode(env, "video", lambda obs, state: next(steps), seed=3)
    twin.reset(seed=3)
    rates = [twin.step(a)[4]["err_rate"] for a in actions]
    np.testing.assert_allclose(episode.costs, rates, rtol=1e-6)
    assert episode.costs.max() > 0  # random actions at speed break dishes
    assert episode.terminated.dtype == bool and not episode.terminated.any()  # truncated


def test_the_optimal_policy_takes_the_ceilings_action_for_each_kind(expert):
    data = np.load(expert / "shard_00000.npz")
    best = optimal_policy(DishwashingParams())
    table = np.array([best.actions[name] for name in DishwashingParams().kind_names])
    states, actions = data["states"], data["actions"]
    starts, obs_starts = data["step_starts"], data["obs_starts"]
    for i in range(len(starts) - 1):
        kinds = states[obs_starts[i] : obs_starts[i + 1] - 1, :3].argmax(axis=1)
        np.testing.assert_allclose(actions[starts[i] : starts[i + 1]], table[kinds], atol=1e-6)
    with pytest.raises(ValueError, match="synthetic dishwashing dynamics"):
        record(str(expert.parent / "x"), "v2p/DishwashingPhysics-v0", policy="optimal")


class _Batches(Callback):
    def __init__(self):
        self.samples = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.samples.append(batch.sample)


def _demo_run(root, expert, data_kwargs=None, **kwargs):
    data = {"demonstrations": [Demonstration("expert", str(expert))], **(data_kwargs or {})}
    return make_run(root, data_kwargs=data, **kwargs)


def test_half_of_every_batch_is_demonstrations_with_their_source(tmp_path, expert):
    batches = _Batches()
    model, dm, trainer = _demo_run(tmp_path, expert, max_steps=6, callbacks=[batches])
    trainer.fit(model, dm)
    assert dm.source_names == ["platform", "expert"] and dm.demo_batch == 16
    data = np.load(expert / "shard_00000.npz")
    assert len(dm.demo_buffer) == len(data["actions"]) == 240
    recorded = {tuple(a) for a in data["actions"].round(5)}
    for sample in batches.samples:
        assert sample.obs.shape == (32, 7)
        demo = sample.source == 1
        assert int(demo.sum()) == 16 and set(sample.source.tolist()) == {0, 1}
        # Interleaved evenly, so the first rows that the attribution heads and the novelty
        # model read hold demonstrations in the batch's share too.
        np.testing.assert_array_equal(sample.source[:8], [0, 1] * 4)
        # The demonstration rows are recorded transitions: their actions, task states as obs.
        assert {tuple(a) for a in sample.action[demo].numpy().round(5)} <= recorded
        states = torch.from_numpy(data["states"])
        for obs in sample.obs[demo]:
            assert (states == obs).all(dim=1).any()
    assert dm.hparams["demonstrations"] == [
        {"name": "expert", "path": str(expert), "max_episodes": None, "owner": None}
    ]


def test_clip_observations_are_the_recorded_clips(tmp_path, expert):
    batches = _Batches()
    model, dm, trainer = _demo_run(
        tmp_path,
        expert,
        env_id="v2p/DishwashingVideo-v0",
        env_kwargs=SMALL_VIDEO,
        data_kwargs={"demo_share": 0.25, "batch_size": 8, "warmup_steps": 16},
        model_kwargs={"encoder_arch": "simple2dcnn", "encoder_channels": 8},
        max_steps=2,
        callbacks=[batches],
    )
    trainer.fit(model, dm)
    assert dm.demo_batch == 2
    frames = np.load(expert / "shard_00000.npz")["frames"]
    episode_starts = np.load(expert / "shard_00000.npz")["episode_starts"]
    clips = [
        frames[s + k : s + k + 4]
        for s, e in itertools.pairwise(episode_starts)
        for k in range(e - s - 4)
    ]
    clips = torch.from_numpy(np.stack(clips))
    for sample in batches.samples:
        demo = sample.source == 1
        assert int(demo.sum()) == 2
        for obs, next_obs in zip(sample.obs[demo], sample.next_obs[demo], strict=True):
            at = int(torch.nonzero((clips == obs).flatten(1).all(dim=1))[0])
            assert (clips[at + 1] == next_obs).all()


def test_resume_with_demonstrations_is_exact_and_refuses_a_changed_recording(tmp_path, expert):
    model_a, dm_a, trainer_a = _demo_run(tmp_path / "a", expert, max_steps=40)
    trainer_a.fit(model_a, dm_a)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=20)
    model_b, dm_b, trainer_b = _demo_run(
        tmp_path / "b", expert, max_steps=20, callbacks=[checkpoint]
    )
    trainer_b.fit(model_b, dm_b)
    ckpt = checkpoint.best_model_path or checkpoint.last_model_path
    model_c, dm_c, trainer_c = _demo_run(tmp_path / "b", expert, max_steps=40, seed=5)
    trainer_c.fit(model_c, dm_c, ckpt_path=ckpt)
    a, c = model_a.state_dict(), model_c.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], c[key], rtol=0, atol=0, msg=key)

    fewer = {"demonstrations": [Demonstration("expert", str(expert), max_episodes=3)]}
    model_d, dm_d, trainer_d = make_run(tmp_path / "b", max_steps=40, data_kwargs=fewer)
    with pytest.raises(ValueError, match=r"demonstrations differ.*\['expert'\]"):
        trainer_d.fit(model_d, dm_d, ckpt_path=ckpt)


def test_prioritised_replay_updates_only_the_online_rows(tmp_path, expert):
    model, dm, trainer = _demo_run(
        tmp_path,
        expert,
        max_steps=4,
        data_kwargs={"replay_priority": "novelty"},
        model_kwargs={"novelty_online": True, "novelty_calibration_updates": 2},
    )
    updated = []

    class Watch(Callback):
        def on_train_start(self, trainer, pl_module):
            update = dm.buffer.update_priorities
            dm.buffer.update_priorities = lambda index, p: (updated.append(index), update(index, p))

    trainer.callbacks.append(Watch())
    trainer.fit(model, dm)  # every batch has 16 demonstration rows (index -1)
    assert len(updated) == 4
    assert all(len(index) == 16 and (index >= 0).all() for index in updated)
    assert np.isfinite(dm.buffer._prioritised.priority).all()


def test_bad_demonstrations_are_named(tmp_path, expert):
    with pytest.raises(ValueError, match=r"demo_share=0\.5 draws from demonstrations"):
        RolloutDataModule(demo_share=0.5)
    demo = [Demonstration("expert", str(expert))]
    with pytest.raises(ValueError, match=r"demo_share must be in \[0, 1\)"):
        RolloutDataModule(demonstrations=demo, demo_share=1.0)
    with pytest.raises(ValueError, match=r"unique; repeated: \['platform'\]"):
        RolloutDataModule(demonstrations=[Demonstration("platform", str(expert))])
    with pytest.raises(ValueError, match="non-empty name"):
        Demonstration("", str(expert))

    def fit(path, env_kwargs=None):  # refused at configuration, before any env steps
        RolloutDataModule(env_kwargs=env_kwargs, demonstrations=[Demonstration("d", str(path))])

    with pytest.raises(ValueError, match=r"demonstration 'd'.*no manifest.json"):
        fit(tmp_path / "missing")
    old = tmp_path / "old"
    old.mkdir()
    with np.load(expert / "shard_00000.npz") as shard:
        arrays = {k: shard[k] for k in shard.files if k not in ("costs", "terminated")}
    np.savez(old / "shard_00000.npz", **arrays)
    (old / "manifest.json").write_text((expert / "manifest.json").read_text())
    with pytest.raises(ValueError, match="without step costs and terminations"):
        fit(old)
    pixels = tmp_path / "pixels"
    record(str(pixels), env_kwargs=SMALL_VIDEO, episodes=1, progress=False)
    manifest = json.loads((pixels / "manifest.json").read_text())
    assert manifest["state_dim"] == 7
    two_kinds = {"dish_kinds": DishwashingParams().dish_kinds[:2], "dish_mix": {"plate": 1.0}}
    with pytest.raises(ValueError, match=r"states of shape \(6,\).*task states have shape \(7,\)"):
        fit(pixels, env_kwargs=two_kinds)


def test_critic_layer_norm_normalises_every_hidden_layer():
    plain = TwinCritic(8, 2, hidden_dim=16)
    normed = TwinCritic(8, 2, hidden_dim=16, layer_norm=True)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in normed.q1) == 2
    q1, q2 = normed(torch.randn(5, 8), torch.rand(5, 2))
    assert q1.shape == q2.shape == (5,)


def test_a_customers_demonstrations_are_attributed_at_its_sites(tmp_path, expert):
    from v2p.data.sources import DataSource

    sources = [DataSource("platform", 1), DataSource("customer", 1, {"dish_mix": {"pot": 1.0}})]
    data = {
        "sources": sources,
        "demonstrations": [Demonstration("expert", str(expert), owner="customer")],
    }
    names = ["platform", "customer", "expert"]
    model, dm, trainer = make_run(
        tmp_path / "heads",
        max_steps=20,
        data_kwargs=data,
        # The heads train on the first half of each batch, as the sources config's do.
        model_kwargs={"source_names": names, "attribution": {"hidden_dim": 8, "batch": 16}},
    )
    trainer.fit(model, dm)
    assert dm.source_sites == [0, 1, 1]
    evaluation = model.attribution.evaluations[-1]
    # Measured at the customer's site: head 0 there, minus the head trained without it.
    expected = evaluation.site_mpl[0][1] - evaluation.site_mpl[3][1]
    assert evaluation.contributions[2] == pytest.approx(expected)
    assert np.isfinite(evaluation.contributions).all()
    # The heads saw the dataset (with the demonstrations last in each batch, the first half
    # held none: every head then trained alike and the dataset measured exactly 0).
    assert evaluation.contributions[2] != 0.0

    model, dm, trainer = make_run(
        tmp_path / "gradient",
        max_steps=2,
        data_kwargs=data,
        model_kwargs={"source_names": names, "attribution": {"method": "gradient"}},
    )
    with pytest.raises(ValueError, match="demonstration datasets have none"):
        trainer.fit(model, dm)
    with pytest.raises(ValueError, match="owner 'someone', which is not one of the env sources"):
        RolloutDataModule(
            sources=sources, demonstrations=[Demonstration("d", str(expert), owner="someone")]
        )


@pytest.mark.parametrize(("first", "second"), [(16, 16), (24, 8), (5, 3), (7, 0), (0, 4)])
def test_every_prefix_of_a_mixed_batch_holds_the_batchs_share(first, second):
    order = even_interleaving(first, second)
    assert sorted(order.tolist()) == list(range(first + second))
    from_second = (order >= first).double().cumsum(0)  # second-group rows among the first k
    k = torch.arange(1, first + second + 1, dtype=torch.float64)
    assert (from_second - k * second / (first + second)).abs().max() <= 1.0
    # Each group keeps its own order.
    assert order[order < first].tolist() == list(range(first))
    assert order[order >= first].tolist() == list(range(first, first + second))
