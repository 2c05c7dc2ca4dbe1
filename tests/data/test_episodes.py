"""EpisodeTracker: shifts from the declared step accounting, checked on every step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import v2p  # noqa: F401  (registers the ids)
from v2p.data.episodes import EpisodeTracker
from v2p.envs.accounting import ACCOUNTING_KEYS


def run(tracker: EpisodeTracker, envs: gym.vector.VectorEnv, steps: int) -> list:
    envs.reset(seed=0)
    records = []
    for _ in range(steps):
        _, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        records += tracker.step(np.asarray(reward, np.float64), terminated | truncated, info)
    envs.close()
    return records


def test_an_economic_env_gives_shifts():
    envs = gym.make_vec("v2p/Dishwashing-v0", num_envs=2, steps=5)
    records = run(EpisodeTracker(2, np.zeros(2)), envs, 5)
    assert len(records) == 2 and all(r.shift is not None for r in records)
    assert all(np.isfinite(r.shift.expected_errors) for r in records)


def test_a_non_economic_env_gives_episodes_without_a_shift():
    envs = gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync")
    records = run(EpisodeTracker(2, np.zeros(2)), envs, 200)
    assert len(records) == 2 and all(r.shift is None and r.length == 200 for r in records)


def economic_info(n: int) -> dict[str, np.ndarray]:
    return {key: np.ones(n) for key in ACCOUNTING_KEYS}


def test_a_step_lacking_a_declared_key_raises_naming_it_and_the_env():
    tracker = EpisodeTracker(2, np.zeros(2), env="env 'v2p/Custom-v0'")
    info = economic_info(2)
    del info["human_mp"]
    with pytest.raises(KeyError, match=r"'v2p/Custom-v0'.*'human_mp'"):
        tracker.step(np.zeros(2), np.zeros(2, bool), info)


def test_an_economic_site_that_stops_reporting_raises():
    tracker = EpisodeTracker(2, np.array([0, 1]))
    tracker.step(np.zeros(2), np.zeros(2, bool), economic_info(2))
    with pytest.raises(KeyError, match=r"site 0 \(source 0\) before but not in this step"):
        tracker.step(np.zeros(2), np.zeros(2, bool), {})


def test_only_the_economic_sites_of_a_mixed_step_give_shifts():
    info: dict[str, np.ndarray] = {}
    for key, values in economic_info(2).items():
        info[key] = values * np.array([1.0, 0.0])
        info[f"_{key}"] = np.array([True, False])
    tracker = EpisodeTracker(2, np.array([0, 1]))
    economic, plain = tracker.step(np.ones(2), np.ones(2, bool), info)
    assert economic.shift is not None and economic.shift.hours == 1.0
    assert plain.shift is None and plain.source == 1


def test_random_action_steps_are_counted_per_episode_and_survive_old_state():
    tracker = EpisodeTracker(2, np.zeros(2))
    not_done = np.zeros(2, bool)
    tracker.step(np.zeros(2), not_done, economic_info(2), random_actions=True)
    state = tracker.state_dict()
    tracker.step(np.zeros(2), not_done, economic_info(2), random_actions=True)
    (first, _) = tracker.step(np.zeros(2), np.ones(2, bool), economic_info(2))
    assert (first.length, first.random_steps) == (3, 2)
    del state["sums"]["random_steps"]  # a checkpoint from before they were counted
    tracker.load_state_dict(state)
    (resumed, _) = tracker.step(np.zeros(2), np.ones(2, bool), economic_info(2))
    assert (resumed.length, resumed.random_steps) == (2, 0)
