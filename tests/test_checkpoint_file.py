"""Checkpoint files from elsewhere are read without running code from them (issue 22.3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from v2p.checkpoint_file import read_checkpoint
from v2p.models.novelty_scoring import load_novelty_checkpoint
from v2p.models.pretrain import load_pretrained_encoder
from v2p.models.sac import SACModule


class _Payload:
    """Unpickling this calls ``Path.touch`` on a marker file: the payload of a crafted file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def crafted(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Payload(marker)}}, path)
    return path, marker


@pytest.mark.parametrize(
    "load",
    [
        read_checkpoint,
        load_pretrained_encoder,
        lambda p: load_novelty_checkpoint(str(p)),
        lambda p: SACModule((7,), [0.0], [1.0], encoder_ckpt=str(p)),
        lambda p: SACModule((7,), [0.0], [1.0], novelty_ckpt=str(p)),
    ],
    ids=["read_checkpoint", "encoder", "novelty", "sac_encoder_ckpt", "sac_novelty_ckpt"],
)
def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, load):
    path, marker = crafted(tmp_path)
    with pytest.raises(ValueError, match=r"crafted\.ckpt.*not a V2P checkpoint") as error:
        load(path)
    assert not marker.exists()
    assert "weights_only=False" not in str(error.value)


def test_truncated_and_random_files_are_named_as_corrupt_without_unsafe_advice(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:500])
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(bytes(range(256)) * 8)
    for path in (truncated, noise):
        with pytest.raises(ValueError, match=rf"{path.name}.*corrupt or not a V2P checkpoint") as e:
            read_checkpoint(path)
        assert "weights_only" not in str(e.value)
    assert torch.equal(read_checkpoint(good)["state_dict"]["w"], torch.ones(1000))


def test_a_file_that_is_no_lightning_checkpoint_is_named(tmp_path):
    path = tmp_path / "tensor.ckpt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match=r"tensor\.ckpt.*not a Lightning checkpoint"):
        read_checkpoint(path, "encoder checkpoint")
    with pytest.raises(FileNotFoundError, match="encoder checkpoint"):
        read_checkpoint(tmp_path / "missing.ckpt", "encoder checkpoint")
