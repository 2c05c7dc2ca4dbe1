"""Replay memory and data modules."""

from v2p.data.replay import ReplayBuffer, ReplaySample

__all__ = ["ReplayBuffer", "ReplaySample"]
