"""LastCheckpoint: ``last.ckpt`` follows the run epoch by epoch, not only when fit ends."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.models.conftest import make_run
from v2p.callbacks import LastCheckpoint


class LastStepAtEpochStart(Callback):
    """The global step stored in ``last.ckpt`` when each epoch starts (None: no file yet)."""

    def __init__(self, path) -> None:
        self.path = path
        self.steps: list[int | None] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        exists = self.path.exists()
        self.steps.append(
            torch.load(self.path, weights_only=True)["global_step"] if exists else None
        )


def test_last_ckpt_is_written_after_every_epoch_and_at_the_end(tmp_path):
    # 20 updates per epoch (SMALL_DATA); fit stops mid-epoch, at 50.
    probe = LastStepAtEpochStart(tmp_path / "ckpt" / "last.ckpt")
    last = LastCheckpoint(dirpath=tmp_path / "ckpt")
    model, dm, trainer = make_run(tmp_path, max_steps=50, callbacks=[probe, last])
    trainer.fit(model, dm)
    assert probe.steps == [None, 20, 40]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 50
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt")) == ["last.ckpt"]


def test_every_n_epochs_is_checked():
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1, got 0"):
        LastCheckpoint(every_n_epochs=0)
