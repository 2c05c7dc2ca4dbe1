"""Replay memory and data modules."""

from v2p.contracts import ReplayFeatures, ReplaySample
from v2p.data.clips import ClipBatch, ClipDataModule, Episode, load_episodes
from v2p.data.replay import ReplayBuffer

__all__ = ["ReplayBuffer", "ReplayFeatures", "ReplaySample"]
__all__ += ["ClipBatch", "ClipDataModule", "Episode", "load_episodes"]
