"""Tests for prioritised replay on the sum tree, and the frame ring's unusable-prefix rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from v2p.data import ReplayBuffer, ReplaySample
from v2p.data.replay.frames import FrameStorage

FRAME_SHAPE = (1, 2, 2)  # (C, H, W)


def add_states(buffer: ReplayBuffer, start: int, steps: int) -> None:
    """Lockstep state transitions whose reward and obs are the id ``step * N + env``."""
    n = buffer.num_envs
    for row in np.arange(start * n, (start + steps) * n).reshape(steps, n):
        obs = np.repeat(row[:, None], 2, axis=1).astype(np.float32)
        buffer.add(
            obs=obs,
            action=np.zeros((n, 1), np.float32),
            reward=row.astype(np.float32),
            err=np.zeros(n, np.float32),
            next_obs=obs + 0.5,
            terminated=np.zeros(n, bool),
            source=np.zeros(n, np.int64),
        )


class Episodes:
    """Video transitions of episodes 1 to ``max_len`` steps long, reward = transition id, and
    the obs / next_obs clips of every id, to check what samples return."""

    def __init__(self, buffer: ReplayBuffer | FrameStorage, max_len: int, seed: int) -> None:
        self.buffer, self.max_len = buffer, max_len
        self.n, self.t = buffer.num_envs, buffer.frame_stack
        self.rng = np.random.default_rng(seed)
        self.obs = self._reset_clips()
        self.left = self.rng.integers(1, max_len + 1, size=self.n)
        self.start = np.ones(self.n, dtype=bool)
        self.clips: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.next_id = 0

    def _reset_clips(self) -> np.ndarray:
        first = self.rng.integers(0, 256, size=(self.n, 1, *FRAME_SHAPE), dtype=np.uint8)
        return np.repeat(first, self.t, axis=1)

    def add(self, steps: int) -> None:
        for _ in range(steps):
            frame = self.rng.integers(0, 256, size=(self.n, 1, *FRAME_SHAPE), dtype=np.uint8)
            next_obs = np.concatenate([self.obs[:, 1:], frame], axis=1)
            ids = np.arange(self.next_id, self.next_id + self.n)
            self.buffer.add(
                self.obs,
                np.zeros((self.n, 1), np.float32),
                ids.astype(np.float32),
                np.zeros(self.n, np.float32),
                next_obs,
                np.zeros(self.n, bool),
                np.zeros(self.n, np.int64),
                self.start,
            )
            for e, i in enumerate(ids):
                self.clips[int(i)] = (self.obs[e].copy(), next_obs[e].copy())
            self.next_id += self.n
            self.left -= 1
            self.start = self.left == 0
            self.obs = next_obs
            self.obs[self.start] = self._reset_clips()[self.start]
            self.left[self.start] = self.rng.integers(1, self.max_len + 1, int(self.start.sum()))

    def check(self, sample: ReplaySample) -> None:
        ids = sample.reward.int().tolist()
        np.testing.assert_array_equal(sample.obs.numpy(), [self.clips[i][0] for i in ids])
        np.testing.assert_array_equal(sample.next_obs.numpy(), [self.clips[i][1] for i in ids])


def video_buffer(per_env: int = 16, num_envs: int = 2, frame_stack: int = 3) -> ReplayBuffer:
    return ReplayBuffer(
        capacity=per_env * num_envs,
        num_envs=num_envs,
        obs_shape=(frame_stack, *FRAME_SHAPE),
        action_dim=1,
        obs_dtype=np.uint8,
        frame_stack=frame_stack,
    )


def restored(buffer: ReplayBuffer) -> ReplayBuffer:
    """A new buffer loaded from ``buffer``'s state: its sum tree is rebuilt from priorities."""
    copy = ReplayBuffer(
        capacity=buffer.capacity,
        num_envs=buffer.num_envs,
        obs_shape=buffer.obs_shape,
        action_dim=buffer.action_dim,
        obs_dtype=buffer.obs_dtype,
        frame_stack=buffer.frame_stack,
    )
    copy.load_state_dict(buffer.state_dict())
    return copy


def assert_same(a: ReplaySample, b: ReplaySample) -> None:
    for name, x, y in zip(ReplaySample._fields, a, b, strict=True):
        assert (x is None and y is None) or bool((x == y).all()), name


# ------------------------------------------------------------------ state


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_frequencies_follow_priorities_to_the_alpha_and_weights_follow_n_p(alpha) -> None:
    """A buffer that wrapped, priorities set on the tree it already holds."""
    buffer = ReplayBuffer(capacity=12, num_envs=3, obs_shape=(2,), action_dim=1)
    add_states(buffer, 0, 6)  # 4 slots per env: ids 6..17 stay
    buffer.sample(1, np.random.default_rng(0), priority_alpha=alpha)  # builds the tree
    priority = np.arange(1.0, 13.0)
    buffer.update_priorities(np.arange(12), priority)
    sample = buffer.sample(200_000, np.random.default_rng(1), alpha, priority_beta=0.7)
    p = priority**alpha / (priority**alpha).sum()
    index = sample.index.numpy()
    np.testing.assert_allclose(np.bincount(index, minlength=12) / index.size, p, atol=0.004)
    weight = (12 * p[index]) ** -0.7
    np.testing.assert_allclose(sample.weight.numpy(), weight / weight.max(), rtol=1e-5)
    assert sample.weight.dtype == torch.float32


def test_new_transitions_enter_the_tree_with_the_largest_priority() -> None:
    buffer = ReplayBuffer(capacity=8, num_envs=2, obs_shape=(2,), action_dim=1)
    add_states(buffer, 0, 1)  # ids 0, 1 at slot 0
    buffer.sample(1, np.random.default_rng(0), priority_alpha=1.0)
    buffer.update_priorities(np.array([0, 1]), np.array([1.0, 9.0]))
    add_states(buffer, 1, 1)  # ids 2, 3 get priority 9
    sample = buffer.sample(100_000, np.random.default_rng(1), priority_alpha=1.0)
    freq = np.bincount(sample.index.numpy(), minlength=8) / 100_000
    np.testing.assert_allclose(freq, np.array([1, 9, 9, 9, 0, 0, 0, 0]) / 28, atol=0.005)


def test_a_restored_buffer_draws_exactly_as_the_live_one() -> None:
    """The tree kept up to date by adds and updates equals the one rebuilt from the stored
    priorities, so a resumed run draws the same transitions."""
    buffer = ReplayBuffer(capacity=30, num_envs=3, obs_shape=(2,), action_dim=1)
    rng = np.random.default_rng(0)
    for step in range(25):
        add_states(buffer, step, 1)
        sample = buffer.sample(8, rng, priority_alpha=0.6)
        buffer.update_priorities(sample.index.numpy(), rng.random(8) * 10 + 0.1)
    copy = restored(buffer)
    for seed in range(3):
        a = buffer.sample(64, np.random.default_rng(seed), 0.6, 0.4)
        b = copy.sample(64, np.random.default_rng(seed), 0.6, 0.4)
        assert_same(a, b)


# ------------------------------------------------------------------ video


def test_prioritised_video_never_draws_lost_frames_while_adding_and_scoring() -> None:
    """One- to three-step episodes lose the oldest transitions' frames between draws; the
    lazily blocked leaves must follow, and match a tree rebuilt from scratch."""
    buffer = video_buffer()
    episodes = Episodes(buffer, max_len=3, seed=0)
    episodes.add(5)
    rng = np.random.default_rng(1)
    previous = None
    for _ in range(40):
        sample = buffer.sample(32, rng, priority_alpha=1.0)
        episodes.check(sample)
        episodes.add(int(rng.integers(1, 4)))
        if previous is not None:
            # Scores arrive late, for the draw before last: some of its transitions have lost
            # their frames and been blocked since. The oldest get the largest priorities, so a
            # leaf unblocked by a score would be drawn often.
            age = previous.reward.numpy()
            buffer.update_priorities(previous.index.numpy(), 1000.0 / (1.0 + age - age.min()))
        previous = sample
    big = buffer.sample(5000, np.random.default_rng(2), priority_alpha=1.0)
    episodes.check(big)
    assert_same(big, restored(buffer).sample(5000, np.random.default_rng(2), priority_alpha=1.0))


def test_prioritised_video_without_lost_frames_draws_every_transition() -> None:
    buffer = video_buffer(per_env=8)
    episodes = Episodes(buffer, max_len=1, seed=3)  # one-step episodes, ring not yet wrapped
    episodes.add(4)
    sample = buffer.sample(4000, np.random.default_rng(0), priority_alpha=0.0)
    assert sorted(set(sample.reward.int().tolist())) == list(range(8))
    np.testing.assert_array_equal(sample.weight.numpy(), np.ones(4000, np.float32))


@settings(max_examples=60, deadline=None)
@given(
    num_envs=st.integers(1, 3),
    frame_stack=st.integers(1, 4),
    per_env=st.integers(1, 12),
    max_len=st.integers(1, 6),
    steps=st.integers(1, 60),
    seed=st.integers(0, 2**16),
)
def test_unusable_transitions_are_each_envs_oldest(
    num_envs, frame_stack, per_env, max_len, steps, seed
) -> None:
    """lost_per_env (bisection) against a brute-force check of every stored transition."""
    storage = FrameStorage(
        per_env_capacity=per_env,
        num_envs=num_envs,
        obs_shape=(frame_stack, *FRAME_SHAPE),
        action_dim=1,
        obs_dtype=np.dtype(np.uint8),
        frame_stack=frame_stack,
    )
    Episodes(storage, max_len, seed).add(steps)
    stored = len(storage) // num_envs
    env, age = np.meshgrid(np.arange(num_envs), np.arange(stored), indexing="ij")
    usable = storage.valid(storage.flat_by_age(env.ravel(), age.ravel())).reshape(env.shape)
    lost = storage.lost_per_env()
    for e in range(num_envs):
        expected = np.arange(stored) >= lost[e]
        np.testing.assert_array_equal(usable[e], expected)
    assert usable[:, -1].all()  # the newest transition is always usable
