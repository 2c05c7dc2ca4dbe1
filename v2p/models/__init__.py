"""LightningModules and the plain nn.Modules they train."""

from v2p.models.components import Actor, TwinCritic
from v2p.models.sac import SACModule

__all__ = ["Actor", "SACModule", "TwinCritic"]
