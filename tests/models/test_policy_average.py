"""The Polyak-averaged policy: an EMA of the actor (and a trained encoder), read only by
deterministic actions, resumed exactly, and loadable from checkpoints written without it."""

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from tests.models.conftest import make_run
from tests.models.test_sac import weights
from v2p.models.policy_average import PolicyAverage
from v2p.models.sac import SACModule

DECAY = 0.9


def test_the_average_is_an_ema_that_starts_from_the_first_weights():
    actor = nn.Linear(3, 2)
    average = PolicyAverage(actor, None, DECAY)
    expected = None
    for step in range(4):
        with torch.no_grad():
            actor.weight.add_(step + 1.0)
        average.update(actor, encoder=nn.Identity())
        now = actor.weight.detach().clone()
        expected = now if expected is None else DECAY * expected + (1 - DECAY) * now
        torch.testing.assert_close(average.actor.weight, expected)
    assert not average.averages_encoder
    assert average.encoder(online := nn.Identity()) is online


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, float("nan")])
def test_a_decay_outside_zero_to_one_is_named(decay):
    with pytest.raises(ValueError, match="policy_average_decay"):
        SACModule((7,), [0.0, 0.0], [1.0, 1.0], policy_average_decay=decay)


def test_training_is_unchanged_and_only_deterministic_actions_read_the_average(tmp_path):
    plain, dm_plain, trainer = make_run(tmp_path / "plain", max_steps=30)
    trainer.fit(plain, dm_plain)
    averaged, dm, trainer = make_run(
        tmp_path / "avg", max_steps=30, model_kwargs={"policy_average_decay": DECAY}
    )
    trainer.fit(averaged, dm)
    online = weights(plain)
    for key, value in weights(averaged).items():
        if not key.startswith("policy_average."):
            torch.testing.assert_close(value, online[key], rtol=0, atol=0, msg=key)
    assert averaged.policy_average.averages_encoder  # the critic trains the MLP encoder
    obs = dm_plain.envs.reset(seed=0)[0]
    torch.manual_seed(1)
    explore = averaged.act(obs)
    torch.manual_seed(1)
    np.testing.assert_array_equal(explore, plain.act(obs))  # exploration: the online actor
    deterministic = averaged.act(obs, deterministic=True)
    assert not np.allclose(deterministic, plain.act(obs, deterministic=True))
    avg = averaged.policy_average
    with torch.no_grad():
        z = avg.encoder(averaged.encoder)(torch.as_tensor(obs))
        np.testing.assert_allclose(deterministic, avg.actor.deterministic(z).numpy(), rtol=1e-6)


def test_resume_continues_the_average_exactly(tmp_path):
    kwargs = {"model_kwargs": {"policy_average_decay": DECAY}}
    model_a, dm_a, trainer_a = make_run(tmp_path / "a", max_steps=40, **kwargs)
    trainer_a.fit(model_a, dm_a)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=20)
    model_b, dm_b, trainer_b = make_run(
        tmp_path / "b", max_steps=20, callbacks=[checkpoint], **kwargs
    )
    trainer_b.fit(model_b, dm_b)
    model_c, dm_c, trainer_c = make_run(tmp_path / "b", max_steps=40, seed=5, **kwargs)
    trainer_c.fit(model_c, dm_c, ckpt_path=checkpoint.best_model_path or checkpoint.last_model_path)
    a, c = weights(model_a), weights(model_c)
    assert any(key.startswith("policy_average.") for key in a)
    for key in a:
        torch.testing.assert_close(a[key], c[key], rtol=0, atol=0, msg=key)


def test_checkpoints_load_with_averaging_turned_on_or_off(tmp_path):
    plain, dm, trainer = make_run(tmp_path, max_steps=20)
    trainer.fit(plain, dm)
    trainer.save_checkpoint(tmp_path / "plain.ckpt")
    on = SACModule.load_from_checkpoint(
        tmp_path / "plain.ckpt", weights_only=True, policy_average_decay=DECAY
    )
    # Started from the online weights, to be copied at the next update.
    assert on.policy_average.average.n_averaged.item() == 0
    torch.testing.assert_close(on.policy_average.actor.state_dict(), plain.actor.state_dict())
    averaged, dm, trainer = make_run(
        tmp_path / "avg", max_steps=20, model_kwargs={"policy_average_decay": DECAY}
    )
    trainer.fit(averaged, dm)
    trainer.save_checkpoint(tmp_path / "avg.ckpt")
    off = SACModule.load_from_checkpoint(
        tmp_path / "avg.ckpt", weights_only=True, policy_average_decay=None
    )
    assert off.policy_average is None
    torch.testing.assert_close(off.actor.state_dict(), averaged.actor.state_dict())
