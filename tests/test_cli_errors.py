"""Bad input at the command line gets one line naming it, not a traceback (issue 22)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from v2p.__main__ import main as v2p_main
from v2p.cli import entry

ROOT = Path(__file__).resolve().parents[1]


def test_an_empty_config_is_named(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert entry(["fit", "--config", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: config {str(empty)!r} is empty: expected a mapping with trainer, "
        "model and data sections, like configs/dishwashing_state.yaml"
    ]


def test_pretraining_before_recording_says_to_record_first(tmp_path):
    # A fresh process in an empty folder: the config's recordings/ folder does not exist.
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "fit",
            f"--config={ROOT / 'configs' / 'pretrain_encoder.yaml'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "recordings/dishwashing_video" in lines[0]
    assert "v2p record --out recordings/dishwashing_video --episodes 200" in lines[0]


@pytest.mark.parametrize("blocker", ["file", "file/inside"])
def test_record_into_a_path_blocked_by_a_file_names_it(tmp_path, capsys, blocker):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / blocker
    assert v2p_main(["record", "--out", str(out), "--episodes", "1", "--progress", "false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and err[0].startswith("v2p record: error:")
