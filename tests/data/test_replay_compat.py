"""The replay buffer against fixtures written by the pre-refactor single-class buffer.

``fixtures/replay_draws.npz`` holds, per layout, what ``ReplayBuffer.sample`` returned for a
fixed seed (every field, dtype included), the calls it made on the generator (method, low,
high, size) and the prioritised distribution ``P(i)`` it drew from; ``fixtures/replay_v1_*.npz``
are side files that ``ReplayBuffer.save`` wrote (state version 1). All were written at commit
6834456 by ``PYTHONPATH=. python tests/data/test_replay_compat.py --write``; never rewrite them
with a newer buffer, or they stop pinning the old behaviour.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from v2p.data import ReplayBuffer, ReplaySample

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DRAWS = FIXTURES / "replay_draws.npz"
FRAME_SHAPE = (3, 2, 2)  # (C, H, W)
FRAME_STACK = 3
ALPHA = 0.6


class RecordingGenerator(np.random.Generator):
    """A numpy Generator that logs the draws a sampler makes, as ``(method, low, high, size)``."""

    def __init__(self, seed: int) -> None:
        super().__init__(np.random.PCG64(seed))
        self.calls: list[tuple[int, int, int, int]] = []

    def integers(self, low, high=None, size=None, *args, **kwargs):  # type: ignore[override]
        self.calls.append((0, int(low), -1 if high is None else int(high), int(size or 0)))
        return super().integers(low, high, size, *args, **kwargs)

    def random(self, size=None, *args, **kwargs):  # type: ignore[override]
        self.calls.append((1, 0, 1, int(size or 0)))
        return super().random(size, *args, **kwargs)

    def choice(self, a, size=None, *args, **kwargs):  # type: ignore[override]
        self.calls.append((2, 0, int(a), int(size or 0)))
        return super().choice(a, size, *args, **kwargs)


# ------------------------------------------------------------- scenarios


def _fresh(layout: str, mirror: bool = False) -> ReplayBuffer:
    """An empty buffer of one layout, with a device mirror (on the CPU) if asked: every add
    then reaches the mirror."""
    if layout == "state":
        buffer = ReplayBuffer(capacity=24, num_envs=3, obs_shape=(3,), action_dim=2)
    else:
        buffer = ReplayBuffer(
            capacity=32,
            num_envs=2,
            obs_shape=(FRAME_STACK, *FRAME_SHAPE),
            action_dim=1,
            obs_dtype=np.uint8,
            frame_stack=FRAME_STACK,
        )
    if layout == "frame_features":
        buffer.store_frame_features(_encode_frames, 2 * FRAME_SHAPE[0])
    elif layout == "clip_latents":
        buffer.store_frame_features(_encode_clips, FRAME_STACK * FRAME_SHAPE[0], clip=True)
    if mirror:
        buffer.to_device("cpu")
    return buffer


def _state_buffer(mirror: bool) -> ReplayBuffer:
    buffer = _fresh("state", mirror)
    rng = np.random.default_rng(0)
    for _ in range(11):  # wraps: 8 slots per env
        obs = rng.normal(size=(3, 3)).astype(np.float32)
        buffer.add(
            obs=obs,
            action=rng.normal(size=(3, 2)).astype(np.float32),
            reward=rng.normal(size=3).astype(np.float32),
            err=rng.random(3).astype(np.float32),
            next_obs=obs + 1,
            terminated=rng.random(3) < 0.2,
            source=rng.integers(0, 4, size=3),
        )
    return buffer


def _encode_frames(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32)  # (K, C, H, W) -> (K, 2C)
    return np.concatenate([f.mean(axis=(2, 3)), f[:, :, 0, 0]], axis=1)


def _encode_clips(clips: np.ndarray) -> np.ndarray:
    return clips.astype(np.float32).mean(axis=(3, 4)).reshape(len(clips), -1)  # (K, T * C)


def _video_buffer(layout: str, mirror: bool) -> ReplayBuffer:
    """Two envs, episodes of 1 to 4 steps: the oldest transitions lose frames, so uniform
    draws reject some and prioritised draws must never return them."""
    buffer = _fresh(layout, mirror)
    rng = np.random.default_rng(1)
    n = 2
    history = rng.integers(0, 256, size=(n, 1, *FRAME_SHAPE), dtype=np.uint8)
    history = np.repeat(history, FRAME_STACK, axis=1)
    left = rng.integers(1, 5, size=n)
    episode_start = np.ones(n, dtype=bool)
    for _ in range(60):
        frame = rng.integers(0, 256, size=(n, 1, *FRAME_SHAPE), dtype=np.uint8)
        next_obs = np.concatenate([history[:, 1:], frame], axis=1)
        left -= 1
        ended = left == 0
        buffer.add(
            obs=history,
            action=rng.normal(size=(n, 1)).astype(np.float32),
            reward=rng.normal(size=n).astype(np.float32),
            err=rng.random(n).astype(np.float32),
            next_obs=next_obs,
            terminated=ended & (rng.random(n) < 0.5),
            source=np.arange(n),
            episode_start=episode_start,
        )
        history = next_obs.copy()
        first = rng.integers(0, 256, size=(n, 1, *FRAME_SHAPE), dtype=np.uint8)
        history[ended] = np.repeat(first, FRAME_STACK, axis=1)[ended]
        left[ended] = rng.integers(1, 5, size=int(ended.sum()))
        episode_start = ended
    return buffer


def _prioritised(buffer: ReplayBuffer) -> ReplayBuffer:
    """Distinct priorities, the oldest slots the largest, so a resume must restore them."""
    stored = len(buffer)
    buffer.update_priorities(np.arange(stored), np.linspace(50.0, 1.0, stored))
    return buffer


SCENARIOS: dict[str, Callable[[bool], ReplayBuffer]] = {
    "state": lambda mirror: _prioritised(_state_buffer(mirror)),
    "pixels": lambda mirror: _prioritised(_video_buffer("pixels", mirror)),
    "frame_features": lambda mirror: _prioritised(_video_buffer("frame_features", mirror)),
    "clip_latents": lambda mirror: _prioritised(_video_buffer("clip_latents", mirror)),
}


def _draws(buffer: ReplayBuffer, seed: int) -> tuple[list[ReplaySample], list[tuple]]:
    """Two uniform samples in a row from one generator, and the generator calls they made."""
    rng = RecordingGenerator(seed)
    samples = [buffer.sample(32, rng), buffer.sample(16, rng)]
    return samples, rng.calls


def _old_probabilities(buffer: ReplayBuffer) -> np.ndarray:
    """P(i) of the pre-refactor prioritised draw (its private arrays; used when writing)."""
    stored = len(buffer)
    p = buffer._priority.reshape(-1)[:stored].astype(np.float64) ** ALPHA
    if buffer.frame_stack is not None:
        p[~buffer._valid(np.arange(stored))] = 0.0
    return p / p.sum()


def write_fixtures() -> None:
    FIXTURES.mkdir(exist_ok=True)
    out: dict[str, np.ndarray] = {}
    for name, make in SCENARIOS.items():
        buffer = make(False)
        buffer.save(FIXTURES / f"replay_v1_{name}.npz", token=f"fixture-{name}")
        samples, calls = _draws(buffer, seed=7)
        out[f"{name}/calls"] = np.asarray(calls, dtype=np.int64)
        for k, sample in enumerate(samples):
            for field, value in zip(ReplaySample._fields, sample, strict=True):
                if value is not None:
                    out[f"{name}/{k}/{field}"] = value.numpy()
        out[f"{name}/probabilities"] = _old_probabilities(buffer)
    np.savez_compressed(DRAWS, **out)


# ------------------------------------------------------------------ tests


def _assert_matches_fixture(name: str, samples: list[ReplaySample], calls: list) -> None:
    with np.load(DRAWS) as fixture:
        np.testing.assert_array_equal(np.asarray(calls, dtype=np.int64), fixture[f"{name}/calls"])
        for k, sample in enumerate(samples):
            assert sample.weight is None
            for field, value in zip(ReplaySample._fields, sample, strict=True):
                if value is None:
                    continue
                expected = fixture[f"{name}/{k}/{field}"]
                got = value.numpy()
                assert got.dtype == expected.dtype and got.shape == expected.shape, field
                np.testing.assert_array_equal(got, expected, err_msg=f"{name} {k} {field}")
                assert value.device.type == "cpu"


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("mirror", [False, True], ids=["numpy", "mirror"])
def test_uniform_draws_equal_the_pre_refactor_ones(name: str, mirror: bool) -> None:
    buffer = SCENARIOS[name](mirror)
    _assert_matches_fixture(name, *_draws(buffer, seed=7))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_version_1_side_file_loads_and_samples_as_before(name: str) -> None:
    path = FIXTURES / f"replay_v1_{name}.npz"
    state = ReplayBuffer.read_state(path)
    assert int(state["version"]) == 1 and str(state["token"]) == f"fixture-{name}"
    buffer = _fresh(name)
    buffer.load(path)
    _assert_matches_fixture(name, *_draws(buffer, seed=7))
    np.testing.assert_array_equal(buffer.state_dict()["priority"], state["priority"])


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_version_1_side_file_restores_the_prioritised_distribution(name: str) -> None:
    """The sum tree rebuilt from the stored priorities draws from the old P(i), evicted
    transitions (P = 0) included, and weighs draws by (N P(i))^-beta / max."""
    buffer = _fresh(name)
    buffer.load(FIXTURES / f"replay_v1_{name}.npz")
    with np.load(DRAWS) as fixture:
        expected = fixture[f"{name}/probabilities"]
    rng = np.random.default_rng(0)
    sample = buffer.sample(20_000, rng, priority_alpha=ALPHA, priority_beta=1.0)
    index = sample.index.numpy()
    assert (expected[index] > 0).all()  # never an evicted transition
    freq = np.bincount(index, minlength=expected.size) / index.size
    np.testing.assert_allclose(freq, expected, atol=0.01)
    weight = (expected.size * expected[index]) ** -1.0
    np.testing.assert_allclose(sample.weight.numpy(), weight / weight.max(), rtol=1e-5)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: PYTHONPATH=. python tests/data/test_replay_compat.py --write")
    write_fixtures()
