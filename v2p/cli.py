"""The command line: ``python cli.py fit --config configs/<job>.yaml`` (or the ``v2p`` command).

A :class:`~lightning.pytorch.cli.LightningCLI` subclass. Model and data are chosen in the
config by ``class_path`` (SAC, encoder pretraining and the novelty model share this entry);
shapes only known once the env exists are linked from the data module to the model at
instantiation.
"""

from __future__ import annotations

import os
import sys

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from v2p.checkpoint_file import read_checkpoint
from v2p.data.checkpoint_io import ReplayCheckpointIO
from v2p.precision import warn_if_bf16_is_emulated

# Model arguments a resumed run may change: they set how the saved weights go on learning, not
# what the weights are. Any other argument that differs from the checkpoint's is refused.
RESUMABLE_MODEL_ARGS = frozenset(
    {
        "critic_lr",
        "actor_lr",
        "alpha_lr",
        "novelty_lr",
        "gamma",
        "tau",
        "reward_scale",
        "target_entropy",
        "augment_shift",  # the replay's pixels are the same with or without it
        # Evaluation only: an average started on resume begins from the checkpoint's weights.
        "policy_average_decay",
        "finite_check_every",
        "compile_update",
        "compile_mode",
    }
)
# Linked from the data module at instantiation: not the user's to give.
_LINKED_MODEL_ARGS = frozenset(
    {"observation_shape", "action_low", "action_high", "action_dim", "source_names"}
)


class V2PCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for name in sorted(_LINKED_MODEL_ARGS):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as e:
            raise ConfigError(_constructor_error(e)) from None

    def _parse_ckpt_path(self) -> None:
        """The checkpoint's model hyper-parameters, with the resumable ones given on the command
        line (or in the config) kept, and any other change refused by name.

        LightningCLI's own version puts every saved hyper-parameter over the command line, so
        ``--model.init_args.actor_lr=1e-5`` on resume was silently dropped; it also reads the
        file with torch's raw errors.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or ckpt_path in ("last", "best", "hpc") or not os.path.isfile(ckpt_path):
            return  # Lightning resolves the names, and reports a missing file itself
        try:
            saved = dict(read_checkpoint(ckpt_path).get("hyper_parameters") or {})
        except ValueError as e:
            raise ConfigError(str(e)) from None
        saved.pop("_instantiator", None)
        if not saved:
            return
        class_path = saved.pop("_class_path", None)
        given = config.get("model")
        init_args = given.get("init_args") if given is not None else None
        # as_dict, not dict(): dict() of a Namespace flattens a settings object's fields into
        # dotted keys ("attribution.lr"), which no saved name matches, so a change to them was
        # never compared and the checkpoint's value silently won.
        if isinstance(init_args, Namespace):
            init_args = init_args.as_dict()
        given_args = dict(init_args or {})
        if class_path is None or (given is not None and given.get("class_path") != class_path):
            given_args = {}  # another model's arguments: nothing to compare
        changed = {
            name: value
            for name, value in given_args.items()
            if name in saved and name not in _LINKED_MODEL_ARGS and value != saved[name]
        }
        refused = sorted(set(changed) - RESUMABLE_MODEL_ARGS)
        if refused:
            listed = ", ".join(
                f"{n} (checkpoint {saved[n]!r}, given {changed[n]!r})" for n in refused
            )
            raise ConfigError(
                f"resuming from {ckpt_path} with model arguments that cannot change on resume: "
                f"{listed}. Only {', '.join(sorted(RESUMABLE_MODEL_ARGS))} can; start a new run "
                "to change the others"
            )
        resumed = {**saved, **changed}
        model = {"class_path": class_path, "dict_kwargs": resumed} if class_path else resumed
        try:
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            kwargs["logger"] = default_loggers(trainer_config.get("default_root_dir") or "logs")
        trainer = super().instantiate_trainer(**kwargs)
        # Replay buffers go to a side file next to each checkpoint (DESIGN.md); a checkpoint IO
        # the user configured stays.
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = ReplayCheckpointIO()
        warn_if_bf16_is_emulated(trainer)
        return trainer


class ConfigError(ValueError):
    """A config whose objects cannot be built: the constructor's own message, alone."""


def _constructor_error(error: ValueError) -> str:
    """The message of the constructor that failed, out of jsonargparse's report.

    jsonargparse builds every ``class_path`` object while matching it against its Union type
    (``LightningDataModule | None``), so a constructor's clear error arrives buried in a
    report of every subtype tried; the line that is not about ``None`` is the constructor's.
    """
    text = str(error)
    if "Does not validate against any of the Union subtypes" not in text:
        return text
    errors = text.split("Errors:", 1)[-1].split("Given value type:", 1)[0]
    lines = [ln.strip()[2:] for ln in errors.splitlines() if ln.strip().startswith("- ")]
    own = [ln for ln in lines if not ln.startswith("Expected a <class 'NoneType'>")]
    return "; ".join(own) or text


def check_config_files(args: list[str]) -> None:
    """Refuse an empty or non-mapping ``--config`` file by name (jsonargparse says only
    "Unexpected config:")."""
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            continue
        if not os.path.isfile(path):
            continue  # jsonargparse names a missing file itself
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
        if not isinstance(content, dict):
            found = "is empty" if content is None else f"holds a {type(content).__name__}"
            raise ConfigError(
                f"config {path!r} {found}: expected a mapping with trainer, model and data "
                "sections, like configs/dishwashing_state.yaml"
            )


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
    check_config_files(sys.argv[1:] if args is None else list(args))
    return V2PCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
    )


def entry(args: list[str] | None = None) -> int:
    """The command line: :func:`main`, with a bad config, checkpoint or resume reported in one
    line and exit status 2 instead of a traceback."""
    try:
        main(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(entry())
