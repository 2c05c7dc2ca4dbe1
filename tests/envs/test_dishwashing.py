"""The dishwashing envs: gymnasium API, task dynamics, determinism, single vs batched."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import v2p  # noqa: F401  (registers the ids)
from v2p.economics import implied_wage, profit_rate
from v2p.envs import KIND_NAMES, DishwashingParams, expected_outcome

ENV_IDS = ["v2p/Dishwashing-v0", "v2p/DishwashingVideo-v0"]
GOOD_ACTION = np.array([1.0, 0.85], dtype=np.float32)


def run_shift(env: gym.Env, seed: int, action=GOOD_ACTION):
    obs, _ = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], []
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        assert not terminated
    assert truncated
    return np.stack(observations), np.array(rewards), infos


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_passes(env_id):
    env = gym.make(env_id).unwrapped
    with warnings.catch_warnings():
        # Counts are unbounded above (Poisson), so the Box's upper bound is inf on purpose.
        warnings.filterwarnings("ignore", message=".*maximum value is infinity.*")
        check_env(env, skip_render_check=False)


def test_spaces_and_default_shapes():
    state = gym.make("v2p/Dishwashing-v0")
    video = gym.make("v2p/DishwashingVideo-v0")
    assert state.observation_space.shape == (len(KIND_NAMES) + 4,)
    assert video.observation_space.shape == (8, 3, 64, 64)
    assert video.observation_space.dtype == np.uint8
    for env in (state, video):
        assert env.action_space == gym.spaces.Box(0.0, 1.0, (2,), np.float32)


def test_constructor_kwargs_are_task_parameters():
    env = gym.make("v2p/Dishwashing-v0", damage_cost=0.1, dish_mix={"plate": 1.0})
    assert env.unwrapped.params.damage_cost == 0.1
    _, _, infos = run_shift(env, seed=0)
    assert {info["kind"] for info in infos} == {0}
    assert all(info["damage_cost"] == 0.1 for info in infos)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"damage_cost": -1.0}, "damage_cost"),
        ({"price_per_unit": float("nan")}, "price_per_unit"),
        ({"base_rate": 0.0}, "base_rate"),
        ({"p_min": 0.7}, "p_min"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"dish_mix": {"cup": 1.0}}, "cup"),
        ({"dish_mix": {"plate": 0.5, "pot": 0.3}}, "sum to 1"),
        ({"dish_mix": {"plate": -0.5, "pot": 1.5}}, "dish_mix['plate']"),
    ],
)
def test_bad_task_parameters_name_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[")):
        gym.make("v2p/Dishwashing-v0", **kwargs)


def test_bad_actions_and_order_of_calls():
    env = gym.make("v2p/Dishwashing-v0").unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(GOOD_ACTION)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    for _ in range(60):
        env.step(GOOD_ACTION)
    with pytest.raises(RuntimeError, match="shift is over"):
        env.step(GOOD_ACTION)


def test_reward_is_the_steps_profit_rate_and_obs_tracks_the_shift():
    env = gym.make("v2p/Dishwashing-v0")
    params = env.unwrapped.params
    observations, rewards, infos = run_shift(env, seed=3)
    k = len(KIND_NAMES)
    for t, (reward, info) in enumerate(zip(rewards, infos, strict=True)):
        assert info["completed"] == info["attempts"] - info["errors"]
        mp = info["completed"] / params.step_hours
        err = info["errors"] / max(1, info["attempts"])
        expected = profit_rate(
            implied_wage(mp, err, params.price_per_unit, params.damage_cost), params.energy_cost
        )
        assert reward == pytest.approx(expected)
        # The one-hot before acting shows the kind of the rack that the step then handled.
        assert observations[t][:k].argmax() == info["kind"]
        assert observations[t + 1][k] == pytest.approx((t + 1) / 60)
    completed = sum(info["completed"] for info in infos)
    errors = sum(info["errors"] for info in infos)
    scale = params.base_rate * params.steps
    assert observations[-1][k + 1] == pytest.approx(completed / scale)
    assert observations[-1][k + 3] == pytest.approx(errors / (0.1 * scale))


def test_kinds_follow_the_mix():
    envs = gym.make_vec("v2p/Dishwashing-v0", num_envs=2000)
    _, info = envs.reset(seed=1)
    counts = np.zeros(len(KIND_NAMES))
    actions = np.tile(GOOD_ACTION, (2000, 1))
    for _ in range(10):
        _, _, _, _, info = envs.step(actions)
        counts += np.bincount(info["kind"], minlength=len(KIND_NAMES))
    shares = counts / counts.sum()
    # 20,000 draws: the standard error of a share is below 0.004.
    np.testing.assert_allclose(shares, [0.4, 0.3, 0.3], atol=0.015)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory_and_frames(env_id):
    rng = np.random.default_rng(0)
    actions = rng.random((60, 2)).astype(np.float32)

    def rollout(seed):
        env = gym.make(env_id)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        rewards = []
        for action in actions:
            obs, reward, *_ = env.step(action)
            out.append(obs)
            rewards.append(reward)
        return np.stack(out), np.array(rewards)

    obs_a, rew_a = rollout(7)
    obs_b, rew_b = rollout(7)
    _, rew_c = rollout(8)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    assert not np.array_equal(rew_a, rew_c)


def test_expected_outcome_matches_simulation():
    """The analytic expectation behind the ceiling is what the simulator samples from."""
    params = DishwashingParams()
    envs = gym.make_vec("v2p/Dishwashing-v0", num_envs=4000)
    envs.reset(seed=2)
    action = np.array([0.7, 0.4])
    attempts = np.zeros(3)
    errors = np.zeros(3)
    steps = np.zeros(3)
    for _ in range(20):
        _, _, _, _, info = envs.step(np.tile(action, (4000, 1)))
        np.add.at(attempts, info["kind"], info["attempts"])
        np.add.at(errors, info["kind"], info["errors"])
        np.add.at(steps, info["kind"], 1)
    expected = expected_outcome(params, np.arange(3), action[0], action[1])
    per_hour = attempts / steps / params.step_hours
    np.testing.assert_allclose(per_hour, expected.attempts, rtol=0.02)
    np.testing.assert_allclose(errors / attempts, expected.p_err, rtol=0.08)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_batched_and_single_agree_in_distribution(env_id):
    action = np.array([0.9, 0.5], dtype=np.float32)
    single = gym.make(env_id)
    profits, errs = [], []
    for seed in range(40):
        _, rewards, infos = run_shift(single, seed=seed, action=action)
        profits.extend(rewards)
        errs.extend(info["err_rate"] for info in infos)
    envs = gym.make_vec(env_id, num_envs=40)
    envs.reset(seed=1000)
    batch_profits, batch_errs = [], []
    for _ in range(60):
        _, reward, _, _, info = envs.step(np.tile(action, (40, 1)))
        batch_profits.append(reward)
        batch_errs.append(info["err_rate"])
    for a, b in ((profits, batch_profits), (errs, batch_errs)):
        a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
        standard_error = np.sqrt(a.var() / a.size + b.var() / b.size)
        assert abs(a.mean() - b.mean()) < 4 * standard_error
        # Same spread too, not only the same mean.
        assert a.std() == pytest.approx(b.std(), rel=0.1)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_autoresets_in_the_same_step(env_id):
    envs = gym.make_vec(env_id, num_envs=3)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, _ = envs.reset(seed=0)
    actions = np.tile(GOOD_ACTION, (3, 1))
    for t in range(60):
        obs, _, terminated, truncated, info = envs.step(actions)
        assert not terminated.any()
        assert truncated.all() == (t == 59)
    assert info["_final_obs"].all()
    assert info["final_obs"].shape == obs.shape
    if env_id == "v2p/Dishwashing-v0":
        assert (info["final_obs"][:, len(KIND_NAMES)] == 1.0).all()  # the shift was over
        assert (obs[:, len(KIND_NAMES)] == 0.0).all()  # a new one has begun
    else:
        assert not np.array_equal(info["final_obs"], obs)
        # A new clip starts as the first frame repeated.
        assert (obs == obs[:, :1]).all()


def test_vector_env_bad_actions():
    envs = gym.make_vec("v2p/Dishwashing-v0", num_envs=4)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        envs.step(np.zeros((3, 2)))


def test_env_state_dict_resumes_exactly():
    envs = gym.make_vec("v2p/DishwashingVideo-v0", num_envs=2)
    envs.reset(seed=5)
    actions = np.tile(GOOD_ACTION, (2, 1))
    for _ in range(10):
        envs.step(actions)
    state = envs.unwrapped.state_dict() if hasattr(envs, "unwrapped") else envs.state_dict()
    later = [envs.step(actions) for _ in range(55)]
    fresh = gym.make_vec("v2p/DishwashingVideo-v0", num_envs=2)
    fresh.reset(seed=123)
    fresh.load_state_dict(state)
    again = [fresh.step(actions) for _ in range(55)]
    for a, b in zip(later, again, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
