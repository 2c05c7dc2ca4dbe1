"""The PyBullet dishwashing env: gymnasium API, determinism, physics trends, frames, resume."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import v2p  # noqa: F401  (registers the ids)
from v2p.data.rollout import make_vector_env
from v2p.economics import implied_wage, profit_rate
from v2p.envs.physics.calibration import GRID, load_table
from v2p.envs.physics.env import DishwashingPhysicsEnv, DishwashingPhysicsVectorEnv
from v2p.envs.physics.scene import Scene, draw_episode

ENV_ID = "v2p/DishwashingPhysics-v0"
LEVELS = np.linspace(0.0, 1.0, 5)


@pytest.fixture(scope="module")
def scene():
    s = Scene()
    yield s
    s.close()


def break_rate(scene: Scene, kind: int, speed: float, care: float, n: int = 80) -> float:
    """Fraction of ``n`` placements that broke the dish, each in a new randomised shift."""
    rng = np.random.default_rng(123)
    broken = 0
    for _ in range(n):
        broken += scene.attempt(kind, speed, care, draw_episode(rng), rng).broken
    return broken / n


def test_check_env_passes():
    env = gym.make(ENV_ID, render_mode="rgb_array").unwrapped
    check_env(env, skip_render_check=False)
    env.close()


def test_spaces_info_keys_match_the_synthetic_video_env():
    physics = gym.make(ENV_ID)
    video = gym.make("v2p/DishwashingVideo-v0")
    assert physics.observation_space == video.observation_space  # (8, 3, 64, 64) uint8
    assert physics.action_space == video.action_space
    action = np.array([0.7, 0.9], dtype=np.float32)
    _, reset_info = physics.reset(seed=0)
    _, video_reset_info = video.reset(seed=0)
    assert reset_info.keys() == video_reset_info.keys()
    _, _, _, _, info = physics.step(action)
    _, _, _, _, video_info = video.step(action)
    assert info.keys() == video_info.keys()
    assert info["task_state"].dtype == np.float32
    assert info["task_state"].shape == video_info["task_state"].shape
    physics.close()


def test_reward_is_the_profit_of_the_counts_and_the_shift_truncates():
    env = gym.make(ENV_ID, damage_cost=0.5)
    env.reset(seed=1)
    p = env.unwrapped.params
    for t in range(p.steps):
        _, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], np.float32))
        err = info["errors"] / max(1, info["attempts"])
        wage = implied_wage(info["completed"] / p.step_hours, err, p.price_per_unit, 0.5)
        assert reward == pytest.approx(profit_rate(wage, p.energy_cost))
        assert info["completed"] == info["attempts"] - info["errors"]
        assert info["damage_cost"] == 0.5
        assert not terminated and truncated == (t == p.steps - 1)
    assert info["task_state"][3] == pytest.approx(1.0)  # progress t / steps
    env.close()


def test_same_seed_gives_identical_frames_and_outcomes():
    runs = []
    for _ in range(2):
        env = DishwashingPhysicsEnv()
        obs, _ = env.reset(seed=7)
        clips, counts = [obs], []
        for t in range(12):
            obs, reward, _, _, info = env.step(np.array([t / 11, 1 - t / 11], np.float32))
            clips.append(obs)
            counts.append((info["attempts"], info["errors"], reward))
        runs.append((np.stack(clips), counts))
        env.close()
    assert np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    other = DishwashingPhysicsEnv()
    assert not np.array_equal(other.reset(seed=8)[0], runs[0][0][0])  # the seed matters
    other.close()


def test_break_rate_rises_with_speed_at_low_care_and_falls_with_care(scene):
    plate = 0
    by_speed = [break_rate(scene, plate, s, 0.0) for s in LEVELS]
    by_care = [break_rate(scene, plate, 1.0, c) for c in LEVELS]
    # Monotone up to sampling noise (0.1 over 80 placements), with a large overall change.
    assert all(b >= a - 0.1 for a, b in itertools.pairwise(by_speed)), by_speed
    assert by_speed[-1] - by_speed[0] > 0.5, by_speed
    assert all(b <= a + 0.1 for a, b in itertools.pairwise(by_care)), by_care
    assert by_care[0] - by_care[-1] > 0.5, by_care


def test_calibration_table_matches_the_physics(scene):
    table = load_table()
    rng = np.random.default_rng(5)
    n, plate = 200, 0
    for speed, care in ((0.5, 0.5), (1.0, 0.8)):
        errors = 0
        for _ in range(n):
            errors += scene.attempt(plate, speed, care, draw_episode(rng), rng).error
        i, j = np.searchsorted(GRID, speed), np.searchsorted(GRID, care)
        p = table.p_err[plate, i, j]
        se = np.sqrt(max(p * (1 - p), 0.01) * (1 / n + 1 / table.attempts))
        assert abs(errors / n - p) < 4 * se, (speed, care, errors / n, p)


def test_frames_change_when_the_scene_changes(scene):
    episode = draw_episode(np.random.default_rng(0))
    frames = [scene.render(k, 0.0, 0, episode, 64, 64) for k in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert (frames[a] != frames[b]).any(axis=0).sum() > 50  # the kind is visible
    broken = scene.render(0, 0.0, 5, episode, 64, 64)
    later = scene.render(0, 0.5, 0, episode, 64, 64)
    assert (broken != frames[0]).any(axis=0).sum() > 5  # shards in the bin
    assert (later != frames[0]).any(axis=0).sum() > 5  # progress tiles
    other_light = draw_episode(np.random.default_rng(1))
    assert not np.array_equal(scene.render(0, 0.0, 0, other_light, 64, 64), frames[0])
    # Unchanged scene, unchanged picture.
    assert np.array_equal(scene.render(0, 0.0, 0, episode, 64, 64), frames[0])


def test_render_rgb_array_is_larger():
    env = gym.make(ENV_ID, render_mode="rgb_array", render_size=128)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    env.close()


def test_vector_env_keeps_the_last_steps_accounting_and_resumes_exactly():
    envs = gym.make_vec(ENV_ID, num_envs=2, frames=2)
    assert isinstance(envs.unwrapped, DishwashingPhysicsVectorEnv)
    envs.reset(seed=0)
    action = np.tile([0.8, 0.9], (2, 1)).astype(np.float32)
    attempts = np.zeros(2)
    for _ in range(59):
        attempts += envs.step(action)[4]["attempts"]
    state = envs.unwrapped.state_dict()
    obs, _, _, truncated, info = envs.step(action)
    assert truncated.all() and info["_final_obs"].all()
    assert "attempts" in info and (attempts + info["attempts"] > 50).all()
    assert not np.array_equal(info["final_obs"], obs)  # obs already starts the next shift
    after = [envs.step(action)[0] for _ in range(2)]
    envs.unwrapped.load_state_dict(state)
    assert np.array_equal(envs.step(action)[0], obs)
    assert all(np.array_equal(envs.step(action)[0], o) for o in after)
    envs.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k_err": 0.5}, "k_err"),
        ({"frames": 0}, "frames"),
        ({"height": 8}, "height"),
        ({"render_mode": "human"}, "render_mode"),
        ({"damage_cost": -1.0}, "damage_cost"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DishwashingPhysicsEnv(**kwargs)


def test_bad_actions_raise():
    env = DishwashingPhysicsEnv(frames=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.5]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    env.close()


def run_steps(envs, actions):
    """Observations, rewards and every info array of a run of steps."""
    out = []
    for action in actions:
        obs, reward, _, truncated, info = envs.step(action)
        out.append((obs, reward, truncated, {k: np.asarray(v) for k, v in info.items()}))
    return out


def assert_same_steps(a, b):
    for (obs_a, rew_a, trunc_a, info_a), (obs_b, rew_b, trunc_b, info_b) in zip(a, b, strict=True):
        assert np.array_equal(obs_a, obs_b) and np.array_equal(rew_a, rew_b)
        assert np.array_equal(trunc_a, trunc_b) and info_a.keys() == info_b.keys()
        for key in info_a:
            assert np.array_equal(info_a[key], info_b[key]), key


def test_sites_split_over_workers_step_as_one_process_and_share_checkpoints():
    """Three sites over two workers (an uneven split), across a shift's end: the same clips,
    rewards and infos as in one process; a state from the workers resumes in one process."""
    rng = np.random.default_rng(0)
    actions = rng.random((63, 3, 2)).astype(np.float32)
    local = DishwashingPhysicsVectorEnv(num_envs=3, frames=2, steps=30)
    split = DishwashingPhysicsVectorEnv(num_envs=3, workers=2, frames=2, steps=30)
    try:
        assert np.array_equal(local.reset(seed=4)[0], split.reset(seed=4)[0])
        assert_same_steps(run_steps(local, actions[:40]), run_steps(split, actions[:40]))
        state = split.state_dict()
        expected = run_steps(split, actions[40:])
        local.load_state_dict(state)
        assert_same_steps(run_steps(local, actions[40:]), expected)
        assert any(step[3].get("_final_obs", np.zeros(3)).any() for step in expected)
    finally:
        local.close()
        split.close()


def test_a_worker_error_is_raised_in_the_training_process():
    envs = DishwashingPhysicsVectorEnv(num_envs=2, workers=2, frames=2)
    try:
        envs.reset(seed=0)
        with pytest.raises(RuntimeError, match=r"physics worker 1 failed in step\(\)(.|\n)*finite"):
            envs.step(np.array([[0.5, 0.5], [np.nan, 0.5]], np.float32))
    finally:
        envs.close()


def test_workers_are_refused_where_the_env_cannot_use_them():
    with pytest.raises(ValueError, match="env_workers=2"):
        make_vector_env("v2p/Dishwashing-v0", 4, workers=2)
    with pytest.raises(ValueError, match="workers"):
        DishwashingPhysicsVectorEnv(num_envs=2, workers=0)


def test_interpolation_stays_inside_the_measured_rates():
    """Between cells of rate 1 the bilinear weights can sum an ulp above 1 (at speed
    0.5700000000000001, care 0.01 on the old grid), and 1 - p_err < 0 made the marginal
    product negative: the env raised on such an action."""
    from v2p.envs.physics.calibration import bilinear

    grid = np.linspace(0.0, 1.0, 101)
    speed, care = (a.ravel() for a in np.meshgrid(grid, grid, indexing="ij"))
    for size in (11, 21):
        ones = np.ones((1, size, size))
        assert bilinear(ones, np.zeros(speed.size, int), speed, care).max() <= 1.0


def test_workers_exit_when_the_training_process_is_gone():
    """A worker whose pipe closes without a ``close`` request (its parent killed) exits."""
    from v2p.envs.physics.sites import WorkerSites

    sites = WorkerSites(2, {"frames": 2}, workers=2)
    procs = list(sites._procs)
    for conn in sites._conns:
        conn.close()
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
