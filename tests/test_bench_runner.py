"""The benchmark runner rewrites only its marked blocks of docs/benchmarks.md."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def test_runners_of_different_benchmarks_keep_each_others_figures(tmp_path, monkeypatch):
    """Two runners side by side (one per core): each rewrites its own block of the file as it
    stands when its benchmark ends, not as it stood when the runner started."""
    out = tmp_path / "benchmarks.md"
    out.write_text(
        "# B\n\n<!-- bench:envs -->\nold envs\n<!-- /bench:envs -->\n\n"
        "<!-- bench:learn_state -->\nold learn\n<!-- /bench:learn_state -->\n"
    )

    def run_envs_while_another_runner_writes(bench, quick):
        runner.rewrite_block(out, "learn_state", "new learn")  # the other runner finishes
        return "new envs", True

    monkeypatch.setattr(runner, "run", run_envs_while_another_runner_writes)
    assert runner.main(["--only", "envs", "--out", str(out)]) == 0
    text = out.read_text()
    assert "new envs" in text and "new learn" in text
    assert "old" not in text


def test_sigterm_stops_the_benchmark_the_runner_waits_on(tmp_path):
    pid_file, out = tmp_path / "bench.pid", tmp_path / "benchmarks.md"
    sleeper = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    script = (
        "import sys, bench.run_all as r\n"
        f"r.command = lambda bench, quick: [sys.executable, '-c', {sleeper!r}]\n"
        f"sys.exit(r.main(['--only', 'envs', '--out', {str(out)!r}]))\n"
    )
    runner_process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "the benchmark never started"
            assert runner_process.poll() is None, "the runner ended early"
            time.sleep(0.1)
        runner_process.send_signal(signal.SIGTERM)
        assert runner_process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        runner_process.kill()
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(int(pid_file.read_text()), 0)
