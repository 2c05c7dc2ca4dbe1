"""Whole SAC runs: DDP on CPU and a SIGKILL through the real CLI, exact resume with the ledger.

The CLI tests start ``python cli.py fit --config configs/dishwashing_state.yaml`` in a
subprocess with overrides that shrink the job to seconds. Under DDP, Lightning's launcher
re-runs the script for rank 1 and the ranks talk over gloo. Callbacks these runs load by class
path live in :mod:`tests.models.run_helpers`; ``PYTHONPATH`` carries the repository root.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.models.conftest import make_run
from v2p.callbacks import EconomicsCallback
from v2p.data.checkpoint_io import ReplayCheckpointIO, read_replay
from v2p.economics.ledger import LEDGER_COLUMNS

REPO = Path(__file__).resolve().parents[2]
HEADER = (",".join(LEDGER_COLUMNS) + "\n").encode()
SHORT_SHIFTS = "--data.init_args.env_kwargs={steps: 10}"
SHRUNK = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.num_envs=2",
    "--data.init_args.batch_size=32",
    "--data.init_args.warmup_steps=64",
    "--data.init_args.updates_per_epoch=10",
    "--data.init_args.eval_episodes=2",
    "--data.init_args.buffer_size=4096",
    "--model.init_args.hidden_dim=32",
    "--model.init_args.latent_dim=16",
    "--model.init_args.encoder_hidden_dim=32",
]
# Written into the module's buffers by dual ascent over every rank's shifts.
CONSTRAINT_BUFFERS = ("constraint.lagrange", "constraint.err_target")


# ---------------------------------------------------------------------------- helpers


def cli_command(root: Path, max_steps: int, *overrides: str) -> list[str]:
    """The shrunk main job, logging under ``root``; later overrides win."""
    return [
        sys.executable,
        "cli.py",
        "fit",
        "--config=configs/dishwashing_state.yaml",
        *SHRUNK,
        f"--trainer.max_steps={max_steps}",
        f"--trainer.default_root_dir={root}",
        *overrides,
    ]


def cli_env() -> dict[str, str]:
    """This environment minus what a test process's own Lightning runs left in it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PL_")
        and k not in ("LOCAL_RANK", "NODE_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # One thread per process: the networks are tiny, and with two or three runs (or DDP ranks)
    # on a small machine, spinning OpenMP threads that outnumber the cores slow each run tenfold.
    env["OMP_NUM_THREADS"] = "1"
    return env


def start_cli(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own handle
        return subprocess.Popen(
            command, cwd=REPO, env=cli_env(), stdout=out, stderr=subprocess.STDOUT
        )


def finish(process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    tail = log.read_text(errors="replace")[-4000:]
    assert process.returncode == 0, f"{' '.join(process.args)} exited {process.returncode}:\n{tail}"


def run_cli(command: list[str], log: Path, timeout: float = 180) -> None:
    finish(start_cli(command, log), log, timeout)


def ledger_rows(path: Path) -> list[bytes]:
    """The complete data rows of a ledger, each with its newline; checks the one header."""
    content = path.read_bytes()
    assert content.startswith(HEADER), f"{path} does not start with the ledger header"
    rows = content[len(HEADER) :].splitlines(keepends=True)
    if rows and not rows[-1].endswith(b"\n"):
        rows.pop()  # a line cut short by a kill
    assert HEADER not in rows, f"{path} holds a second header"
    return rows


def column(rows: list[bytes], name: str) -> list[str]:
    index = LEDGER_COLUMNS.index(name)
    return [r[index] for r in csv.reader(io.StringIO(b"".join(rows).decode()))]


def economics_state(checkpoint: dict) -> dict:
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("EconomicsCallback")]
    return state


def checkpointed_ledger_rows(path: Path) -> int | None:
    """Rank 0's ledger row count in the checkpoint at ``path``, None while it is not readable.

    Not readable: not written yet, or half copied (Lightning's save renames a temporary file into
    place, which is a copy when the temporary directory is on another file system).
    """
    try:
        checkpoint = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None
    return economics_state(checkpoint)["ranks"][0]["ledger_rows"]


def assert_same_weights(a: dict, b: dict) -> None:
    """Every tensor of two checkpoints' (or ``{"state_dict": ...}``) state dicts is equal."""
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], rtol=0, atol=0, msg=key)


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- DDP on CPU

DDP_STEPS = 40


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One 2-rank DDP run of the CLI; each rank saves its final state dict and global step."""
    root = tmp_path_factory.mktemp("ddp")
    command = cli_command(
        root,
        DDP_STEPS,
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        SHORT_SHIFTS,
        # An error target of 0 makes every shift with an error move lambda.
        "--model.init_args.err_target_init=0.0",
        "--model.init_args.err_target_final=0.0",
        "--model.init_args.dual_lr=0.5",
        # The online novelty model's normaliser and z-scoring statistics must agree too.
        "--model.init_args.novelty_online=true",
        "--trainer.callbacks+=tests.models.run_helpers.SaveRankState",
        f"--trainer.callbacks.dirpath={root / 'ranks'}",
    )
    run_cli(command, root / "log.txt")
    ranks = [torch.load(root / "ranks" / f"rank{k}.pt", weights_only=True) for k in (0, 1)]
    return root, ranks


@pytest.mark.slow
def test_ddp_ranks_write_their_own_ledgers_and_end_with_the_same_weights(ddp_run):
    root, (rank0, rank1) = ddp_run
    assert rank0["global_step"] == rank1["global_step"] == DDP_STEPS

    # DDP averages the gradients, so every parameter (and the target critic that follows them)
    # is the same on both ranks although each trained on its own envs.
    a, b = rank0["state_dict"], rank1["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)

    ledgers = [root / "version_0" / "economics.csv", root / "version_0" / "economics.rank1.csv"]
    rows = [ledger_rows(path) for path in ledgers]
    for path, r in zip(ledgers, rows, strict=True):
        assert r, f"{path} has no shifts"
        assert column(r, "episode") == [str(i) for i in range(len(r))], path
    # Each rank's envs are seeded by rank, so the shifts they ran differ.
    outcomes = [
        list(zip(*(column(r, c) for c in ("completed", "errors")), strict=True)) for r in rows
    ]
    assert outcomes[0] != outcomes[1]

    # The checkpoint (written by rank 0) holds both ranks' ledger positions.
    checkpoint = torch.load(root / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    state = economics_state(checkpoint)
    assert state["world_size"] == 2
    assert [Path(r["ledger_path"]) for r in state["ranks"]] == [p.resolve() for p in ledgers]


@pytest.mark.slow
def test_ddp_ranks_share_the_lagrangian_constraint(ddp_run):
    """Both ranks apply every rank's shifts: one lambda, one target, and lambda did move."""
    _, (rank0, rank1) = ddp_run
    assert rank0["state_dict"]["constraint.lagrange"].item() > 0
    for key in CONSTRAINT_BUFFERS:
        torch.testing.assert_close(
            rank0["state_dict"][key], rank1["state_dict"][key], rtol=0, atol=0, msg=key
        )


def rank_states(path: Path) -> list[dict]:
    """Every rank's data-module entry of the checkpoint at ``path``, its replay read back."""
    checkpoint = ReplayCheckpointIO().load_checkpoint(path)
    state = checkpoint["RolloutDataModule"]
    ranks = state["ranks"]
    assert state["world_size"] == len(ranks) == 2
    for entry in ranks:
        entry["replay"] = read_replay(entry["replay"])
    return ranks


def assert_same_state(a, b, where: str) -> None:
    """Nested dicts / lists of tensors, arrays and plain values are equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, (torch.Tensor, np.ndarray)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    else:
        assert a == b, where


@pytest.mark.slow
def test_ddp_resume_retraces_the_uninterrupted_run_on_every_rank(tmp_path):
    """Two ranks stop after one epoch and resume from last.ckpt: each rank's ledger and
    data-module state (envs, RNG, counters, replay) end as in one uninterrupted run."""
    every = 20
    overrides = [
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        SHORT_SHIFTS,
        "--data.init_args.updates_per_step=1",
        f"--data.init_args.updates_per_epoch={every}",
    ]
    stopped, reference = tmp_path / "stopped", tmp_path / "reference"
    uninterrupted_run = start_cli(
        cli_command(reference, 2 * every, *overrides), tmp_path / "reference.txt"
    )
    run_cli(cli_command(stopped, every, *overrides), tmp_path / "stopped.txt")
    last = stopped / "version_0" / "checkpoints" / "last.ckpt"
    ledgers = ["economics.csv", "economics.rank1.csv"]
    written = [ledger_rows(stopped / "version_0" / name) for name in ledgers]
    run_cli(
        cli_command(stopped, 2 * every, *overrides, f"--ckpt_path={last}"),
        tmp_path / "resumed.txt",
    )
    finish(uninterrupted_run, tmp_path / "reference.txt")

    for name, before in zip(ledgers, written, strict=True):
        assert ledger_rows(stopped / "version_0" / name) == before, name  # left as it was
        final = ledger_rows(stopped / "version_1" / name)  # the resumed run's own copy
        assert len(final) > len(before) > 0, name
        assert final == ledger_rows(reference / "version_0" / name), name
    resumed = rank_states(stopped / "version_1" / "checkpoints" / "last.ckpt")
    uninterrupted = rank_states(reference / "version_0" / "checkpoints" / "last.ckpt")
    for k in (0, 1):
        assert_same_state(resumed[k], uninterrupted[k], f"rank {k}")
    assert resumed[0]["env_steps"] == resumed[1]["env_steps"]
    assert not np.array_equal(resumed[0]["obs"], resumed[1]["obs"])  # each rank its own envs


# ---------------------------------------------------------------------------- SIGKILL


def checkpoint_step(path: Path) -> int | None:
    """The global step of the checkpoint at ``path``, None while it is not readable."""
    try:
        return torch.load(path, weights_only=True)["global_step"]
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None


@pytest.mark.slow
def test_sigkill_and_resume_from_last_ckpt_loses_and_duplicates_no_ledger_row(tmp_path):
    """The shipped config's own checkpoint callbacks (only the sizes shrunk): ``last.ckpt`` is
    written after every epoch while fit runs, and a run killed with SIGKILL resumes from it to
    retrace the uninterrupted run."""
    every, max_steps = 50, 200  # updates per epoch (10 shifts), and in all
    rows_per_epoch = 10  # 2 envs, 10-step shifts, one update per collection step
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    overrides = [
        SHORT_SHIFTS,
        "--data.init_args.updates_per_step=1",
        f"--data.init_args.updates_per_epoch={every}",
    ]

    last = killed / "version_0" / "checkpoints" / "last.ckpt"
    ledger = killed / "version_0" / "economics.csv"
    # An uninterrupted run with the same seed and settings, beside a run far longer than the
    # test that is killed once it has written shifts after its second epoch's checkpoint.
    uninterrupted_run = start_cli(
        cli_command(reference, max_steps, *overrides), tmp_path / "reference.txt"
    )
    process = start_cli(cli_command(killed, 10**6, *overrides), tmp_path / "killed.txt")
    deadline = time.monotonic() + 150
    seen, saved, step = None, None, None
    try:
        while True:
            assert process.poll() is None, (tmp_path / "killed.txt").read_text()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint with shifts after it in 150 s"
            stamp = last.stat().st_mtime_ns if last.exists() else None
            if stamp != seen:  # a new checkpoint: read its ledger position
                seen, saved, step = stamp, checkpointed_ledger_rows(last), checkpoint_step(last)
            written = len(ledger_rows(ledger)) if ledger.exists() else 0
            # last.ckpt must follow the run, not wait for the end of fit.
            assert written < 3 * rows_per_epoch or step is not None, (
                f"{written} shifts written and no last.ckpt at {last}"
            )
            # Two rows past the second epoch's checkpoint: 10 updates past it, 40 before the next.
            if step is not None and step >= 2 * every and written >= saved + 2:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL

    checkpoint = torch.load(last, weights_only=True)
    saved = economics_state(checkpoint)["ranks"][0]["ledger_rows"]
    written = ledger_rows(ledger)
    assert len(written) > saved > 0, "the kill must come after shifts the checkpoint lacks"
    # Recent: from the epoch the run was in when it was killed, not from its start.
    assert 2 * every <= checkpoint["global_step"] < max_steps
    assert len(written) - saved < rows_per_epoch

    resumed = start_cli(
        cli_command(killed, max_steps, *overrides, f"--ckpt_path={last}"),
        tmp_path / "resumed.txt",
    )
    finish(resumed, tmp_path / "resumed.txt")
    finish(uninterrupted_run, tmp_path / "reference.txt")

    # The resumed run logs into a new version folder, with its own copy of the checkpointed
    # rows of the ledger; the killed run's ledger stays as the kill left it.
    assert (killed / "version_1").is_dir()
    assert ledger_rows(ledger) == written
    final = ledger_rows(killed / "version_1" / "economics.csv")
    assert column(final, "episode") == [str(i) for i in range(len(final))]
    end = torch.load(killed / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert end["global_step"] == max_steps
    assert len(final) == end["v2p_sac"]["shifts_seen"]
    assert len(final) == economics_state(end)["ranks"][0]["shifts"]
    assert len(final) > len(written)

    uninterrupted = ledger_rows(reference / "version_0" / "economics.csv")
    assert final[:saved] == written[:saved] == uninterrupted[:saved]
    # And past the checkpoint the resumed run retraces the uninterrupted one (README, Resume):
    # the ledger alone would hide a small drift, since a shift's counts barely move with the
    # weights, so the final weights are compared too.
    assert final == uninterrupted
    reference_end = reference / "version_0" / "checkpoints" / "last.ckpt"
    assert_same_weights(torch.load(reference_end, weights_only=True), end)


# ---------------------------------------------------------------------------- exact resume


@pytest.fixture
def one_thread():
    """Torch on one thread, as the CLI runs above are (see :func:`cli_env`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_exact_resume_reproduces_the_ledger_row_for_row(tmp_path, one_thread):
    """N updates, resume for M more == N + M in one run, for every column of the ledger."""

    def run(root, max_steps, seed=0, callbacks=()):
        economics = EconomicsCallback(update_every=3)  # several wage-index updates per run
        model, dm, trainer = make_run(
            root,
            env_kwargs={"steps": 10},
            max_steps=max_steps,
            seed=seed,
            callbacks=[economics, *callbacks],
        )
        return economics, model, dm, trainer

    economics_a, model_a, dm_a, trainer_a = run(tmp_path / "a", 60)
    trainer_a.fit(model_a, dm_a)

    # Run b goes past its checkpoint, so the resume must drop the rows written after it.
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=30, save_top_k=-1)
    economics_b, model_b, dm_b, trainer_b = run(tmp_path / "b", 45, callbacks=[checkpoint])
    trainer_b.fit(model_b, dm_b)
    ledger = economics_b.ledger_path
    rows_at_30 = economics_state(torch.load(tmp_path / "ckpt" / "epoch=1-step=30.ckpt"))
    assert len(ledger_rows(ledger)) > rows_at_30["ranks"][0]["ledger_rows"] > 0

    # A different seed (the checkpoint restores every RNG) and a new log directory, where
    # the resumed run continues its own copy of the checkpointed rows; b's ledger stays.
    b_rows = ledger.read_bytes()
    economics_c, model_c, dm_c, trainer_c = run(tmp_path / "c", 60, seed=123)
    trainer_c.fit(model_c, dm_c, ckpt_path=str(tmp_path / "ckpt" / "epoch=1-step=30.ckpt"))
    assert economics_c.ledger_path == (tmp_path / "c" / "version_0" / "economics.csv").resolve()
    assert ledger.read_bytes() == b_rows

    expected = ledger_rows(economics_a.ledger_path)
    assert len(expected) == model_a.constraint.shifts_seen == model_c.constraint.shifts_seen
    assert ledger_rows(economics_c.ledger_path) == expected
    assert_same_weights({"state_dict": model_a.state_dict()}, {"state_dict": model_c.state_dict()})


# ---------------------------------------------------------------------------- Pendulum


def test_pendulum_through_the_cli_trains_without_a_ledger(tmp_path):
    command = cli_command(
        tmp_path,
        10,
        "--data.init_args.env_id=Pendulum-v1",
        # 200 warm-up steps per env: the first update's batch brings finished (shift-less)
        # episodes, which the economics callback must skip.
        "--data.init_args.warmup_steps=400",
        "--trainer.log_every_n_steps=1",
    )
    run_cli(command, tmp_path / "log.txt")
    log_dir = tmp_path / "version_0"
    metrics = read_metrics(log_dir / "metrics.csv")

    def logged(key: str) -> list[float]:
        return [float(row[key]) for row in metrics if row.get(key)]

    # Pendulum's reward is -(angle^2 + 0.1 speed^2 + 0.001 torque^2) per step, at most 16.3
    # in magnitude, over 200-step episodes.
    assert logged("train/episode_return"), "no training episode finished"
    for key in ("train/episode_return", "val/episode_return"):
        assert logged(key) and all(-200 * 16.3 <= r <= 0 for r in logged(key)), key
    assert not logged("val/expected_profit") and not logged("econ/profit")
    ledger = log_dir / "economics.csv"
    assert not ledger.exists() or ledger_rows(ledger) == []
