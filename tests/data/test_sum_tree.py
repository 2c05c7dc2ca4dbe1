"""Tests for v2p.data.replay.sum_tree: prefix-sum search against a brute force, updates, shape."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2p.data.replay.sum_tree import SumTree


def brute_find(leaves: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """The leaf j with sum(leaves[:j]) <= mass < sum(leaves[:j + 1])."""
    return np.searchsorted(np.cumsum(leaves), mass, side="right")


def masses(leaves: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    """Masses in [0, total) on a grid of quarters, boundaries included: with integer leaves every
    sum and difference the search makes is exact, so it must match the brute force exactly."""
    total = int(leaves.sum())
    grid = rng.integers(0, 4 * total, size=k) / 4
    bounds = np.cumsum(leaves)[:-1]  # each leaf's first mass
    return np.concatenate([grid, bounds[bounds < total], [0.0, total - 0.25]])


leaf_values = st.lists(st.integers(0, 20), min_size=1, max_size=70).filter(lambda v: sum(v) > 0)


@settings(max_examples=80, deadline=None)
@given(values=leaf_values, seed=st.integers(0, 2**16))
def test_find_matches_the_brute_force_and_never_stops_on_a_zero_leaf(values, seed) -> None:
    leaves = np.asarray(values, dtype=np.float64)
    tree = SumTree(leaves.size)
    tree.build(leaves)
    assert tree.total == leaves.sum()
    mass = masses(leaves, np.random.default_rng(seed), 200)
    found = tree.find(mass)
    np.testing.assert_array_equal(found, brute_find(leaves, mass))
    assert (leaves[found] > 0).all()


@settings(max_examples=60, deadline=None)
@given(
    values=leaf_values,
    updates=st.lists(
        st.tuples(st.lists(st.integers(0, 69), min_size=1, max_size=8), st.integers(0, 20)),
        max_size=12,
    ),
    seed=st.integers(0, 2**16),
)
def test_updates_keep_sums_and_searches_exact(values, updates, seed) -> None:
    leaves = np.asarray(values, dtype=np.float64)
    tree = SumTree(leaves.size)
    tree.set(np.arange(leaves.size), leaves)  # leaf by leaf, against build() below
    rebuilt = SumTree(leaves.size)
    for index, value in updates:
        index = np.asarray(index) % leaves.size
        tree.set(index, float(value))
        leaves[index] = value
    rebuilt.build(leaves)
    # Parents are always recomputed from children: the tree depends on its leaves only.
    np.testing.assert_array_equal(tree._nodes, rebuilt._nodes)
    np.testing.assert_array_equal(tree.get(np.arange(leaves.size)), leaves)
    if leaves.sum() > 0:
        mass = masses(leaves, np.random.default_rng(seed), 100)
        np.testing.assert_array_equal(tree.find(mass), brute_find(leaves, mass))


def test_a_draw_follows_the_leaves() -> None:
    leaves = np.array([1.0, 0.0, 3.0, 0.5, 0.0, 2.5])
    tree = SumTree(leaves.size)
    tree.build(leaves)
    rng = np.random.default_rng(0)
    found = tree.find(rng.random(100_000) * tree.total)
    np.testing.assert_allclose(np.bincount(found, minlength=6) / found.size, leaves / 7, atol=0.005)
    # A mass rounded up to the total must still land on a non-zero leaf, not on padding.
    assert tree.find(np.array([tree.total, np.nextafter(tree.total, np.inf)])).tolist() == [5, 5]


@pytest.mark.parametrize("size", [1, 2, 3, 64, 65, 1000])
def test_logarithmic_structure(size: int) -> None:
    """Depth ceil(log2 N), fewer than 4N nodes, and an update of k leaves touches at most
    k (depth + 1) nodes: one per level on each leaf's path to the root."""
    tree = SumTree(size)
    assert tree.depth == int(np.ceil(np.log2(size))) and 2**tree.depth >= size
    assert tree._nodes.size == 2 * tree.capacity < 4 * size + 1
    tree.build(np.arange(size, dtype=np.float64) + 1)
    before = tree._nodes.copy()
    index = np.random.default_rng(size).choice(size, size=min(size, 5), replace=False)
    tree.set(index, 1e6)
    changed = np.flatnonzero(tree._nodes != before)
    assert changed.size <= index.size * (tree.depth + 1)
    assert tree.total == (np.arange(size) + 1).sum() + (1e6 - (index + 1)).sum()


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        SumTree(0)
    tree = SumTree(4)
    with pytest.raises(ValueError, match="non-negative"):
        tree.set(np.array([1]), -1.0)
    with pytest.raises(ValueError, match="4 non-negative"):
        tree.build(np.ones(3))
