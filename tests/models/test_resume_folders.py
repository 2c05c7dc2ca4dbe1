"""Resuming never touches another run's files (issue 22.1): the probe of a resume from a
``best-*.ckpt`` into a new folder, after which both runs can still be resumed."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.models.conftest import make_run
from v2p.callbacks import EconomicsCallback


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def run(root: Path, max_steps: int, ckpt_path: Path | None = None):
    economics = EconomicsCallback()
    checkpoints = [
        ModelCheckpoint(
            dirpath=root / "checkpoints", monitor="val/profit", mode="max", filename="best-{step}"
        ),
        ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_epochs=1),
    ]
    model, dm, trainer = make_run(
        root,
        env_kwargs={"steps": 10},
        max_steps=max_steps,
        callbacks=[economics, *checkpoints],
    )
    trainer.fit(model, dm, ckpt_path=None if ckpt_path is None else str(ckpt_path))
    return economics


def test_resuming_from_the_best_checkpoint_elsewhere_leaves_the_original_run_intact(tmp_path):
    original = tmp_path / "original"
    run(original, 80)
    before = files(original)
    best = next((original / "checkpoints").glob("best-*.ckpt"))
    last = original / "checkpoints" / "last.ckpt"
    assert best.name != last.name

    elsewhere = run(tmp_path / "from_best", 100, ckpt_path=best)
    assert files(original) == before  # byte-identical: ledger, checkpoints, replay files
    assert elsewhere.ledger_path.is_relative_to(tmp_path / "from_best")
    state = torch.load(best, weights_only=True)["callbacks"]
    (economics,) = [v for k, v in state.items() if k.startswith("EconomicsCallback")]
    kept = economics["ranks"][0]["ledger_rows"]
    original_lines = (original / "version_0" / "economics.csv").read_bytes().splitlines(True)
    assert 0 < kept < len(original_lines) - 1  # the best checkpoint is behind the end
    copied = elsewhere.ledger_path.read_bytes().splitlines(True)
    assert copied[: kept + 1] == original_lines[: kept + 1]

    # Both runs can still be resumed, each from its own last.ckpt.
    resumed_original = run(tmp_path / "original_again", 100, ckpt_path=last)
    resumed_copy = run(
        tmp_path / "copy_again", 120, ckpt_path=tmp_path / "from_best" / "checkpoints" / "last.ckpt"
    )
    original_rows = (original / "version_0" / "economics.csv").read_bytes()
    assert resumed_original.ledger_path.read_bytes().startswith(original_rows)
    assert resumed_copy.ledger_path.read_bytes().startswith(elsewhere.ledger_path.read_bytes())
