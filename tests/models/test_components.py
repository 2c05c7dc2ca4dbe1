"""What the actor and critics read: SACModule's ``unit_head_inputs``."""

from __future__ import annotations

import pytest
import torch

from v2p.models.components import TwinCritic
from v2p.models.sac import SACModule

LOW, HIGH = [0.0, -2.0], [1.0, 2.0]


def _module(unit_head_inputs: bool) -> SACModule:
    torch.manual_seed(0)
    return SACModule(
        (7,), LOW, HIGH, latent_dim=16, hidden_dim=32, unit_head_inputs=unit_head_inputs
    )


def test_unit_head_inputs_scale_the_latent_and_map_the_box_to_plus_minus_one():
    model = _module(unit_head_inputs=True)
    z = torch.randn(5, 16)
    action = torch.tensor([[0.0, -2.0], [1.0, 2.0], [0.5, 0.0], [0.25, 1.0], [0.75, -1.0]])
    unit_action = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-0.5, 0.5], [0.5, -0.5]])
    za = torch.cat([z / 4.0, unit_action], dim=-1)  # sqrt(latent_dim) = 4

    q1, q2 = model.critic(z, action)
    torch.testing.assert_close(q1, model.critic.q1(za).squeeze(-1))
    torch.testing.assert_close(q2, model.critic.q2(za).squeeze(-1))
    mean, _ = model.actor(z)
    torch.testing.assert_close(mean, model.actor.net(z / 4.0)[:, :2])
    # The target critic is a copy and reads the same inputs.
    torch.testing.assert_close(model.critic_target(z, action), (q1, q2))


def test_raw_head_inputs_by_default():
    model = _module(unit_head_inputs=False)
    assert model.hparams.unit_head_inputs is False
    z, action = torch.randn(3, 16), torch.tensor([[0.2, 1.5], [0.9, -0.3], [0.0, 2.0]])
    q1, _ = model.critic(z, action)
    torch.testing.assert_close(q1, model.critic.q1(torch.cat([z, action], -1)).squeeze(-1))
    mean, _ = model.actor(z)
    torch.testing.assert_close(mean, model.actor.net(z)[:, :2])


def test_the_setting_leaves_the_checkpoint_keys_alone():
    """The box constants are derived, not stored: both settings save the same state keys."""
    assert _module(True).state_dict().keys() == _module(False).state_dict().keys()


def test_twin_critic_needs_both_ends_of_the_box():
    with pytest.raises(ValueError, match="action_low and action_high"):
        TwinCritic(16, 2, action_low=torch.zeros(2))
