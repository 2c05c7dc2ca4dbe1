"""Replay samplers: which stored transitions a sample takes (TorchRL keeps samplers apart from
storage in the same way). Both return flat indices ``slot * num_envs + env``.

* :class:`UniformSampler`: uniform with replacement over the usable transitions.
* :class:`PrioritisedSampler`: proportional prioritised replay (Schaul et al. 2016) on a sum
  tree: O(log N) per draw, vectorised over the batch.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from v2p.data.replay.sum_tree import SumTree

__all__ = ["PrioritisedSampler", "UniformSampler"]


class SampledStorage(Protocol):
    """What samplers need to know of a storage."""

    num_envs: int

    def __len__(self) -> int: ...

    def valid(self, flat: np.ndarray) -> np.ndarray | None: ...

    def lost_per_env(self) -> np.ndarray: ...

    def flat_by_age(self, env: np.ndarray, age: np.ndarray) -> np.ndarray: ...


class UniformSampler:
    """Uniform draws with replacement over the stored transitions that can be served."""

    def draw(
        self, batch_size: int, storage: SampledStorage, generator: np.random.Generator
    ) -> np.ndarray:
        """``(batch_size,)`` flat indices.

        Where some stored transitions cannot be served (video whose frames left the ring),
        rejection sampling keeps the draw uniform over the others. Every env writes at most
        two frames per transition and a transition needs at most T + 1 of them, so the newest
        (frame_capacity - T - 1) / 2, about per_env_capacity * 9 / 16, of each env's
        transitions are always usable (and the newest one always is): a round accepts about
        half its draws or more, even with one-step episodes.
        """
        stored = len(storage)
        flat = generator.integers(0, stored, size=batch_size)
        valid = storage.valid(flat)
        if valid is None:
            return flat
        accepted, n_accepted = [flat[valid]], int(valid.sum())
        while n_accepted < batch_size:
            flat = generator.integers(0, stored, size=batch_size - n_accepted)
            valid = storage.valid(flat)
            accepted.append(flat[valid])
            n_accepted += int(valid.sum())
        return accepted[0] if len(accepted) == 1 else np.concatenate(accepted)


class PrioritisedSampler:
    """Priorities of every slot, and draws proportional to ``priority ** alpha``.

    The priorities live here whichever sampler a sample uses, since the buffer checkpoints
    them and a run may switch. The sum tree over ``priority ** alpha`` is built at the first
    prioritised draw (O(N)) and for each new ``alpha``, then kept up to date by :meth:`added`
    and :meth:`update` in O(log N) per transition. Transitions that cannot be served have leaf
    0: the slots not yet written and, found lazily at each draw, those whose frames left the
    ring (always each env's oldest, see ``lost_per_env``).

    Args:
        per_env_capacity: slots per env.
        num_envs: N, transitions per slot.
    """

    def __init__(self, *, per_env_capacity: int, num_envs: int) -> None:
        self.num_envs = num_envs
        self.size = per_env_capacity * num_envs
        # A new transition gets the largest priority so far, so it is likely to be drawn, and
        # scored, soon.
        self.priority = np.ones((per_env_capacity, num_envs), dtype=np.float32)
        self.max_priority = 1.0
        self._tree: SumTree | None = None
        self._alpha = 0.0
        # Leaves held at 0 (not written yet, or lost their frames); update() leaves them be.
        self._blocked = np.ones(self.size, dtype=np.bool_)
        # Per env, how many of its oldest transitions the tree already blocks as lost.
        self._lost = np.zeros(num_envs, dtype=np.int64)

    # ------------------------------------------------------------- priorities

    def added(self, slot: int, overwrote: bool) -> None:
        """A transition per env was written at ``slot``; ``overwrote``: it replaced each
        env's oldest (the buffer was full)."""
        self.priority[slot] = self.max_priority
        if self._tree is None:
            return
        flat = slot * self.num_envs + np.arange(self.num_envs)
        self._tree.set(flat, self.priority[slot].astype(np.float64) ** self._alpha)
        self._blocked[flat] = False
        if overwrote:  # every env's oldest is gone, lost or not; ages shift down by one
            self._lost = np.maximum(self._lost - 1, 0)

    def update(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Set the priorities (> 0) of the transitions at flat ``index`` (from a sample)."""
        priority = np.asarray(priority, dtype=np.float32)
        if not (np.isfinite(priority).all() and (priority > 0).all()):
            raise ValueError(f"priorities must be finite and > 0, got {priority}")
        index = np.asarray(index)
        flat_priority = self.priority.reshape(-1)
        flat_priority[index] = priority
        self.max_priority = max(self.max_priority, float(priority.max()))
        if self._tree is not None:
            index = np.unique(index.reshape(-1))  # repeated draws: the array holds the last
            index = index[~self._blocked[index]]
            self._tree.set(index, flat_priority[index].astype(np.float64) ** self._alpha)

    def restored(self) -> None:
        """The priorities were loaded from a checkpoint: the tree is rebuilt at the next draw."""
        self.max_priority = float(self.priority.max())
        self._tree = None

    # ------------------------------------------------------------------ draws

    def draw(
        self,
        batch_size: int,
        storage: SampledStorage,
        generator: np.random.Generator,
        alpha: float,
        beta: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(batch_size,)`` flat indices drawn with probability ``P(i) = p_i^alpha / sum_j
        p_j^alpha`` over the usable transitions, and their importance weights ``(N P(i))^-beta``
        divided by the batch's largest, so weights only scale updates down; N counts every
        stored transition."""
        stored = len(storage)
        tree = self._tree_for(alpha, stored)
        self._block_lost(storage)
        flat = tree.find(generator.random(batch_size) * tree.total)
        weight = (stored * (tree.get(flat) / tree.total)) ** -beta
        return flat, (weight / weight.max()).astype(np.float32)

    def _tree_for(self, alpha: float, stored: int) -> SumTree:
        """The tree of ``priority ** alpha``, built anew if there is none or alpha changed."""
        if self._tree is not None and alpha == self._alpha:
            return self._tree
        self._alpha = float(alpha)
        leaves = np.zeros(self.size, dtype=np.float64)
        leaves[:stored] = self.priority.reshape(-1)[:stored].astype(np.float64) ** self._alpha
        self._tree = SumTree(self.size)
        self._tree.build(leaves)
        self._blocked[:] = True
        self._blocked[:stored] = False
        self._lost[:] = 0
        return self._tree

    def _block_lost(self, storage: SampledStorage) -> None:
        """Set to 0 the leaves of the transitions that lost their frames since the last draw."""
        assert self._tree is not None
        lost = storage.lost_per_env()  # (num_envs,)
        new = lost - self._lost
        assert (new >= 0).all(), "a transition that lost its frames cannot get them back"
        if new.any():
            env = np.repeat(np.arange(self.num_envs), new)
            # Ages self._lost[e], ..., lost[e] - 1 of each env e.
            offset = np.arange(env.size) - np.repeat(np.cumsum(new) - new, new)
            flat = storage.flat_by_age(env, self._lost[env] + offset)
            self._tree.set(flat, 0.0)
            self._blocked[flat] = True
        self._lost = lost
