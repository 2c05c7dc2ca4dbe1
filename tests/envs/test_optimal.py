"""The grid-search ceiling of ECONOMICS.md section 2."""

from __future__ import annotations

import numpy as np
import pytest

from v2p.envs import DishwashingParams, expected_outcome, mix_outcome, optimal_policy


def test_default_mix_ceiling_and_blind_policy():
    best = optimal_policy(DishwashingParams())
    assert best.profit == pytest.approx(24.3, abs=0.05)
    assert best.blind_profit == pytest.approx(20.1, abs=0.05)
    assert best.blind_profit / best.profit == pytest.approx(0.83, abs=0.01)
    assert best.multiplier == 0.0
    (plate_speed, plate_care) = best.actions["plate"]
    assert plate_speed == 1.0 and plate_care == pytest.approx(0.85, abs=0.02)
    assert best.actions["glass"] == (1.0, pytest.approx(0.99, abs=0.01))
    assert best.actions["pot"] == (1.0, 0.0)


def test_plates_alone_is_the_single_kind_task():
    best = optimal_policy(DishwashingParams(dish_mix={"plate": 1.0}))
    assert list(best.actions) == ["plate"]
    assert best.actions["plate"][0] == 1.0
    assert best.actions["plate"][1] == pytest.approx(0.86, abs=0.01)
    assert best.profit == pytest.approx(25.0, abs=0.05)
    assert best.wage_parity == pytest.approx(1.39, abs=0.01)
    assert best.blind_profit == best.profit  # nothing to see when there is one kind


def test_optimum_beats_every_grid_point_per_kind():
    params = DishwashingParams()
    best = optimal_policy(params, grid=101)
    axis = np.linspace(0, 1, 101)
    speed, care = np.meshgrid(axis, axis)
    for k, name in enumerate(("plate", "glass", "pot")):
        grid_best = expected_outcome(params, k, speed, care).profit.max()
        chosen = expected_outcome(params, k, *best.actions[name]).profit
        assert chosen == pytest.approx(grid_best)


def test_binding_error_target_matches_brute_force():
    """Cheap breakage makes careless plates pay; a 6% target then binds.

    Brute force over every pair of (plate, glass) actions on a coarse grid checks the dual.
    """
    params = DishwashingParams(damage_cost=0.1, dish_mix={"plate": 0.5, "glass": 0.5})
    free = optimal_policy(params, grid=41)
    assert free.err_rate > 0.06
    best = optimal_policy(params, err_target=0.06, grid=41)
    assert best.multiplier > 0
    assert best.err_rate <= 0.06
    assert best.profit < free.profit

    axis = np.linspace(0, 1, 41)
    speed, care = (a.ravel() for a in np.meshgrid(axis, axis))
    plate = expected_outcome(params, 0, speed, care)
    glass = expected_outcome(params, 1, speed, care)
    profit = 0.5 * (plate.profit[:, None] + glass.profit[None, :])
    err = (plate.errors[:, None] + glass.errors[None, :]) / (
        plate.attempts[:, None] + glass.attempts[None, :]
    )
    brute = profit[err <= 0.06].max()
    # The dual can leave a small gap on a discrete grid, never an advantage.
    assert best.profit <= brute + 1e-9
    assert best.profit >= brute - 0.02 * abs(brute)


def test_constraint_that_does_not_bind_changes_nothing():
    free = optimal_policy(DishwashingParams())
    loose = optimal_policy(DishwashingParams(), err_target=0.06)
    assert loose.actions == free.actions and loose.multiplier == 0.0


def test_blind_action_respects_the_target():
    params = DishwashingParams(damage_cost=0.1)
    best = optimal_policy(params, err_target=0.06)
    assert best.blind_err_rate <= 0.06
    speed, care = best.blind_action
    outcome = mix_outcome(params, np.full(3, speed), np.full(3, care))
    assert outcome.profit == pytest.approx(best.blind_profit)


def test_impossible_target_and_bad_arguments():
    with pytest.raises(ValueError, match="err_target"):
        optimal_policy(DishwashingParams(), err_target=0.001)
    with pytest.raises(ValueError, match="err_target"):
        optimal_policy(DishwashingParams(), err_target=1.5)
    with pytest.raises(ValueError, match="grid"):
        optimal_policy(DishwashingParams(), grid=1)
