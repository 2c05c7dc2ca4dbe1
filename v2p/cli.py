"""The command line: ``python cli.py fit --config configs/<job>.yaml`` (or the ``v2p`` command).

A :class:`~lightning.pytorch.cli.LightningCLI` subclass. Model and data are chosen in the
config by ``class_path`` (SAC, encoder pretraining and the novelty model share this entry);
shapes only known once the env exists are linked from the data module to the model at
instantiation.
"""

from __future__ import annotations

import os

import lightning as L
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from v2p.data.checkpoint_io import ReplayCheckpointIO


class V2PCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for name in ("observation_shape", "action_low", "action_high", "action_dim"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            kwargs["logger"] = default_loggers(trainer_config.get("default_root_dir") or "logs")
        trainer = super().instantiate_trainer(**kwargs)
        # Replay buffers go to a side file next to each checkpoint (DESIGN.md); a checkpoint IO
        # the user configured stays.
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = ReplayCheckpointIO()
        return trainer


def default_loggers(root: str) -> list[Logger]:
    """TensorBoard and CSV loggers writing into one ``<root>/version_<n>`` folder."""
    version = 0
    while os.path.exists(os.path.join(root, f"version_{version}")):
        version += 1
    # CSV first: it warns about a non-empty folder, and TensorBoard would have made one.
    return [
        CSVLogger(save_dir=root, name="", version=version),
        TensorBoardLogger(save_dir=root, name="", version=version),
    ]


def main(args: list[str] | None = None, run: bool = True) -> V2PCLI:
    """Parse ``args`` (default: the command line) and run the subcommand; with ``run=False``
    only instantiate model, data and trainer from a config (``args`` then has no subcommand)."""
    return V2PCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
    )


if __name__ == "__main__":
    main()
