"""LightningModules and the plain nn.Modules they train."""

from v2p.models.components import Actor, TwinCritic
from v2p.models.novelty import LatentDiffusionNovelty
from v2p.models.sac import SACModule

__all__ = ["Actor", "LatentDiffusionNovelty", "SACModule", "TwinCritic"]
