"""The video envs' ``lighting`` option: the same scene under other RGB gains, default unchanged."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import v2p  # noqa: F401
from v2p.envs.render import BACKGROUND, FrameRenderer

ACTIONS = np.random.default_rng(0).uniform(0, 1, (60, 3, 2)).astype(np.float32)


def rollout(**kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Clips (61, N, T, C, H, W) and rewards (60, N) of a seeded 3-site shift."""
    env = gym.make_vec(
        "v2p/DishwashingVideo-v0", num_envs=3, frames=2, height=32, width=32, **kwargs
    )
    obs, _ = env.reset(seed=3)
    clips, rewards = [obs], []
    for actions in ACTIONS[:-1]:  # stop before the autoreset
        obs, reward, *_ = env.step(actions)
        clips.append(obs)
        rewards.append(reward)
    return np.stack(clips), np.stack(rewards)


def test_default_lighting_leaves_frames_unchanged():
    default = FrameRenderer(32, 32)
    explicit = FrameRenderer(32, 32, lighting=(1.0, 1.0, 1.0))
    zeros = np.zeros(3)
    counts = np.array([10.0, 50.0, 3.0])
    frames = default.render(np.arange(3), np.full(3, 0.5), counts, counts / 10)
    np.testing.assert_array_equal(
        frames, explicit.render(np.arange(3), np.full(3, 0.5), counts, counts / 10)
    )
    np.testing.assert_array_equal(
        default.render(np.arange(3), zeros, zeros, zeros)[0, :, 0, 0], BACKGROUND
    )


def test_lighting_scales_every_colour_and_keeps_the_dynamics():
    clips, rewards = rollout()
    dim_clips, dim_rewards = rollout(lighting=(0.5, 0.8, 1.3))
    np.testing.assert_array_equal(dim_rewards, rewards)  # same task, same seed: same shift
    expected = np.clip(np.rint(clips * np.array([0.5, 0.8, 1.3])[:, None, None]), 0, 255)
    np.testing.assert_array_equal(dim_clips, expected.astype(np.uint8))
    assert (dim_clips != clips).mean() > 0.5


def test_single_env_and_its_picture_take_the_lighting():
    env = gym.make("v2p/DishwashingVideo-v0", render_mode="rgb_array", lighting=[0.5, 0.5, 0.5])
    obs, _ = env.reset(seed=0)
    corner = obs[-1, :, 0, 0]
    np.testing.assert_array_equal(corner, np.rint(np.array(BACKGROUND) * 0.5))
    np.testing.assert_array_equal(env.render()[0, 0], corner)


@pytest.mark.parametrize("lighting", [(1.0, 1.0), (1.0, -0.1, 1.0), (1.0, float("nan"), 1.0)])
def test_bad_lighting_is_rejected_by_name(lighting):
    with pytest.raises(ValueError, match="lighting must be 3 finite RGB gains"):
        gym.make("v2p/DishwashingVideo-v0", lighting=lighting)
    with pytest.raises(ValueError, match="lighting"):
        FrameRenderer(32, 32, lighting=lighting)
