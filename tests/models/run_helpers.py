"""Callbacks that CLI runs started by the tests load with ``--trainer.callbacks+=...``.

They live in an importable module (not a test file) because a ``python cli.py`` subprocess,
and under DDP the rank processes Lightning re-launches from it, must import them by class path.
"""

from __future__ import annotations

import os

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class SaveRankState(Callback):
    """At the end of training, each rank saves its module's state dict and its global step.

    Writes ``<dirpath>/rank<k>.pt`` holding ``{"global_step": int, "state_dict": {...}}``, so a
    test can compare what every DDP rank ended with (a checkpoint holds rank 0's copy only).
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        os.makedirs(self.dirpath, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(
            {"global_step": trainer.global_step, "state_dict": state},
            os.path.join(self.dirpath, f"rank{trainer.global_rank}.pt"),
        )
