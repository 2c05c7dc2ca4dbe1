"""Lightning callbacks."""

from v2p.callbacks.economics import EconomicsCallback

__all__ = ["EconomicsCallback"]
