"""Transition novelty: what it scores, per step and per episode, and SAC scoring its batches."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tests.models.conftest import SMALL_MODEL, make_run
from v2p.models.novelty_features import episode_scores, novelty_feature_dim, transition_features
from v2p.models.sac import SACModule


def test_a_transition_is_the_latent_action_outcome_and_next_latent():
    z, z_next = torch.randn(3, 4), torch.randn(3, 4)
    action, reward, err = torch.rand(3, 2), torch.tensor([20.0, 5.0, 0.0]), torch.rand(3)
    features = transition_features(z, action, reward, err, z_next)
    assert features.shape == (3, novelty_feature_dim("transition", 4, 2)) == (3, 12)
    torch.testing.assert_close(features[:, :4], z)
    torch.testing.assert_close(features[:, 4:6], action)
    torch.testing.assert_close(features[:, 6], reward)
    torch.testing.assert_close(features[:, 7], err)
    torch.testing.assert_close(features[:, 8:], z_next)
    assert novelty_feature_dim("observation", 4, 2) == 4
    with pytest.raises(ValueError, match="novelty inputs must be one of"):
        novelty_feature_dim("pixels", 4, 2)


def test_episode_scores_average_each_episodes_steps():
    scores = torch.tensor([1.0, 3.0, 10.0, 0.0, 2.0])
    episode = torch.tensor([0, 0, 1, 2, 2])
    torch.testing.assert_close(episode_scores(scores, episode), torch.tensor([2.0, 10.0, 1.0]))


def test_sac_scores_transitions_with_an_online_model(tmp_path):
    scored = []

    class KeepOutputs(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            scored.append(outputs["novelty"])

    model, dm, trainer = make_run(
        tmp_path,
        max_steps=20,
        callbacks=[KeepOutputs()],
        model_kwargs={
            "novelty_online": True,
            "novelty_inputs": "transition",
            "novelty_batch": 8,
            "novelty_hidden_dim": 32,
        },
    )
    latent = SMALL_MODEL["latent_dim"]
    assert model.novelty.latent_dim == 2 * latent + 2 + 2
    # Its outcome test (the episode-level part) trains in SAC's optimiser beside the denoiser.
    outcome = model.novelty.outcome_test
    assert outcome is not None and outcome.inputs == latent + 2
    before = outcome.net[0].weight.clone()
    trainer.fit(model, dm)
    optimised = {id(p) for group in model.optimizers().param_groups for p in group["params"]}
    assert {id(p) for p in outcome.parameters()} <= optimised
    assert not torch.equal(before, outcome.net[0].weight)
    assert len(scored) == 20 and scored[-1].shape == (8,) and torch.isfinite(scored[-1]).all()
    # The normaliser saw the transitions' reward column: dishwashing profit rates of $/hr.
    assert model.novelty.z_mean[latent + 2] > 1.0
    with pytest.raises(ValueError, match="novelty inputs must be one of"):
        SACModule((7,), [0.0, 0.0], [1.0, 1.0], novelty_inputs="pixels", **SMALL_MODEL)
