"""The benchmark runner rewrites only its marked blocks of docs/benchmarks.md."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.run_all as runner  # noqa: E402
from bench.run_all import BENCHES, replace_block  # noqa: E402


def test_replace_block_keeps_the_prose_and_the_command_indent():
    text = "# B\n\nprose before\n<!-- bench:envs -->\nold\n<!-- /bench:envs -->\nprose after\n"
    out = replace_block(text, "envs", "    python bench/envs.py\n\n| a |\n")
    assert out == (
        "# B\n\nprose before\n<!-- bench:envs -->\n    python bench/envs.py\n\n| a |\n"
        "<!-- /bench:envs -->\nprose after\n"
    )
    appended = replace_block(out, "gpu", "| g |")
    assert appended.startswith(out.rstrip()) and appended.endswith(
        "<!-- bench:gpu -->\n| g |\n<!-- /bench:gpu -->\n"
    )


def test_every_benchmark_script_exists_and_every_doc_block_is_known():
    names = {b.name for b in BENCHES}
    for bench in BENCHES:
        assert (ROOT / "bench" / bench.full[0]).is_file(), bench.full[0]
        assert bench.quick[0] == bench.full[0]
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    blocks = re.findall(r"<!-- bench:(\w+) -->", docs)
    assert len(blocks) == len(set(blocks))  # each block once
    assert set(blocks) <= names | {"machine"}  # and each one a benchmark the runner knows
    for name in blocks:
        assert docs.count(f"<!-- /bench:{name} -->") == 1


def test_without_a_gpu_the_gpu_block_keeps_the_figures_a_gpu_machine_wrote(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "cuda_available", lambda: False)
    ran = []
    monkeypatch.setattr(runner, "run", lambda bench, quick: ran.append(bench.name))
    out = tmp_path / "benchmarks.md"
    measured = "<!-- bench:gpu -->\n| SAC updates/s, compiled | 322 |\n<!-- /bench:gpu -->"
    out.write_text(f"# B\n\n{measured}\n")
    assert runner.main(["--only", "gpu", "--out", str(out)]) == 0
    assert ran == []  # the script was not run at all
    assert measured in out.read_text()
