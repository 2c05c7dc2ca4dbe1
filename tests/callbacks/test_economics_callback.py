"""EconomicsCallback under a real Trainer: ledger rows, econ/* logs, exact resume, convergence.

The module and data here are fakes that follow the callback's contract: batches carry
``episodes`` (EpisodeRecords), ``training_step`` returns ``shift_constraints`` aligned with them,
and the data module names its sources.
"""

import csv
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from v2p.callbacks import EconomicsCallback
from v2p.callbacks.economics import is_converged
from v2p.callbacks.pricing import DataPricer
from v2p.contracts import AttributionEvaluation, EpisodeRecord, ShiftCounts
from v2p.economics import LinearDriftWage
from v2p.economics.ledger import LEDGER_COLUMNS

BATCHES_PER_EPOCH = 4
SHIFTS_PER_EPOCH = 4  # batch 0: none, 1: one, 2: two (and a shift-less episode), 3: one

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers"),
    pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec"),
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`"),
]


class Batch(NamedTuple):
    x: torch.Tensor  # (1,)
    episodes: tuple[EpisodeRecord, ...]


def shift(completed: int, errors: int) -> ShiftCounts:
    nan = float("nan")
    return ShiftCounts(
        1.0, completed + errors, errors, completed, 0.30, 1.00, 0.10, 60.0, *[nan] * 3
    )


def record(source: int, counts: ShiftCounts | None) -> EpisodeRecord:
    return EpisodeRecord(
        env_index=source, source=source, length=60, episode_return=0.0, shift=counts
    )


def train_episodes(epoch: int, b: int) -> tuple[EpisodeRecord, ...]:
    """Episodes finished before batch ``b`` of ``epoch``: deterministic, varying by both."""
    k = 10 * epoch + b
    if b == 0:
        return ()
    if b == 2:
        return (record(0, shift(70 + k, 3)), record(0, None), record(1, shift(90 + k, 5)))
    return (record(0, shift(80 + k, b)),)


class Batches:
    """A re-iterable of batches whose content a function of (epoch, batch index) gives."""

    def __init__(self, make, n: int) -> None:
        self.make, self.n = make, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for b in range(self.n):
            yield Batch(torch.ones(1), self.make(b))


class ShiftData(L.LightningDataModule):
    def __init__(self, eval_completed: tuple[int, ...] = (60,)) -> None:
        super().__init__()
        self.source_names = ["platform", "customer-1"]
        self.eval_completed = eval_completed  # per epoch; the last repeats

    def train_dataloader(self) -> Batches:
        return Batches(lambda b: train_episodes(self.trainer.current_epoch, b), BATCHES_PER_EPOCH)

    def val_dataloader(self) -> Batches:
        def make(b: int) -> tuple[EpisodeRecord, ...]:
            epoch = self.trainer.current_epoch
            c = self.eval_completed[min(epoch, len(self.eval_completed) - 1)]
            return (record(0, shift(c, 0)), record(0, shift(c, 0)), record(1, None))

        return Batches(make, 1)


class FakeSAC(L.LightningModule):
    """Manual optimisation, one step per batch; lambda is a function of the episode."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: Batch, batch_idx: int) -> dict:
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(((self.w - batch.x) ** 2).sum())
        opt.step()
        # (err_target, lam) per episode; lam tells the envs apart in the ledger.
        return {"shift_constraints": [(0.08, 0.01 + 0.001 * ep.env_index) for ep in batch.episodes]}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        return None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(tmp_path: Path, callbacks: list, **kwargs) -> L.Trainer:
    defaults = {"max_epochs": 3, "enable_checkpointing": False, "num_sanity_val_steps": 0}
    return L.Trainer(
        accelerator="cpu",
        logger=kwargs.pop("logger", CSVLogger(tmp_path / "logs")),
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        callbacks=callbacks,
        **{**defaults, **kwargs},
    )


def ledger(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == LEDGER_COLUMNS
        return list(reader)


def metrics(t: L.Trainer) -> list[dict[str, str]]:
    with open(Path(t.logger.log_dir) / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def callback(**kwargs) -> EconomicsCallback:
    config = {"market_wage": LinearDriftWage(18.0, 1.0), "update_every": 3, "mpl_smoothing": 0.5}
    return EconomicsCallback(**{**config, **kwargs})


def test_ledger_rows_and_econ_metrics(tmp_path):
    cb = callback(convergence_window=10)
    t = trainer(tmp_path, [cb], max_epochs=2, num_sanity_val_steps=2)
    t.fit(FakeSAC(), datamodule=ShiftData())

    path = Path(t.log_dir) / "economics.csv"
    assert cb.ledger_path == path.resolve()
    rows = ledger(path)
    assert [int(r["episode"]) for r in rows] == list(range(2 * SHIFTS_PER_EPOCH))
    # Epoch 0: batches 1, 2, 2, 3 finish shifts; global_step counts the steps taken so far.
    assert [int(r["global_step"]) for r in rows[:4]] == [2, 3, 3, 4]
    assert [r["source"] for r in rows[:4]] == ["platform", "platform", "customer-1", "platform"]
    assert [int(r["completed"]) for r in rows[:4]] == [81, 72, 92, 83]
    assert [float(r["lambda"]) for r in rows[:4]] == [0.01, 0.01, 0.011, 0.01]
    assert all(r["delta_mpl_cust"] == r["novelty"] == r["data_price"] == "" for r in rows)
    # update_every=3: the third shift reads market wage 18 (no change), the sixth reads 19.
    # The smoothed wage is nominal, 0.1 * 19 + 0.9 * 18 = 18.1, deflated by the hours of the six
    # shifts so far at 2,000 hr/yr (ECONOMICS.md section 4 as amended 2026-12-01).
    elapsed = sum(float(r["hours"]) for r in rows[:6])
    assert float(rows[5]["w_h"]) == pytest.approx(18.1 / 1.02 ** (elapsed / 2000), rel=1e-12)

    logged = [m for m in metrics(t) if m.get("econ/wage_parity")]
    # One log per batch that finished shifts (3 of 4 per epoch), of its last row.
    assert len(logged) == 2 * 3
    last = logged[-1]
    assert float(last["econ/lambda"]) == pytest.approx(float(rows[-1]["lambda"]))
    assert float(last["econ/deflation_ratio"]) == pytest.approx(float(rows[-1]["deflation_ratio"]))
    assert float(last["econ/episode"]) == len(rows) - 1
    assert "econ/delta_mpl_cust" not in last and "econ/source" not in last
    # Two real validation epochs in the window; the sanity check's batches are not counted.
    assert len(cb.state_dict()["ranks"][0]["window"]) == 2
    val = [m for m in metrics(t) if m.get("val/prod_parity")]
    assert [float(m["val/prod_parity"]) for m in val] == [1.0, 1.0]


def test_resume_continues_a_copy_of_the_checkpoint_rows_in_its_own_folder(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    first = trainer(
        tmp_path,
        [callback(), ModelCheckpoint(dirpath=ckpt_dir, every_n_epochs=1, save_top_k=-1)],
        enable_checkpointing=True,
    )
    first.fit(FakeSAC(), datamodule=ShiftData())
    path = Path(first.log_dir) / "economics.csv"
    uninterrupted = path.read_text()
    assert len(ledger(path)) == 3 * SHIFTS_PER_EPOCH

    # The run "crashed" after epoch 0's checkpoint had been taken and later shifts written,
    # mid-way through a line. Resume from that checkpoint, in a new logger version folder.
    mid = ckpt_dir / f"epoch=0-step={BATCHES_PER_EPOCH}.ckpt"
    state = torch.load(mid, weights_only=True)["callbacks"][callback().state_key]
    assert state["ranks"][0]["ledger_rows"] == SHIFTS_PER_EPOCH
    with open(path, "a") as handle:
        handle.write("12,13,platform,1.0,8")
    crashed = path.read_bytes()
    resumed = trainer(tmp_path, [callback()])
    resumed.fit(FakeSAC(), datamodule=ShiftData(), ckpt_path=mid)

    assert resumed.log_dir != first.log_dir
    assert path.read_bytes() == crashed  # the original run's ledger is left as it was
    own = Path(resumed.log_dir) / "economics.csv"
    assert [int(r["episode"]) for r in ledger(own)] == list(range(3 * SHIFTS_PER_EPOCH))
    assert own.read_text() == uninterrupted  # same rows, same numbers, same w_h and EMA


def test_resume_into_the_run_folder_itself_cuts_its_own_ledger_back(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    kwargs = dict(enable_checkpointing=True, logger=CSVLogger(tmp_path, name="", version=0))
    checkpoints = ModelCheckpoint(dirpath=ckpt_dir, every_n_epochs=1, save_top_k=-1)
    trainer(tmp_path, [callback(), checkpoints], **kwargs).fit(FakeSAC(), datamodule=ShiftData())
    path = tmp_path / "version_0" / "economics.csv"
    uninterrupted = path.read_text()
    mid = ckpt_dir / f"epoch=0-step={BATCHES_PER_EPOCH}.ckpt"
    kwargs["logger"] = CSVLogger(tmp_path, name="", version=0)
    trainer(tmp_path, [callback()], **kwargs).fit(FakeSAC(), datamodule=ShiftData(), ckpt_path=mid)
    assert path.read_text() == uninterrupted


def test_resume_finds_the_ledger_of_a_moved_run_and_refuses_another_runs(tmp_path):
    first = trainer(tmp_path / "a", [callback()], enable_checkpointing=True)
    first.fit(FakeSAC(), datamodule=ShiftData())
    run = Path(first.log_dir)
    moved = tmp_path / "moved"
    run.rename(moved)  # the recorded ledger path is gone; the checkpoint sits in moved/
    last = next((moved / "checkpoints").glob("*.ckpt"))
    resumed = trainer(tmp_path / "b", [callback()], max_epochs=4)  # one epoch more
    resumed.fit(FakeSAC(), datamodule=ShiftData(), ckpt_path=last)
    own = (Path(resumed.log_dir) / "economics.csv").read_text()
    assert own.startswith((moved / "economics.csv").read_text())
    assert len(ledger(Path(resumed.log_dir) / "economics.csv")) == 4 * SHIFTS_PER_EPOCH

    # A ledger whose rows are not the checkpoint's is never taken for its own.
    (moved / "economics.csv").write_text(
        (moved / "economics.csv").read_text().replace(",1.0,", ",2.0,", 1)
    )
    with pytest.raises(FileNotFoundError, match="no ledger holding them was found"):
        trainer(tmp_path / "c", [callback()], max_epochs=4).fit(
            FakeSAC(), datamodule=ShiftData(), ckpt_path=last
        )


def test_fresh_run_reports_converged_and_early_stopping_stops(tmp_path):
    # Productivity and wage parity per epoch: 0.5, 0.8, then 1.0 on (completed / 60; w_r / 18).
    cb = callback(convergence_window=3, convergence_tol=0.05, update_every=1000)
    stop = EarlyStopping(
        monitor="econ/converged", mode="max", stopping_threshold=0.5, patience=1000
    )
    t = trainer(tmp_path, [cb, stop], max_epochs=20)
    t.fit(FakeSAC(), datamodule=ShiftData(eval_completed=(30, 48, 60)))

    val = [m for m in metrics(t) if m.get("econ/converged")]
    # Epoch 2 reaches parity but its window (0.5, 0.8, 1.0) is not steady; epoch 3's
    # (0.8, 1, 1) is 14% off its mean; epoch 4's (1, 1, 1) has converged.
    assert [float(m["econ/converged"]) for m in val] == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert [float(m["val/wage_parity"]) for m in val] == pytest.approx([0.5, 0.8, 1, 1, 1])
    assert stop.stopped_epoch == 4 and t.current_epoch == 5
    assert cb.converged


def test_is_converged_rules():
    steady = [(1.0, 1.0), (1.0, 1.04), (0.96, 0.97)]
    assert is_converged(steady, 3, 0.05, 0.95)
    assert not is_converged(steady[:2], 3, 0.05, 0.95)  # window not full
    assert not is_converged([*steady[:2], (0.9, 1.0)], 3, 0.05, 0.95)  # latest below parity
    assert not is_converged([(1.0, 1.0), (1.0, 1.2), (1.0, 1.0)], 3, 0.05, 0.95)


def stub_trainer(tmp_path: Path, rank: int = 0, world_size: int = 1, **kwargs) -> SimpleNamespace:
    return SimpleNamespace(
        log_dir=str(tmp_path),
        default_root_dir=str(tmp_path / "root"),
        global_rank=rank,
        world_size=world_size,
        datamodule=None,
        global_step=0,
        **kwargs,
    )


def test_rank_k_writes_its_own_ledger_and_log_dir_falls_back(tmp_path):
    cb = EconomicsCallback()
    cb.on_train_start(stub_trainer(tmp_path, rank=2), None)
    assert cb.ledger_path == (tmp_path / "economics.rank2.csv").resolve()
    assert (tmp_path / "economics.rank2.csv").exists()
    cb.teardown(None, None, "fit")
    other = EconomicsCallback(ledger_name="shifts.csv")
    no_log_dir = stub_trainer(tmp_path)
    no_log_dir.log_dir = None
    other.on_train_start(no_log_dir, None)
    assert other.ledger_path == (tmp_path / "root" / "shifts.csv").resolve()
    other.teardown(None, None, "fit")


def test_fresh_run_refuses_a_ledger_holding_another_runs_shifts(tmp_path):
    first = EconomicsCallback()
    first.on_train_start(stub_trainer(tmp_path), None)
    ep = record(0, shift(90, 2))
    outputs = {"shift_constraints": [(0.1, 0.0)]}
    module = SimpleNamespace(log=lambda *a, **k: None)
    first.on_train_batch_end(
        stub_trainer(tmp_path), module, outputs, Batch(torch.ones(1), (ep,)), 0
    )
    first.teardown(None, None, "fit")
    with pytest.raises(ValueError, match="already holds 1 shifts"):
        EconomicsCallback().on_train_start(stub_trainer(tmp_path), None)


def test_missing_or_misaligned_shift_constraints_raise(tmp_path):
    cb = EconomicsCallback()
    batch = Batch(torch.ones(1), (record(0, shift(90, 2)), record(0, None)))
    for outputs in (None, {}, {"shift_constraints": [(0.1, 0.0)]}):
        with pytest.raises(ValueError, match="shift_constraints"):
            cb.on_train_batch_end(stub_trainer(tmp_path), None, outputs, batch, 0)
    # Nothing finished: nothing is read, accounted or logged.
    cb.on_train_batch_end(stub_trainer(tmp_path), None, None, Batch(torch.ones(1), ()), 0)
    assert cb.state_dict()["ranks"][0]["shifts"] == 0


class BroadcastStub:
    def __init__(self, others: dict) -> None:
        self.others = others

    def broadcast(self, obj, src: int = 0):
        return self.others.get(src, obj)


def test_state_is_gathered_from_every_rank_and_each_rank_restores_its_own(tmp_path):
    rank1 = {
        "accountant": {
            "indexer": {
                "shift_count": 7,
                "update_index": 2,
                "w_h": 17.5,
                "w_smooth": 17.6,
                "elapsed_hours": 7.0,
            },
            "mpl_ema": {"platform": 81.0},
        },
        "shifts": 7,
        "ledger_rows": 7,
        "ledger_path": str(tmp_path / "economics.rank1.csv"),
        "ledger_digest": None,
        "window": [[0.9, 1.1]],
        "pricer": DataPricer(1).state_dict(),
        "high_water": [0.0],
        "credited": [0.0],
        "evaluations_seen": 0,
    }
    cb = EconomicsCallback()
    cb.setup(stub_trainer(tmp_path, world_size=2, strategy=BroadcastStub({1: rank1})), None, "fit")
    state = cb.state_dict()
    assert state["world_size"] == 2 and state["ranks"][1] == rank1
    assert state["ranks"][0]["shifts"] == 0

    on_rank1 = EconomicsCallback()
    on_rank1.setup(stub_trainer(tmp_path, rank=1, world_size=2), None, "fit")
    on_rank1.load_state_dict(state)
    on_rank1.teardown(None, None, "fit")
    assert on_rank1.ledger_path == tmp_path / "economics.rank1.csv"
    assert on_rank1.accountant.w_h == 17.5 and on_rank1.accountant.mpl_ema == {"platform": 81.0}
    assert on_rank1.state_dict()["ranks"] == [rank1]  # own state, no trainer after teardown

    single = EconomicsCallback()
    single.setup(stub_trainer(tmp_path), None, "fit")
    with pytest.raises(ValueError, match="2 ranks"):
        single.load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"market_wage": 18.0}, "market_wage"),
        ({"w_h_init": 0.0}, "w_h_init"),
        ({"alpha": 1.5}, "alpha"),
        ({"inflation_adj": "no"}, "inflation_adj"),
        ({"inflation": -0.1}, "inflation"),
        ({"update_every": 0}, "update_every"),
        ({"mpl_smoothing": 0.0}, "mpl_smoothing"),
        ({"eps_parity": float("nan")}, "eps_parity"),
        ({"base_fee": -1.0}, "base_fee"),
        ({"floor_margin": -1.0}, "floor_margin"),
        ({"convergence_window": 0}, "convergence_window"),
        ({"convergence_tol": -0.1}, "convergence_tol"),
        ({"min_prod_parity": float("inf")}, "min_prod_parity"),
        ({"ledger_name": "sub/economics.csv"}, "ledger_name"),
        ({"ledger_name": "economics.txt"}, "ledger_name"),
    ],
)
def test_bad_kwargs_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        EconomicsCallback(**kwargs)


def test_a_ledger_priced_before_the_amendments_is_not_continued_under_the_new_pricing(tmp_path):
    cb = EconomicsCallback()
    cb.setup(stub_trainer(tmp_path), None, "fit")
    state = cb.state_dict()
    indexer = state["ranks"][0]["accountant"]["indexer"]
    del indexer["w_smooth"], indexer["elapsed_hours"]  # as checkpoints wrote it before
    fresh = EconomicsCallback()
    fresh.setup(stub_trainer(tmp_path), None, "fit")
    with pytest.raises(ValueError, match="priced before the economics amendments of 2026-12-01"):
        fresh.load_state_dict(state)


class _Attribution(NamedTuple):
    evaluations: list


def test_customers_are_credited_their_contributions_high_water_mark_per_window(tmp_path):
    """Each customer's credit goes to its own shifts of the window only, the credits of a
    window add up to what the window's customers were owed, and a contribution that falls or
    turns negative is neither clawed back nor paid."""
    names = ("platform", "pots", "glass")
    trainer = stub_trainer(tmp_path, log_every_n_steps=1, is_global_zero=True)
    trainer.datamodule = SimpleNamespace(source_names=names)
    logged = {}
    model = SimpleNamespace(
        attribution=_Attribution([]), log=lambda key, value, **_: logged.__setitem__(key, value)
    )
    cb = EconomicsCallback()
    cb.setup(trainer, model, "fit")
    cb.on_train_start(trainer, model)

    def window(sources):
        episodes = tuple(EpisodeRecord(i, k, 60, 0.0, shift(90, 3)) for i, k in enumerate(sources))
        outputs = {"shift_constraints": [(0.06, 0.0)] * len(episodes)}
        rows_before = cb._ledger_rows
        cb.on_train_batch_end(trainer, model, outputs, SimpleNamespace(episodes=episodes), 0)
        with open(cb.ledger_path) as f:
            rows = list(csv.DictReader(f))[rows_before:]
        return [float(r["delta_mpl_cust"]) for r in rows]

    def evaluate(contributions):
        site_mpl = [[0.0] * 3 for _ in range(4)]
        model.attribution.evaluations.append(AttributionEvaluation(0, 0, site_mpl, contributions))

    evaluate([5.0, 12.0, -1.0])
    # Two pots shifts and one platform shift: pots' 12 split between its own shifts only.
    assert window([1, 0, 1]) == [6.0, 0.0, 6.0]
    assert window([2, 1]) == [0.0, 0.0]  # glass is negative; pots was paid in full
    evaluate([5.0, 9.0, 2.0])  # pots fell: nothing owed, nothing clawed back
    credits = window([1, 2, 2, 2])
    assert credits == pytest.approx([0.0, 2 / 3, 2 / 3, 2 / 3])
    assert sum(credits) == pytest.approx(2.0)  # the window's attributed total
    evaluate([5.0, 15.0, 2.0])
    assert window([0]) == [0.0]  # platform shifts are never credited
    assert window([1]) == [3.0]  # pots owed 15 - 12, kept until its shift finished
    assert cb._credited == [0.0, 15.0, 2.0]
    with open(tmp_path / "attribution.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 * 3 and table[-2]["source"] == "pots"
    assert float(table[2]["contribution"]) == -1.0  # negative contributions are kept
    cb.teardown(None, None, "fit")


def test_a_demonstration_dataset_is_credited_to_its_owners_shifts(tmp_path):
    """A dataset without a site of its own (data.demonstrations) is paid with its owner's
    shifts; one the platform owns is paid to no one."""
    names = ("platform", "pots", "pots_demos", "platform_demos")
    trainer = stub_trainer(tmp_path, log_every_n_steps=1, is_global_zero=True)
    trainer.datamodule = SimpleNamespace(source_names=names, source_sites=(0, 1, 1, 0))
    model = SimpleNamespace(attribution=_Attribution([]), log=lambda *a, **k: None)
    cb = EconomicsCallback()
    cb.setup(trainer, model, "fit")
    cb.on_train_start(trainer, model)
    site_mpl = [[0.0] * 4 for _ in range(5)]
    model.attribution.evaluations.append(AttributionEvaluation(0, 0, site_mpl, [1, 4, 6, 9.0]))
    episodes = tuple(EpisodeRecord(i, k, 60, 0.0, shift(90, 3)) for i, k in enumerate([0, 1, 1]))
    outputs = {"shift_constraints": [(0.06, 0.0)] * 3}
    cb.on_train_batch_end(trainer, model, outputs, SimpleNamespace(episodes=episodes), 0)
    with open(cb.ledger_path) as f:
        credits = [float(r["delta_mpl_cust"]) for r in csv.DictReader(f)]
    assert credits == [0.0, 5.0, 5.0]  # pots' 4 and its dataset's 6, over its two shifts
    assert cb._credited == [0.0, 4.0, 6.0, 0.0]
    cb.teardown(None, None, "fit")
