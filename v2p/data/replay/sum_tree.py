"""A sum tree over non-negative leaf values: O(log N) updates and prefix-sum searches.

The structure of proportional prioritised replay (Schaul et al. 2016, appendix B.2.1): node
``i`` holds the sum of its children ``2i`` and ``2i + 1``, the root (node 1) the total, and leaf
``j`` is node ``capacity + j`` with ``capacity`` the power of two at or above the leaf count.
Both operations are vectorised over a batch of indices or masses, one numpy step per level.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SumTree"]


class SumTree:
    """``size`` leaves, all 0 at first, in float64.

    Every parent is recomputed as the sum of its two children (never by adding a delta), so
    sums do not drift over many updates, and a node whose right child is 0 equals its left
    child exactly: :meth:`find` relies on that to never stop on a zero leaf.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a SumTree needs at least one leaf, got size={size}")
        self.size = int(size)
        self.depth = (self.size - 1).bit_length()  # levels below the root
        self.capacity = 1 << self.depth
        self._nodes = np.zeros(2 * self.capacity, dtype=np.float64)  # node 0 unused

    @property
    def total(self) -> float:
        """The sum of all leaves."""
        return float(self._nodes[1])

    def get(self, index: np.ndarray) -> np.ndarray:
        """Leaf values at ``index``."""
        return self._nodes[self.capacity + np.asarray(index)]

    def build(self, values: np.ndarray) -> None:
        """Set every leaf at once (``(size,)``), in O(N): one vector sum per level."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.size,) or (values < 0).any():
            raise ValueError(f"leaf values must be {self.size} non-negative floats")
        nodes, lo = self._nodes, self.capacity
        nodes[lo : lo + self.size] = values
        nodes[lo + self.size :] = 0.0
        while lo > 1:
            nodes[lo // 2 : lo] = nodes[lo : 2 * lo : 2] + nodes[lo + 1 : 2 * lo : 2]
            lo //= 2

    def set(self, index: np.ndarray, value: np.ndarray) -> None:
        """Set leaves ``index`` to ``value`` (broadcast), then their ancestors: O(k log N)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        value = np.broadcast_to(np.asarray(value, dtype=np.float64), index.shape)
        if index.size == 0:
            return
        if (value < 0).any():
            raise ValueError("sum tree leaves must be non-negative")
        nodes = self._nodes
        node = self.capacity + index
        nodes[node] = value
        for _ in range(self.depth):
            node = np.unique(node // 2)
            nodes[node] = nodes[2 * node] + nodes[2 * node + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each mass in ``[0, total)``, the leaf ``j`` with ``sum(leaves[:j]) <= mass <
        sum(leaves[:j + 1])``: a draw of ``mass ~ U[0, total)`` picks leaf ``j`` with probability
        ``leaves[j] / total``. Never a zero leaf while the total is positive."""
        mass = np.array(mass, dtype=np.float64).reshape(-1)
        nodes = self._nodes
        node = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = nodes[2 * node]
            # A mass at or past the total (rounding) must not walk into an empty subtree.
            right = (mass >= left) & (nodes[2 * node + 1] > 0)
            mass -= np.where(right, left, 0.0)
            node = 2 * node + right
        return node - self.capacity
