"""Every shipped config parses and instantiates through the project's CLI (the
lightning-hydra-template's ``test_configs``), shrunk where the real sizes would be slow."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from v2p.cli import main
from v2p.record import record

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
# Read recordings: given a tiny one.
CLIP_DATA = ("pretrain_encoder.yaml", "novelty.yaml", "idm.yaml", "novelty_transitions.yaml")

# Per config: overrides that keep instantiation (and the one short fit) cheap.
SHRINK: dict[str, list[str]] = {
    "dishwashing_state.yaml": [],
    "dishwashing_sources.yaml": [],
    "dishwashing_video.yaml": [],
    "dishwashing_physics.yaml": [],
    "pretrain_encoder.yaml": [
        "--data.init_args.batch_size=8",
        "--data.init_args.clips_per_epoch=16",
        "--data.init_args.val_fraction=0.5",
        "--trainer.max_epochs=1",
    ],
    "idm.yaml": [
        "--data.init_args.batch_size=8",
        "--data.init_args.steps_per_epoch=16",
        "--data.init_args.val_fraction=0.5",
    ],
    "novelty_transitions.yaml": [
        "--data.init_args.batch_size=8",
        "--data.init_args.steps_per_epoch=16",
        "--data.init_args.val_fraction=0.5",
    ],
    "novelty.yaml": [
        "--data.init_args.batch_size=8",
        "--data.init_args.clips_per_epoch=16",
        "--data.init_args.val_fraction=0.5",
    ],
}


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """Four short episodes of the synthetic video env at the configs' clip shape."""
    out = tmp_path_factory.mktemp("recording")
    record(str(out), episodes=4, max_steps=12, seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def encoder_checkpoint(tmp_path_factory, recording) -> Path:
    """The shipped pretraining config, fitted for one short epoch: its ``last.ckpt``."""
    root = tmp_path_factory.mktemp("pretrain")
    cli = instantiate("pretrain_encoder.yaml", root, recording)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return next(root.rglob("last.ckpt"))


def instantiate(name: str, root: Path, recording: Path, *extra: str):
    args = ["--config", str(ROOT / "configs" / name), "--trainer.logger=false"]
    args += [f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false"]
    if name in CLIP_DATA:
        args.append(f"--data.init_args.paths=[{recording}]")
    return main([*args, *SHRINK[name], *extra], run=False)


def test_every_shipped_config_has_a_test():
    assert CONFIGS == sorted(SHRINK)


NEED_ENCODER = ("novelty.yaml", "novelty_transitions.yaml")


@pytest.mark.parametrize("name", [n for n in CONFIGS if n not in NEED_ENCODER])
def test_config_instantiates_its_model_and_data(name, tmp_path, recording):
    cli = instantiate(name, tmp_path, recording)
    config = yaml.safe_load((ROOT / "configs" / name).read_text())
    for part, made in (("model", cli.model), ("data", cli.datamodule)):
        assert f"{type(made).__module__}.{type(made).__name__}" == config[part]["class_path"]
    assert isinstance(cli.trainer, L.Trainer)
    assert cli.trainer.max_steps == config["trainer"].get("max_steps", -1)


def test_novelty_config_instantiates_on_a_pretrained_encoder(
    tmp_path, recording, encoder_checkpoint
):
    cli = instantiate(
        "novelty.yaml", tmp_path, recording, f"--model.init_args.encoder_ckpt={encoder_checkpoint}"
    )
    assert type(cli.model).__name__ == "LatentDiffusionNovelty"
    assert cli.model.encoder is not None


def test_transition_novelty_config_trains_on_a_recordings_steps(
    tmp_path, recording, encoder_checkpoint
):
    cli = instantiate(
        "novelty_transitions.yaml",
        tmp_path,
        recording,
        f"--model.init_args.encoder_ckpt={encoder_checkpoint}",
        "--trainer.max_steps=4",
        "--model.init_args.normaliser_batches=2",
    )
    encoder_dim = cli.model.encoder.latent_dim
    assert cli.model.latent_dim == 2 * encoder_dim + 2 + 2  # latents, action, outcome
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.model._calibrated and torch.isfinite(cli.model.err_mean).all()
