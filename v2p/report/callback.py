"""Write the economics report at the end of ``fit`` (ECONOMICS.md sections 8 to 10).

Kept apart from :class:`~v2p.callbacks.EconomicsCallback`, which owns the ledger: this callback
only reads what that one wrote, so a report that fails to draw can never touch the accounting.
"""

from __future__ import annotations

import logging

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from v2p.callbacks.economics import EconomicsCallback
from v2p.report.cashflow import CashFlowOptions
from v2p.report.ledger_io import NoShiftsError
from v2p.report.summary import write_report

log = logging.getLogger(__name__)


class EconomicsReport(Callback):
    """At the end of ``fit``, on global rank 0, write the report beside each economics ledger.

    Needs an :class:`~v2p.callbacks.EconomicsCallback` in ``trainer.callbacks`` (checked at
    setup). A fit that finished no shift gets a logged warning instead of a report. Only rank
    0's ledger is reported; for a DDP rank's own ledger run ``v2p report <its economics.rankK.csv>
    --out DIR``.

    Args (section 8, as ``v2p report``'s options):
        robots: fleet size, >= 0.
        hours_per_year: operating hours per robot per year, >= 0.
        years: whole years of cash flow, >= 0.
        discount_rate: annual discount rate, in [0, 1].
        bootstrap: resamples of the shifts for the NPV's P5 to P95 band, >= 1.
        seed: seed of the bootstrap, >= 0.
    """

    def __init__(
        self,
        robots: float = 1.0,
        hours_per_year: float = 2000.0,
        years: int = 5,
        discount_rate: float = 0.08,
        bootstrap: int = 2000,
        seed: int = 0,
    ) -> None:
        self.options = CashFlowOptions(
            robots=robots,
            hours_per_year=hours_per_year,
            years=years,
            discount_rate=discount_rate,
            bootstrap=bootstrap,
            seed=seed,
        )

    @staticmethod
    def _economics_callbacks(trainer: pl.Trainer) -> list[EconomicsCallback]:
        return [cb for cb in trainer.callbacks if isinstance(cb, EconomicsCallback)]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and not self._economics_callbacks(trainer):
            raise ValueError(
                "EconomicsReport reports the ledger of an EconomicsCallback, but "
                "trainer.callbacks has none; add v2p.callbacks.EconomicsCallback"
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        for economics in self._economics_callbacks(trainer):
            ledger = economics.ledger_path
            if ledger is None:  # the fit ended before training started: no ledger was opened
                log.warning("EconomicsReport: no economics ledger was opened; no report written")
                continue
            try:
                market = economics.accountant.wage_indexer.market_history()
                files = write_report([ledger], ledger.parent, self.options, [market])
            except NoShiftsError as exc:
                log.warning("EconomicsReport: %s; no report written", exc)
                continue
            log.info("EconomicsReport: wrote %s", files.markdown)
            for run in files.runs:
                if not run.guarantees.ok:
                    failed = run.guarantees.rows - run.guarantees.rows_passed
                    log.warning(
                        "EconomicsReport: %d of %d ledger rows break an ECONOMICS.md section-9 "
                        "guarantee; see %s",
                        failed,
                        run.guarantees.rows,
                        files.markdown,
                    )
