"""Section 3: the Lagrangian reward, the error-target curriculum and dual ascent."""

import pickle

import numpy as np
import pytest

from v2p.economics import DualAscent, lagrangian_reward, sla_target


def test_lagrangian_penalises_only_the_excess_error():
    # 20 - 5 * max(0, 0.10 - 0.06) = 20 - 0.2
    assert lagrangian_reward(20.0, 0.10, 5.0, 0.06) == pytest.approx(19.8)
    assert lagrangian_reward(20.0, 0.03, 5.0, 0.06) == pytest.approx(20.0)
    rewards = lagrangian_reward(np.array([1.0, 1.0]), np.array([0.2, 0.0]), 10.0, 0.1)
    np.testing.assert_allclose(rewards, [0.0, 1.0])


def test_sla_target_curriculum_endpoints_midpoint_and_hold():
    assert sla_target(0) == pytest.approx(0.10)
    assert sla_target(300) == pytest.approx(0.08)  # halfway from 0.10 to 0.06
    assert sla_target(600) == pytest.approx(0.06)
    assert sla_target(5000) == pytest.approx(0.06)
    assert sla_target(0, curriculum_episodes=0) == pytest.approx(0.06)
    np.testing.assert_allclose(
        sla_target(np.array([0, 50, 100, 150]), init=0.2, final=0.0, curriculum_episodes=100),
        [0.2, 0.1, 0.0, 0.0],
    )


def test_sla_target_rejects_a_negative_curriculum():
    with pytest.raises(ValueError, match="curriculum_episodes"):
        sla_target(3, curriculum_episodes=-1)


def test_dual_ascent_step_and_floor_at_zero():
    dual = DualAscent(lambda_init=0.0, eta=0.5)
    # 0 + 0.5 * (0.10 - 0.06) = 0.02
    assert dual.update(0.10, 0.06) == pytest.approx(0.02)
    assert dual.value == pytest.approx(0.02)
    # 0.02 + 0.5 * (0.12 - 0.06) = 0.05
    assert dual.update(0.12, 0.06) == pytest.approx(0.05)
    # 0.05 + 0.5 * (0.00 - 0.06) = 0.02
    assert dual.update(0.00, 0.06) == pytest.approx(0.02)
    # 0.02 + 0.5 * (0.00 - 0.06) = -0.01 -> floored at 0
    assert dual.update(0.00, 0.06) == 0.0
    assert dual.update(0.00, 0.06) == 0.0


def test_dual_ascent_defaults_and_state_round_trip():
    dual = DualAscent()
    assert dual.value == 0.0 and dual.eta == 0.01
    dual.update(0.5, 0.1)
    state = pickle.loads(pickle.dumps(dual.state_dict()))
    assert all(type(v) is float for v in state.values())
    restored = DualAscent()
    restored.load_state_dict(state)
    assert restored.value == dual.value == pytest.approx(0.004)
    assert restored.update(0.2, 0.1) == dual.update(0.2, 0.1)


def test_dual_ascent_rejects_bad_inputs():
    with pytest.raises(ValueError, match="lambda_init"):
        DualAscent(lambda_init=-1.0)
    with pytest.raises(ValueError, match="err_shift"):
        DualAscent().update(1.5, 0.1)
    with pytest.raises(ValueError, match="err_target"):
        DualAscent().update(0.1, float("nan"))
