"""``last.ckpt`` after every epoch: the checkpoint a crashed run resumes from.

Lightning's ``ModelCheckpoint(save_top_k=0, save_last=True)`` looks like this but is not: in
Lightning 2.6 ``save_last`` writes ``last.ckpt`` only on a step where a top-k checkpoint was also
saved ("Only save last checkpoint if a checkpoint was actually saved in this step",
``ModelCheckpoint.on_train_epoch_end`` / ``on_validation_end``), and with ``save_top_k=0`` none
ever is, so ``last.ckpt`` appeared only when fit ended. A subclass rather than a config trick
(``filename: last`` with ``save_top_k: 1``) keeps Lightning's own ``last.ckpt`` handling: the
``last_model_path`` in its state, ``ckpt_path="last"``, the removal of the previous copy.
"""

from __future__ import annotations

import lightning as L
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` at the end of every ``every_n_epochs``-th epoch (after its
    validation) and when fit ends, and no other checkpoint.

    Args:
        dirpath: where ``last.ckpt`` goes; Lightning's default (``<log_dir>/checkpoints``) if
            None.
        every_n_epochs: epochs between two writes.
        verbose: log each write.
    """

    def __init__(
        self, dirpath: _PATH | None = None, every_n_epochs: int = 1, verbose: bool = False
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_epochs=every_n_epochs,
            verbose=verbose,
            # One file, rewritten: a resumed run must not find last-v1.ckpt beside last.ckpt.
            enable_version_counter=False,
        )

    def _save_last_if_due(self, trainer: L.Trainer) -> None:
        if self._should_skip_saving_checkpoint(trainer):
            return
        if (trainer.current_epoch + 1) % self._every_n_epochs == 0:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    # The base class saves at the end of the training epoch when validation runs once per
    # epoch (which then ran already), else at the end of validation; the same choice here.

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_due(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_due(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Fit can stop mid-epoch (max_steps): the last updates are then still unsaved.
        if not trainer.fast_dev_run and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
