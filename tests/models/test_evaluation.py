"""The evaluation metrics: ``val/profit`` is the shift's section-1 profit, comparable with the
task model's expected profit; the mean step reward is reported apart, since it undercharges
damage."""

import math

import numpy as np
import pytest

from v2p.contracts import EpisodeRecord, EvalBatch
from v2p.data.episodes import EpisodeTracker
from v2p.economics.shift import ShiftCounts
from v2p.envs.dishwashing import DishwashingVectorEnv
from v2p.models.evaluation import evaluation_metrics, expected_site_mpl


def shift(attempts: int, errors: int, expected_profit: float = 20.0) -> ShiftCounts:
    return ShiftCounts(
        hours=1.0,
        attempts=attempts,
        errors=errors,
        completed=attempts - errors,
        price_per_unit=0.3,
        damage_cost=1.0,
        energy_cost=0.1,
        human_mp=60.0,
        expected_profit=expected_profit,
        expected_attempts=float(attempts),
        expected_errors=float(errors),
    )


def test_profit_is_the_section_1_profit_of_each_shift_and_the_step_reward_is_apart():
    shifts = [shift(100, 10), shift(80, 0)]
    # Section 1 from the totals: 0.3 * 90 - 1.0 * 0.1 * 90 - 0.1 and 0.3 * 80 - 0.1.
    records = tuple(
        EpisodeRecord(i, 0, 60, episode_return=60 * 19.0, shift=s) for i, s in enumerate(shifts)
    )
    metrics = evaluation_metrics(EvalBatch(records, env_steps=7))
    assert metrics["profit"] == pytest.approx(((27 - 9 - 0.1) + (24 - 0.1)) / 2)
    assert metrics["reward_per_step"] == pytest.approx(19.0)
    assert metrics["err_rate"] == pytest.approx(0.05)


def test_an_env_without_economics_reports_its_reward_per_step_as_profit():
    records = (EpisodeRecord(0, 0, 200, episode_return=-300.0, shift=None),)
    metrics = evaluation_metrics(EvalBatch(records, env_steps=0))
    assert metrics["profit"] == metrics["reward_per_step"] == pytest.approx(-1.5)
    assert "expected_profit" not in metrics


def test_shift_profit_estimates_the_expected_profit_where_the_step_reward_does_not():
    """With one or two dishes a step, the step reward's damage term ``err_step * MP_step`` is 0
    whenever a step's dishes all break, so its mean sits above the expected profit by about
    ``c_a * p_err * (1 - p_err) / H_step``; the shift's section-1 profit does not.

    One kind of rack, so every step has the same ``p_err``: across kinds of different
    ``p_err`` the shift's pooled ``err * MP`` exceeds the sum of the steps' expected damage by
    the attempts times the variance of ``p_err``, a separate (and, for a policy that meets the
    error target, small) difference."""
    n = 256
    envs = DishwashingVectorEnv(num_envs=n, dish_mix={"plate": 1.0})
    envs.reset(seed=0)
    tracker = EpisodeTracker(n, np.zeros(n))
    careless = np.tile(np.array([[0.9, 0.1]], np.float32), (n, 1))  # p_err 0.12
    records = []
    while not records:
        _, reward, terminated, truncated, info = envs.step(careless)
        records = tracker.step(reward, terminated | truncated, info)
    metrics = evaluation_metrics(EvalBatch(tuple(records), env_steps=0))
    gap = metrics["reward_per_step"] - metrics["expected_profit"]
    assert gap > 3.0, metrics  # the step reward's bias, many standard errors wide
    assert abs(metrics["profit"] - metrics["expected_profit"]) < 1.0, metrics  # SE about 0.2


def test_a_source_without_sites_is_measured_at_its_owners():
    episodes = (
        EpisodeRecord(0, 0, 60, 0.0, shift(50, 0)),
        EpisodeRecord(1, 1, 60, 0.0, shift(80, 0)),
    )
    batch = EvalBatch(episodes, 0, ("platform", "pots", "pots_demos"), (0, 1, 1))
    assert expected_site_mpl(batch, 3) == [50.0, 80.0, 80.0]
    plain = expected_site_mpl(batch._replace(source_sites=None), 3)
    assert plain[:2] == [50.0, 80.0] and math.isnan(plain[2])
