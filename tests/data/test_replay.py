"""Tests for v2p.data.replay: state and video replay, checkpoints, argument validation."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from v2p.data import ReplayBuffer, ReplaySample

OBS_DIM = 3
ACTION_DIM = 2
FRAME_SHAPE = (3, 2, 2)  # (C, H, W): channel 0 = env, 1 = episode, 2 = step


# ----------------------------------------------------------------- helpers


def add_state_steps(
    buffer: ReplayBuffer, start: int, steps: int, terminated_every: int = 0
) -> np.ndarray:
    """Add `steps` lockstep transitions whose reward is a unique id ``step * N + env``.

    The obs of transition id i is ``[i, i, i]`` and its next_obs ``[i + 0.5, ...]``, so samples
    can be checked against the id. Returns the ids, ``(steps, N)``.
    """
    n = buffer.num_envs
    ids = np.arange(start * n, (start + steps) * n).reshape(steps, n)
    for row in ids:
        obs = np.repeat(row[:, None], OBS_DIM, axis=1).astype(np.float32)
        terminated = (row % terminated_every == 0) if terminated_every else np.zeros(n, bool)
        buffer.add(
            obs=obs,
            action=np.stack([row, -row], axis=1).astype(np.float32),
            reward=row.astype(np.float32),
            err=(row % 3).astype(np.float32),
            next_obs=obs + 0.5,
            terminated=terminated,
            source=row % 5,
        )
    return ids


def sample_ids(sample: ReplaySample) -> np.ndarray:
    return sample.reward.numpy().astype(np.int64)


class FrameHistoryEnv:
    """N synthetic video envs whose clips are frame histories, as the video env produces them.

    Frame pixels encode (env, episode, step); obs at step t is the last T frames, and at an
    episode's start the history is the first frame repeated T times. Episode lengths are drawn
    per env and per episode from [min_len, max_len]; an episode ends by termination or by
    truncation at random.
    """

    def __init__(
        self, num_envs: int, frame_stack: int, min_len: int, max_len: int, seed: int
    ) -> None:
        self.n, self.t = num_envs, frame_stack
        self.min_len, self.max_len = min_len, max_len
        self.rng = np.random.default_rng(seed)
        self.episode = np.full(num_envs, -1)
        self.step_in_episode = np.zeros(num_envs, dtype=np.int64)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.history = np.zeros((num_envs, frame_stack, *FRAME_SHAPE), dtype=np.uint8)

    def frame(self, env: int) -> np.ndarray:
        episode, step = self.episode[env], self.step_in_episode[env]
        assert episode < 256 and step < 256, "the pixel encoding holds values below 256"
        values = np.array([env, episode, step], dtype=np.uint8)
        return np.broadcast_to(values[:, None, None], FRAME_SHAPE)

    def reset(self, envs: np.ndarray) -> np.ndarray:
        for e in envs:
            self.episode[e] += 1
            self.step_in_episode[e] = 0
            self.length[e] = self.rng.integers(self.min_len, self.max_len + 1)
            self.history[e] = self.frame(e)  # repeat-pad with the first frame
        return self.history.copy()

    def step(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns the true next obs (the final one for ended episodes), terminated, truncated."""
        self.step_in_episode += 1
        for e in range(self.n):
            self.history[e] = np.concatenate([self.history[e, 1:], self.frame(e)[None]])
        ended = self.step_in_episode >= self.length
        terminated = ended & (self.rng.random(self.n) < 0.5)
        return self.history.copy(), terminated, ended & ~terminated


def fill_video(
    buffer: ReplayBuffer, env: FrameHistoryEnv, steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll `env` for `steps` lockstep steps into `buffer`, with reward = transition id.

    Returns the expected obs and next_obs clips and the terminated flag of every id.
    """
    n = env.n
    obs = env.reset(np.arange(n))
    episode_start = np.ones(n, dtype=bool)
    expected_obs = np.zeros((steps * n, env.t, *FRAME_SHAPE), dtype=np.uint8)
    expected_next = np.zeros_like(expected_obs)
    expected_terminated = np.zeros(steps * n, dtype=bool)
    for k in range(steps):
        ids = np.arange(k * n, (k + 1) * n)
        next_obs, terminated, truncated = env.step()
        buffer.add(
            obs=obs,
            action=np.zeros((n, 1), dtype=np.float32),
            reward=ids.astype(np.float32),
            err=np.zeros(n, dtype=np.float32),
            next_obs=next_obs,
            terminated=terminated,
            source=np.arange(n),
            episode_start=episode_start,
        )
        expected_obs[ids], expected_next[ids], expected_terminated[ids] = obs, next_obs, terminated
        episode_start = terminated | truncated
        obs = next_obs.copy()
        if episode_start.any():
            obs[episode_start] = env.reset(np.flatnonzero(episode_start))[episode_start]
    return expected_obs, expected_next, expected_terminated


def video_buffer(capacity: int, num_envs: int, frame_stack: int) -> ReplayBuffer:
    return ReplayBuffer(
        capacity=capacity,
        num_envs=num_envs,
        obs_shape=(frame_stack, *FRAME_SHAPE),
        action_dim=1,
        obs_dtype=np.uint8,
        frame_stack=frame_stack,
    )


def assert_samples_equal(a: ReplaySample, b: ReplaySample) -> None:
    for name, x, y in zip(ReplaySample._fields, a, b, strict=True):
        assert (x is None and y is None) or torch.equal(x, y), name


# ------------------------------------------------------------ state buffer


def test_state_add_sample_shapes_and_dtypes() -> None:
    buffer = ReplayBuffer(capacity=40, num_envs=4, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    assert len(buffer) == 0 and not buffer.full
    add_state_steps(buffer, 0, 3, terminated_every=2)
    assert len(buffer) == 12

    batch = buffer.sample(7, np.random.default_rng(0))
    assert isinstance(batch, ReplaySample)
    expected = {
        "obs": ((7, OBS_DIM), torch.float32),
        "action": ((7, ACTION_DIM), torch.float32),
        "reward": ((7,), torch.float32),
        "err": ((7,), torch.float32),
        "next_obs": ((7, OBS_DIM), torch.float32),
        "terminated": ((7,), torch.float32),
        "source": ((7,), torch.int64),
    }
    for name, (shape, dtype) in expected.items():
        value = getattr(batch, name)
        assert value.shape == shape, name
        assert value.dtype == dtype, name
        assert value.device.type == "cpu", name
    # Every field of a sample belongs to the same transition.
    ids = sample_ids(batch)
    assert np.array_equal(batch.obs.numpy(), np.repeat(ids[:, None], OBS_DIM, 1))
    assert np.array_equal(batch.next_obs.numpy(), np.repeat(ids[:, None], OBS_DIM, 1) + 0.5)
    assert np.array_equal(batch.action.numpy(), np.stack([ids, -ids], axis=1))
    assert np.array_equal(batch.err.numpy(), ids % 3)
    assert np.array_equal(batch.source.numpy(), ids % 5)
    assert np.array_equal(batch.terminated.numpy(), (ids % 2 == 0).astype(np.float32))


def test_state_wraparound_keeps_newest_capacity_transitions() -> None:
    buffer = ReplayBuffer(capacity=12, num_envs=3, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    ids = add_state_steps(buffer, 0, 4)
    assert buffer.full and len(buffer) == 12
    ids = np.concatenate([ids, add_state_steps(buffer, 4, 7)])  # 11 steps, 4 kept per env
    assert len(buffer) == 12

    newest = set(ids[-4:].ravel().tolist())
    assert set(buffer.state_dict()["reward"].astype(int).ravel().tolist()) == newest
    seen = set(sample_ids(buffer.sample(5000, np.random.default_rng(1))).tolist())
    assert seen == newest


def test_state_sample_is_uniform() -> None:
    buffer = ReplayBuffer(capacity=20, num_envs=2, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    add_state_steps(buffer, 0, 13)  # wraps: ids 6..25 stay
    rng = np.random.default_rng(123)
    draws = np.concatenate([sample_ids(buffer.sample(1000, rng)) for _ in range(100)])
    counts = np.bincount(draws - 6, minlength=20)
    assert counts.size == 20 and counts.sum() == draws.size
    expected = draws.size / 20
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 43.8  # 0.999 quantile of chi-square with 19 degrees of freedom


def test_same_seed_gives_identical_samples() -> None:
    buffer = ReplayBuffer(capacity=64, num_envs=4, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    add_state_steps(buffer, 0, 20)
    a = buffer.sample(32, np.random.default_rng(7))
    b = buffer.sample(32, np.random.default_rng(7))
    c = buffer.sample(32, np.random.default_rng(8))
    assert_samples_equal(a, b)
    assert not torch.equal(a.reward, c.reward)


def test_truncation_is_not_termination() -> None:
    """Only true terminations are stored as terminated; a truncated end still bootstraps."""
    buffer = ReplayBuffer(capacity=8, num_envs=2, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    # Step 0: both episodes go on. Step 1: env 0 terminates, env 1 hits its time limit.
    for step, (terminated, truncated) in enumerate([([0, 0], [0, 0]), ([1, 0], [0, 1])]):
        buffer.add(
            obs=np.zeros((2, OBS_DIM)),
            action=np.zeros((2, ACTION_DIM)),
            reward=np.array([step, step + 10.0]),
            err=np.array(truncated, dtype=np.float32),
            next_obs=np.ones((2, OBS_DIM)),
            terminated=np.array(terminated, dtype=bool),
            source=np.zeros(2, dtype=np.int64),
        )
    batch = buffer.sample(500, np.random.default_rng(0))
    by_reward = dict(zip(batch.reward.tolist(), batch.terminated.tolist(), strict=True))
    assert by_reward == {0.0: 0.0, 10.0: 0.0, 1.0: 1.0, 11.0: 0.0}


def test_add_rejects_bad_shapes_and_dtypes() -> None:
    buffer = ReplayBuffer(capacity=8, num_envs=2, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    good = {
        "obs": np.zeros((2, OBS_DIM)),
        "action": np.zeros((2, ACTION_DIM)),
        "reward": np.zeros(2),
        "err": np.zeros(2),
        "next_obs": np.zeros((2, OBS_DIM)),
        "terminated": np.zeros(2, dtype=bool),
        "source": np.zeros(2, dtype=np.int64),
    }
    with pytest.raises(ValueError, match=r"action must have shape \(2, 2\)"):
        buffer.add(**{**good, "action": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="source has dtype float64"):
        buffer.add(**{**good, "source": np.zeros(2)})
    assert len(buffer) == 0
    buffer.add(**good)
    assert len(buffer) == 2


def test_sample_from_empty_buffer_raises() -> None:
    buffer = ReplayBuffer(capacity=8, num_envs=2, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4, np.random.default_rng(0))


# ------------------------------------------------------------ video buffer


def test_video_stacks_equal_env_clips_across_episodes_and_wraparound() -> None:
    """Uneven episodes (2..11 steps per env), terminations and truncations, ring wrap-around."""
    frame_stack, num_envs = 4, 3
    buffer = video_buffer(capacity=3 * 40, num_envs=num_envs, frame_stack=frame_stack)
    env = FrameHistoryEnv(num_envs, frame_stack, min_len=2, max_len=11, seed=0)
    steps = 230
    expected_obs, expected_next, expected_terminated = fill_video(buffer, env, steps)
    assert buffer.frame_capacity is not None
    assert env.episode.min() >= 20  # many episodes per env, of different lengths
    assert buffer.state_dict()["frame_count"].min() > 4 * buffer.frame_capacity  # ring wrapped

    batch = buffer.sample(4000, np.random.default_rng(0))
    ids = sample_ids(batch)
    assert batch.obs.dtype == torch.uint8 and batch.next_obs.dtype == torch.uint8
    assert batch.obs.shape == (4000, frame_stack, *FRAME_SHAPE)
    assert batch.obs.is_contiguous() and batch.next_obs.is_contiguous()
    assert ids.min() >= (steps - 40) * num_envs  # only the newest 40 steps per env are stored
    np.testing.assert_array_equal(batch.obs.numpy(), expected_obs[ids])
    np.testing.assert_array_equal(batch.next_obs.numpy(), expected_next[ids])
    np.testing.assert_array_equal(batch.terminated.numpy(), expected_terminated[ids])
    # Episodes of at least 2 steps leave nearly every stored transition usable.
    assert np.unique(ids).size > 0.9 * len(buffer)


def test_video_short_episodes_never_return_wrong_frames() -> None:
    """One-step episodes write two frames per transition, so the oldest transitions lose frames
    before their slot is reused: they must be skipped, never served with overwritten frames."""
    frame_stack, num_envs = 4, 2
    buffer = video_buffer(capacity=2 * 64, num_envs=num_envs, frame_stack=frame_stack)
    env = FrameHistoryEnv(num_envs, frame_stack, min_len=1, max_len=1, seed=1)
    expected_obs, expected_next, _ = fill_video(buffer, env, steps=250)

    batch = buffer.sample(20000, np.random.default_rng(2))
    ids = sample_ids(batch)
    np.testing.assert_array_equal(batch.obs.numpy(), expected_obs[ids])
    np.testing.assert_array_equal(batch.next_obs.numpy(), expected_next[ids])
    usable = np.unique(ids).size
    assert 0.5 * len(buffer) <= usable < len(buffer)
    assert ids.max() == 250 * num_envs - 1  # the newest transition is always usable


@settings(max_examples=40, deadline=None)
@given(
    num_envs=st.integers(1, 3),
    frame_stack=st.integers(1, 4),
    per_env_capacity=st.integers(1, 12),
    min_len=st.integers(1, 6),
    extra_len=st.integers(0, 6),
    steps=st.integers(1, 60),
    seed=st.integers(0, 2**16),
)
def test_video_stacks_property(
    num_envs: int,
    frame_stack: int,
    per_env_capacity: int,
    min_len: int,
    extra_len: int,
    steps: int,
    seed: int,
) -> None:
    buffer = video_buffer(per_env_capacity * num_envs, num_envs, frame_stack)
    env = FrameHistoryEnv(num_envs, frame_stack, min_len, min_len + extra_len, seed)
    expected_obs, expected_next, _ = fill_video(buffer, env, steps)
    assert len(buffer) == min(steps, per_env_capacity) * num_envs
    batch = buffer.sample(64, np.random.default_rng(seed))
    ids = sample_ids(batch)
    assert ids.min() >= (steps - per_env_capacity) * num_envs
    np.testing.assert_array_equal(batch.obs.numpy(), expected_obs[ids])
    np.testing.assert_array_equal(batch.next_obs.numpy(), expected_next[ids])


def test_video_transition_costs_about_one_frame() -> None:
    frame_shape = (3, 64, 64)
    capacity = 4096
    buffer = ReplayBuffer(
        capacity=capacity,
        num_envs=4,
        obs_shape=(8, *frame_shape),
        action_dim=2,
        obs_dtype=np.uint8,
        frame_stack=8,
    )
    frame_bytes = int(np.prod(frame_shape))
    frames_per_transition = buffer.nbytes / (capacity * frame_bytes)
    assert 1.0 <= frames_per_transition < 1.3


def test_video_add_requires_episode_start_and_detects_lost_boundaries() -> None:
    buffer = video_buffer(capacity=16, num_envs=2, frame_stack=2)
    env = FrameHistoryEnv(2, 2, min_len=5, max_len=5, seed=0)
    obs = env.reset(np.arange(2))
    next_obs, terminated, _ = env.step()
    kwargs = {
        "action": np.zeros((2, 1)),
        "reward": np.zeros(2),
        "err": np.zeros(2),
        "terminated": terminated,
        "source": np.zeros(2, dtype=np.int64),
    }
    with pytest.raises(ValueError, match="episode_start"):
        buffer.add(obs=obs, next_obs=next_obs, **kwargs)
    buffer.add(obs=obs, next_obs=next_obs, episode_start=np.ones(2, dtype=bool), **kwargs)
    # Env 1 is reset but the caller does not flag it as an episode start.
    obs = next_obs.copy()
    obs[1:] = env.reset(np.array([1]))[1:]
    next_obs, _, _ = env.step()
    with pytest.raises(ValueError, match=r"env\(s\) \[1\].*episode_start"):
        buffer.add(obs=obs, next_obs=next_obs, episode_start=np.zeros(2, dtype=bool), **kwargs)
    assert len(buffer) == 2


# ------------------------------------------------------------- checkpoints


def _filled_state_buffer() -> ReplayBuffer:
    buffer = ReplayBuffer(capacity=24, num_envs=3, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    add_state_steps(buffer, 0, 11, terminated_every=4)
    return buffer


def _filled_video_buffer() -> ReplayBuffer:
    buffer = video_buffer(capacity=2 * 16, num_envs=2, frame_stack=3)
    fill_video(buffer, FrameHistoryEnv(2, 3, min_len=2, max_len=7, seed=3), steps=45)
    return buffer


def _continue(buffer: ReplayBuffer) -> None:
    """Add more transitions, of the kind the buffer holds, to check restored pointers."""
    if buffer.frame_stack is None:
        add_state_steps(buffer, 11, 5)
        return
    n, t = buffer.num_envs, buffer.frame_stack
    clips = np.full((n, t, *FRAME_SHAPE), 200, dtype=np.uint8)
    # A new episode, then a step that continues it (which needs the restored frame counters).
    for step, episode_start in enumerate([np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]):
        buffer.add(
            obs=clips + step,
            action=np.zeros((n, 1)),
            reward=np.full(n, 999.0 + step),
            err=np.zeros(n),
            next_obs=clips + step + 1,
            terminated=np.zeros(n, dtype=bool),
            source=np.zeros(n, dtype=np.int64),
            episode_start=episode_start,
        )


@pytest.mark.parametrize("make", [_filled_state_buffer, _filled_video_buffer])
def test_state_dict_round_trip(make) -> None:
    original = make()
    state = original.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    restored = ReplayBuffer(
        capacity=original.capacity,
        num_envs=original.num_envs,
        obs_shape=original.obs_shape,
        action_dim=original.action_dim,
        obs_dtype=original.obs_dtype,
        frame_stack=original.frame_stack,
    )
    restored.load_state_dict(state)
    assert len(restored) == len(original) and restored.full == original.full
    assert_samples_equal(
        original.sample(64, np.random.default_rng(5)), restored.sample(64, np.random.default_rng(5))
    )
    _continue(original)
    _continue(restored)
    assert_samples_equal(
        original.sample(64, np.random.default_rng(6)), restored.sample(64, np.random.default_rng(6))
    )
    # The state dict is a snapshot: later adds do not reach into it.
    assert not np.array_equal(state["reward"], original.state_dict()["reward"])


@pytest.mark.parametrize("make", [_filled_state_buffer, _filled_video_buffer])
def test_save_load_round_trip(make, tmp_path) -> None:
    original = make()
    path = tmp_path / "replay.buffer"
    original.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["replay.buffer"]  # no suffix, no temp file
    restored = make()
    _continue(restored)  # diverge, so the load has something to undo
    restored.load(path)
    assert_samples_equal(
        original.sample(64, np.random.default_rng(9)), restored.sample(64, np.random.default_rng(9))
    )


def test_load_mismatching_buffer_names_the_field(tmp_path) -> None:
    path = tmp_path / "replay.npz"
    _filled_state_buffer().save(path)
    wider = ReplayBuffer(capacity=24, num_envs=3, obs_shape=(4,), action_dim=ACTION_DIM)
    with pytest.raises(ValueError, match=r"replay\.npz.*'obs_shape'"):
        wider.load(path)
    as_float64 = ReplayBuffer(
        capacity=24, num_envs=3, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM, obs_dtype=np.float64
    )
    with pytest.raises(ValueError, match="'obs_dtype'"):
        as_float64.load(path)
    bigger = ReplayBuffer(capacity=48, num_envs=3, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    with pytest.raises(ValueError, match="'capacity'"):
        bigger.load(path)


def test_load_state_dict_names_bad_array_field() -> None:
    buffer = _filled_video_buffer()
    state = buffer.state_dict()
    target = _filled_video_buffer()
    with pytest.raises(ValueError, match="'reward' has shape"):
        target.load_state_dict({**state, "reward": state["reward"][:-1]})
    with pytest.raises(ValueError, match=r"'frames' has shape .* dtype float32"):
        target.load_state_dict({**state, "frames": state["frames"].astype(np.float32)})
    with pytest.raises(ValueError, match="missing field 'frame_count'"):
        target.load_state_dict({k: v for k, v in state.items() if k != "frame_count"})
    with pytest.raises(ValueError, match="'pos' is 99"):
        target.load_state_dict({**state, "pos": np.asarray(99)})
    # A state buffer's state does not load into a video buffer of the same capacity.
    state_buffer = ReplayBuffer(capacity=32, num_envs=2, obs_shape=(OBS_DIM,), action_dim=1)
    with pytest.raises(ValueError, match="'obs_shape'"):
        target.load_state_dict(state_buffer.state_dict())


def test_load_missing_or_corrupt_file_names_the_path(tmp_path) -> None:
    buffer = _filled_state_buffer()
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        buffer.load(missing)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"definitely not a zip archive")
    with pytest.raises(ValueError, match=re.escape(str(garbage))):
        buffer.load(garbage)

    good = tmp_path / "good.npz"
    buffer.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=re.escape(str(truncated))):
        buffer.load(truncated)


# ------------------------------------------------------------- constructor


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": 2.5}, "capacity"),
        ({"capacity": 3, "num_envs": 4}, "capacity"),
        ({"num_envs": 0}, "num_envs"),
        ({"num_envs": True}, "num_envs"),
        ({"obs_shape": ()}, "obs_shape"),
        ({"obs_shape": (3, 0)}, "obs_shape"),
        ({"obs_shape": 3}, "obs_shape"),
        ({"action_dim": -1}, "action_dim"),
        ({"obs_shape": (4, 3, 8, 8), "frame_stack": 0}, "frame_stack"),
        ({"obs_shape": (4, 3, 8, 8), "frame_stack": 8}, "frame_stack"),
        ({"obs_shape": (4,), "frame_stack": 4}, "frame_stack"),
    ],
)
def test_bad_constructor_args_name_the_argument(kwargs: dict, name: str) -> None:
    args = {"capacity": 16, "num_envs": 4, "obs_shape": (OBS_DIM,), "action_dim": ACTION_DIM}
    with pytest.raises(ValueError, match=name):
        ReplayBuffer(**{**args, **kwargs})


def test_bad_sample_args() -> None:
    buffer = _filled_state_buffer()
    with pytest.raises(ValueError, match="batch_size"):
        buffer.sample(0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="generator"):
        buffer.sample(4, 0)  # type: ignore[arg-type]


# ------------------------------------------------------------ prioritised replay


def test_prioritised_draws_follow_priorities_and_weight_them() -> None:
    buffer = ReplayBuffer(capacity=4, num_envs=1, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    add_state_steps(buffer, 0, 4)
    buffer.update_priorities(np.arange(4), np.array([1.0, 1.0, 2.0, 4.0]))
    sample = buffer.sample(20_000, np.random.default_rng(0), priority_alpha=1.0, priority_beta=1.0)
    freq = np.bincount(sample.index.numpy(), minlength=4) / 20_000
    np.testing.assert_allclose(freq, [0.125, 0.125, 0.25, 0.5], atol=0.01)
    # (N P(i))^-beta, normalised by the largest: 1 for the least likely transitions.
    expected = {0: 1.0, 1: 1.0, 2: 0.5, 3: 0.25}
    for i, w in zip(sample.index.tolist()[:50], sample.weight.tolist()[:50], strict=True):
        assert w == pytest.approx(expected[i])
    np.testing.assert_array_equal(sample_ids(sample), sample.index.numpy())  # id = slot here
    # alpha = 0 is uniform again; a uniform draw has unit weights.
    uniform = buffer.sample(20_000, np.random.default_rng(1), priority_alpha=0.0)
    np.testing.assert_allclose(np.bincount(uniform.index.numpy()) / 20_000, 0.25, atol=0.01)
    assert buffer.sample(8, np.random.default_rng(2)).weight is None


def test_new_transitions_get_the_largest_priority_and_bad_priorities_are_refused() -> None:
    buffer = ReplayBuffer(capacity=8, num_envs=2, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    add_state_steps(buffer, 0, 2)
    buffer.update_priorities(np.array([0, 3]), np.array([0.5, 3.0]))
    add_state_steps(buffer, 2, 1)
    np.testing.assert_array_equal(buffer.state_dict()["priority"][2], [3.0, 3.0])
    with pytest.raises(ValueError, match="finite and > 0"):
        buffer.update_priorities(np.array([1]), np.array([0.0]))
    # A state saved before priorities existed loads with equal priorities.
    state = buffer.state_dict()
    del state["priority"]
    restored = ReplayBuffer(capacity=8, num_envs=2, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    restored.load_state_dict(state)
    assert (restored.state_dict()["priority"] == 1).all()


def test_prioritised_video_draws_never_return_evicted_frames() -> None:
    buffer = video_buffer(capacity=2 * 16, num_envs=2, frame_stack=3)
    expected_obs, expected_next, _ = fill_video(
        buffer, FrameHistoryEnv(2, 3, min_len=1, max_len=3, seed=1), steps=60
    )
    # Make the oldest slots (whose frames may be gone) the most likely ones.
    buffer.update_priorities(np.arange(32), np.linspace(100.0, 1.0, 32))
    sample = buffer.sample(512, np.random.default_rng(0), priority_alpha=1.0)
    ids = sample_ids(sample)
    np.testing.assert_array_equal(sample.obs.numpy(), expected_obs[ids])
    np.testing.assert_array_equal(sample.next_obs.numpy(), expected_next[ids])


# ------------------------------------------------------------ device mirror


@pytest.mark.parametrize("make", [_filled_state_buffer, _filled_video_buffer])
def test_device_mirror_samples_what_the_numpy_storage_samples(make) -> None:
    host, mirrored = make(), make()
    mirrored.to_device("cpu")  # the torch path; on a GPU machine the same code runs on cuda
    for buffer in (host, mirrored):
        _continue(buffer)  # adds after the mirror exists must reach it
    a = host.sample(64, np.random.default_rng(3))
    b = mirrored.sample(64, np.random.default_rng(3))
    assert_samples_equal(a, b)
    pa = host.sample(16, np.random.default_rng(4), priority_alpha=0.5)
    pb = mirrored.sample(16, np.random.default_rng(4), priority_alpha=0.5)
    assert_samples_equal(pa, pb)
    # A restored buffer refreshes its mirror from the loaded storage.
    restored = make()
    restored.to_device("cpu")
    restored.load_state_dict(host.state_dict())
    assert_samples_equal(a, restored.sample(64, np.random.default_rng(3)))


# ------------------------------------------------------------- frame features


def _frame_features(frames: np.ndarray) -> np.ndarray:
    """A fixed per-frame function standing in for a frozen CNN: channel means and one pixel."""
    f = frames.astype(np.float32)
    return np.concatenate([f.mean(axis=(2, 3)), f[:, :, 0, 0]], axis=1)  # (K, 2C)


FEATURE_DIM = 2 * FRAME_SHAPE[0]


def _feature_buffer() -> ReplayBuffer:
    buffer = video_buffer(capacity=2 * 16, num_envs=2, frame_stack=3)
    buffer.store_frame_features(_frame_features, FEATURE_DIM)
    return buffer


def test_a_frame_feature_buffer_samples_the_features_of_the_pixel_sample() -> None:
    """Same transitions, same draw: the feature stacks are the pixel stacks, frame by frame,
    through the encoder, across episode starts (repeat-padding) and ring wrap-around."""
    pixels, features = video_buffer(2 * 16, 2, 3), _feature_buffer()
    for buffer in (pixels, features):
        fill_video(buffer, FrameHistoryEnv(2, 3, min_len=1, max_len=7, seed=3), steps=45)
    a = pixels.sample(500, np.random.default_rng(0))
    b = features.sample(500, np.random.default_rng(0))
    for clips, stacks in ((a.obs, b.obs), (a.next_obs, b.next_obs)):
        expected = _frame_features(clips.reshape(-1, *FRAME_SHAPE).numpy()).reshape(500, 3, -1)
        assert stacks.dtype == torch.float32 and stacks.shape == (500, 3, FEATURE_DIM)
        np.testing.assert_array_equal(stacks.numpy(), expected)
    for name in ("action", "reward", "err", "terminated", "source", "index"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def _assert_round_trips(make: Callable[[], ReplayBuffer]) -> ReplayBuffer:
    """Fill a buffer from ``make``, restore its state into two more (one with a device
    mirror), add to all three and check they sample alike; return the first."""
    original = make()
    fill_video(original, FrameHistoryEnv(2, 3, min_len=2, max_len=7, seed=3), steps=45)
    restored, mirrored = make(), make()
    mirrored.to_device("cpu")
    for buffer in (restored, mirrored):
        buffer.load_state_dict(original.state_dict())
    for buffer in (original, restored, mirrored):
        _continue(buffer)  # continuing an episode checks the restored newest raw frames
    reference = original.sample(64, np.random.default_rng(6))
    assert_samples_equal(reference, restored.sample(64, np.random.default_rng(6)))
    assert_samples_equal(reference, mirrored.sample(64, np.random.default_rng(6)))
    return original


def test_a_frame_feature_buffer_round_trips_and_refuses_a_pixel_buffer_state() -> None:
    original = _assert_round_trips(_feature_buffer)
    with pytest.raises(ValueError, match=r"'frame_features' is 6.*built with 0"):
        video_buffer(2 * 16, 2, 3).load_state_dict(original.state_dict())


def test_frame_features_need_an_empty_video_buffer_and_features_of_the_stated_size() -> None:
    state = ReplayBuffer(capacity=24, num_envs=3, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    with pytest.raises(ValueError, match="needs a video buffer"):
        state.store_frame_features(_frame_features, FEATURE_DIM)
    with pytest.raises(RuntimeError, match="empty buffer"):
        _filled_video_buffer().store_frame_features(_frame_features, FEATURE_DIM)
    wrong = video_buffer(2 * 16, 2, 3)
    wrong.store_frame_features(_frame_features, FEATURE_DIM + 1)
    with pytest.raises(ValueError, match=r"features of shape \(4, 6\).*expected \(4, 7\)"):
        fill_video(wrong, FrameHistoryEnv(2, 3, min_len=2, max_len=7, seed=3), steps=1)


# ---------------------------------------------------------------- clip latents


def _clip_latents(clips: np.ndarray) -> np.ndarray:
    """A fixed clip function standing in for a frozen clip encoder: each frame's channel
    means, in order, so the latent depends on every frame of the clip and on their order."""
    return clips.astype(np.float32).mean(axis=(3, 4)).reshape(len(clips), -1)  # (K, T * C)


def _clip_latent_buffer(frame_stack: int = 3) -> ReplayBuffer:
    buffer = video_buffer(capacity=2 * 16, num_envs=2, frame_stack=frame_stack)
    buffer.store_frame_features(_clip_latents, frame_stack * FRAME_SHAPE[0], clip=True)
    return buffer


@pytest.mark.parametrize("min_len", [1, 8])
def test_a_clip_latent_buffer_samples_the_latents_of_each_transitions_clips(min_len) -> None:
    """Every sampled obs / next_obs is the encoder's latent of that transition's own clip,
    whatever the episode lengths (one-step episodes evict frames early) and across the ring's
    wrap-around and episode starts."""
    buffer = _clip_latent_buffer()
    env = FrameHistoryEnv(2, 3, min_len=min_len, max_len=min_len + 6, seed=3)
    expected_obs, expected_next, _ = fill_video(buffer, env, steps=45)
    sample = buffer.sample(500, np.random.default_rng(0))
    ids = sample_ids(sample)
    assert sample.obs.dtype == torch.float32 and sample.obs.shape == (500, 3 * FRAME_SHAPE[0])
    np.testing.assert_array_equal(sample.obs.numpy(), _clip_latents(expected_obs[ids]))
    np.testing.assert_array_equal(sample.next_obs.numpy(), _clip_latents(expected_next[ids]))


def test_a_clip_latent_buffer_draws_like_a_pixel_buffer_when_no_frame_is_evicted() -> None:
    pixels, latents = video_buffer(2 * 16, 2, 3), _clip_latent_buffer()
    for buffer in (pixels, latents):
        fill_video(buffer, FrameHistoryEnv(2, 3, min_len=8, max_len=12, seed=4), steps=45)
    a = pixels.sample(64, np.random.default_rng(1))
    b = latents.sample(64, np.random.default_rng(1))
    np.testing.assert_array_equal(b.obs.numpy(), _clip_latents(a.obs.numpy()))
    np.testing.assert_array_equal(b.next_obs.numpy(), _clip_latents(a.next_obs.numpy()))
    for name in ("action", "reward", "err", "terminated", "source", "index"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_a_clip_latent_buffer_round_trips_and_refuses_other_layouts() -> None:
    original = _assert_round_trips(_clip_latent_buffer)
    # Per-frame features of the same size are a different layout: refused, and named.
    features = video_buffer(2 * 16, 2, 3)
    features.store_frame_features(_frame_features, 3 * FRAME_SHAPE[0])
    with pytest.raises(ValueError, match=r"'clip_features' is True.*stores clip latents"):
        features.load_state_dict(original.state_dict())
    with pytest.raises(ValueError, match=r"'frame_features' is 9.*stores clip latents"):
        video_buffer(2 * 16, 2, 3).load_state_dict(original.state_dict())


def test_a_clip_encoder_returning_the_wrong_size_is_named() -> None:
    wrong = video_buffer(2 * 16, 2, 3)
    wrong.store_frame_features(_clip_latents, 3 * FRAME_SHAPE[0] + 1, clip=True)
    with pytest.raises(ValueError, match=r"clip encoder returned features of shape \(4, 9\)"):
        fill_video(wrong, FrameHistoryEnv(2, 3, min_len=2, max_len=7, seed=3), steps=1)
