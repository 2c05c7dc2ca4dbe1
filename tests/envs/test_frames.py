"""Synthetic frames are a picture of the state: the policy can read everything it needs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import v2p  # noqa: F401
from v2p.envs import KIND_NAMES
from v2p.envs.render import BAR_COLOURS, KIND_COLOURS, FrameRenderer


def decode(frame: np.ndarray, renderer: FrameRenderer) -> tuple[int, float, int, int]:
    """Read (kind, progress, completed, errors) back from one (3, H, W) frame."""
    centre = frame[:, int(0.31 * renderer.height), renderer.width // 2]
    kind = min(
        range(len(KIND_NAMES)),
        key=lambda k: np.abs(centre.astype(int) - KIND_COLOURS[KIND_NAMES[k]]).sum(),
    )
    lengths = []
    for rows, colour in zip(renderer._bar_rows, BAR_COLOURS, strict=True):
        row = frame[:, rows.start, :]
        lengths.append(int((row == np.array(colour)[:, None]).all(axis=0).sum()))
    progress = lengths[0] / renderer.width
    return kind, progress, lengths[1], lengths[2]


def test_frames_show_kind_progress_and_counts():
    env = gym.make("v2p/DishwashingVideo-v0").unwrapped
    renderer = env.observation_model.renderer
    obs, info = env.reset(seed=4)
    assert decode(obs[-1], renderer)[0] == info["kind"]
    completed = errors = 0
    for t in range(60):
        kind_shown = decode(obs[-1], renderer)[0]
        obs, _, _, _, info = env.step(np.array([1.0, 0.3], dtype=np.float32))
        assert kind_shown == info["kind"]  # the frame showed the rack that was then handled
        completed += info["completed"]
        errors += info["errors"]
        _, progress, completed_px, errors_px = decode(obs[-1], renderer)
        assert progress == (t + 1) / 60 or abs(progress - (t + 1) / 60) < 1 / 64 + 1e-9
        assert completed_px == min(64, int(np.ceil(completed / renderer.completed_per_pixel)))
        assert errors_px == min(64, int(np.ceil(errors / renderer.errors_per_pixel)))


def test_each_kind_looks_different():
    renderer = FrameRenderer(64, 64)
    zeros = np.zeros(3)
    frames = renderer.render(np.arange(3), zeros, zeros, zeros)
    for a in range(3):
        for b in range(a + 1, 3):
            # Shape and colour both differ: many pixels, not a tint.
            assert (frames[a] != frames[b]).any(axis=0).sum() > 200


def test_clip_is_the_frame_history_in_time_order():
    env = gym.make("v2p/DishwashingVideo-v0", frames=4, height=32, width=32).unwrapped
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 3, 32, 32)
    newest = [obs[-1]]
    np.testing.assert_array_equal(obs, np.stack(newest * 4))  # a new clip repeats frame 0
    for _ in range(6):
        obs, *_ = env.step(np.array([0.5, 0.5], dtype=np.float32))
        newest.append(obs[-1])
        # Until T frames exist, the clip is padded at the front with the shift's first frame.
        padded = [newest[0]] * max(0, 4 - len(newest)) + newest[-4:]
        np.testing.assert_array_equal(obs, np.stack(padded))


def test_render_rgb_array():
    env = gym.make("v2p/DishwashingVideo-v0", render_mode="rgb_array")
    env.reset(seed=0)
    picture = env.render()
    assert picture.shape == (256, 256, 3) and picture.dtype == np.uint8
