"""Lightning callbacks."""

from v2p.callbacks.economics import EconomicsCallback
from v2p.callbacks.last_checkpoint import LastCheckpoint

__all__ = ["EconomicsCallback", "LastCheckpoint"]
