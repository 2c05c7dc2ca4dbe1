"""Finished shifts into the economics ledger and the logger (ECONOMICS.md sections 4 to 10).

The contract with the rest of the system is declared in :mod:`v2p.contracts`:

- every training and validation batch is an :class:`~v2p.contracts.EpisodeBatch`: its
  ``episodes`` are the :class:`~v2p.contracts.EpisodeRecord` that finished since the previous
  batch (usually none); records whose ``shift`` is None come from envs without economics and
  are skipped;
- ``training_step`` returns :class:`~v2p.contracts.StepOutputs`, whose ``shift_constraints``
  hold one ``(err_target, lam)`` pair per entry of ``batch.episodes``;
- the trainer's datamodule is a :class:`~v2p.contracts.SourceCatalog` whose ``source_names``
  name the ``EpisodeRecord.source`` ids (no datamodule: every shift is the platform's);
- a model that measures each source's contribution is an
  :class:`~v2p.contracts.AttributionProvider` whose ``attribution`` is not None (SACModule
  with ``attribution`` set).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from v2p.callbacks.pricing import BatchValue, DataPricer
from v2p.contracts import (
    PLATFORM,
    AttributionProvider,
    EpisodeBatch,
    ShiftCounts,
    require,
    source_names_of,
    source_sites_of,
)
from v2p.economics import ConstantWage, CSVWage, LinearDriftWage, WageIndexer
from v2p.economics.attribution_file import ATTRIBUTION_FILE, write_attribution_table
from v2p.economics.ledger import LedgerRow, LedgerWriter, ShiftAccountant
from v2p.economics.ledger_file import ledger_prefix, prefix_digest, write_ledger_copy
from v2p.validation import check_int, check_scalar

# Columns not logged: text, and the step the logger already records every value against.
_UNLOGGED_COLUMNS = frozenset({"source", "global_step"})


def is_converged(
    window: Sequence[tuple[float, float]],
    convergence_window: int,
    convergence_tol: float,
    min_prod_parity: float,
) -> bool:
    """Whether the ``(prod_parity, wage_parity)`` evaluations, oldest first, show convergence.

    Converged: the latest productivity parity is >= ``min_prod_parity``, and the window is full
    (``convergence_window`` evaluations) with every wage parity within ``convergence_tol``
    (relative) of the window's mean wage parity.
    """
    if len(window) < convergence_window:
        return False
    recent = window[-convergence_window:]
    wage = [w for _, w in recent]
    mean = sum(wage) / len(wage)
    steady = all(abs(w - mean) <= convergence_tol * abs(mean) for w in wage)
    return recent[-1][0] >= min_prod_parity and steady


class EconomicsCallback(Callback):
    """Accounts every finished shift into ``<log_dir>/<ledger_name>`` and logs ``econ/*``.

    Args:
        market_wage: the market wage series the human benchmark tracks (section 4); None is
            a constant market wage of ``w_h_init``.
        w_h_init: starting human wage benchmark [$/hr], > 0.
        alpha: smoothing weight of the market wage at each indexer update, in [0, 1].
        inflation_adj: deflate the smoothed (nominal) wage by the inflation of the time elapsed
            since the run's first shift (section 4).
        inflation: annual inflation, in [0, 1].
        update_every: finished shifts per indexer update, >= 1.
        mpl_smoothing: EMA weight of the newest shift's ``MP_r`` in the smoothed MPL whose change
            is ``delta_mpl_total``, in (0, 1].
        eps_parity: no spread unless wage parity > ``1 + eps_parity`` (section 5), >= 0.
        base_fee: added to the platform's bill [$ per robot-hour] (section 6), >= 0.
        floor_margin: lower bound on the platform's bill [$ per robot-hour] (section 6), >= 0.
        pass_through: ``pi``, the part of the platform's share of the spread that competition
            passes on to customers (section 5), in [0, 1]; 0 models a platform with no
            competitor.
        hours_per_year: ledger hours in a year, the clock of the inflation adjustment.
        convergence_window: evaluations whose wage parities must agree, >= 1.
        convergence_tol: relative band around their mean the wage parities must lie in, >= 0.
        min_prod_parity: productivity parity the latest evaluation must reach, >= 0.
        ledger_name: file name of the ledger in the log directory; rank ``k > 0`` writes
            ``<stem>.rank<k>.csv`` beside it, since each rank accounts its own envs' shifts.
        platform_sources: names of the platform's own data sources; every other source is a
            customer's, whose shifts are credited with its data's attributed ΔMPL.
        price_horizon_hours, price_scale: hours and deployments a data price covers (section 7).
        value_min_samples, value_ridge: of the online data-value estimator.

    Attribution (section 7.1): with a model that measures each source's contribution at its
    own sites (:mod:`v2p.models.attribution`), a customer is credited with the part of its
    contribution not yet paid. Credit follows the contribution's high-water mark, clipped at 0:
    when the latest contribution exceeds everything credited so far, the difference is owed,
    and the next training batch in which the customer's shifts finish divides it among those
    shifts (``delta_mpl_cust``); platform shifts get 0. A contribution that falls is not
    clawed back, and a negative one is credited nothing but written, with every evaluation of
    every source, to ``<log_dir>/attribution.csv`` (the report names harmful sources from it).
    Without attribution ``delta_mpl_cust`` stays empty, so ``s_cust`` is 0: novelty alone never
    sets it.

    Pricing (section 7.2, :mod:`v2p.callbacks.pricing`) runs when ``training_step`` returns the
    novelty of the batch's transitions (``"novelty"`` (n,) and their ``"novelty_source"`` ids,
    as :class:`~v2p.models.sac.SACModule` does with a novelty model). Each batch logs its
    ex-ante quote (``econ/batch_delta_mpl``), its price (``econ/data_price``) and each
    source's quote (``econ/value/<source>``); the ledger's ``novelty`` and ``data_price``
    columns then carry each shift's source's mean novelty and quoted premium. The quote learns
    from the attributions, so without attribution it stays 0.

    Convergence is logged as ``econ/converged`` (1.0 or 0.0, averaged over ranks, so 1.0 means
    every rank converged) at each validation epoch that had evaluation shifts. To stop on it use
    ``EarlyStopping(monitor="econ/converged", mode="max", stopping_threshold=0.5,
    patience=<at least the number of evaluations>)``: EarlyStopping stops on a *strict*
    ``current > stopping_threshold``, so a threshold of 1.0 never fires, and its default
    patience of 3 would stop a run that stays unconverged (0.0 is "no improvement").

    Resume: the checkpointed state holds each rank's accountant, shift count, ledger path, rows
    written and a digest of those rows. A resumed run writes its own ledger in its own log
    folder: a copy of the checkpoint's rows (found beside the checkpoint's run folder or at the
    recorded path, and recognised by the digest), continued from there, so the shifts written
    after the checkpoint are accounted again exactly once and no other run's file changes.
    Resumed into the folder it was written in, a run cuts its own ledger back instead. Under
    DDP, :meth:`state_dict` gathers every rank's state through ``trainer.strategy.broadcast``,
    so like ``Trainer.save_checkpoint`` it must run on all ranks.
    """

    def __init__(
        self,
        market_wage: ConstantWage | LinearDriftWage | CSVWage | None = None,
        w_h_init: float = 18.0,
        alpha: float = 0.1,
        inflation_adj: bool = True,
        inflation: float = 0.02,
        update_every: int = 100,
        mpl_smoothing: float = 0.05,
        eps_parity: float = 0.05,
        base_fee: float = 0.0,
        floor_margin: float = 0.0,
        pass_through: float = 0.5,
        hours_per_year: float = 2000.0,
        convergence_window: int = 5,
        convergence_tol: float = 0.05,
        min_prod_parity: float = 0.95,
        ledger_name: str = "economics.csv",
        platform_sources: Sequence[str] = (PLATFORM,),
        price_horizon_hours: float = 2000.0,
        price_scale: float = 1.0,
        value_min_samples: int = 10,
        value_ridge: float = 1.0,
    ) -> None:
        check_scalar("w_h_init", w_h_init, gt=0)  # > 0: the deflation ratio divides by w_h
        if market_wage is None:  # the market stays where the benchmark starts
            market_wage = ConstantWage(w_h_init)
        if not isinstance(market_wage, ConstantWage | LinearDriftWage | CSVWage):
            raise ValueError(
                "market_wage must be a ConstantWage, LinearDriftWage, CSVWage or None, "
                f"got {market_wage!r}"
            )
        if not isinstance(inflation_adj, bool):
            raise ValueError(f"inflation_adj must be a bool, got {inflation_adj!r}")
        if (
            not isinstance(ledger_name, str)
            or Path(ledger_name).name != ledger_name
            or Path(ledger_name).suffix != ".csv"
        ):
            raise ValueError(
                f"ledger_name must be a plain file name ending in .csv, got {ledger_name!r}"
            )
        self.convergence_window = check_int("convergence_window", convergence_window, ge=1)
        self.convergence_tol = check_scalar("convergence_tol", convergence_tol, ge=0)
        self.min_prod_parity = check_scalar("min_prod_parity", min_prod_parity, ge=0)
        self.ledger_name = ledger_name
        # The indexer and accountant check their own arguments, each by the name used here.
        indexer = WageIndexer(
            market_wage, w_h_init, alpha, inflation_adj, inflation, update_every, hours_per_year
        )
        self._accountant = ShiftAccountant(
            indexer, mpl_smoothing, eps_parity, base_fee, floor_margin, pass_through
        )

        self._shifts = 0  # shifts accounted so far = the next row's episode index
        self._ledger_path: str | None = None  # absolute; None until a fit opens a ledger
        self._ledger_rows = 0  # rows this callback has in its ledger
        self._ledger_digest: str | None = None  # of those rows, restored from a checkpoint
        self._window: list[tuple[float, float]] = []  # last (prod, wage) parity evaluations
        self.platform_sources = frozenset(platform_sources)
        self._pricer_args = dict(
            horizon_hours=check_scalar("price_horizon_hours", price_horizon_hours, ge=0),
            scale=check_scalar("price_scale", price_scale, ge=0),
            min_samples=check_int("value_min_samples", value_min_samples, ge=0),
            ridge=check_scalar("value_ridge", value_ridge, gt=0),
        )
        # Attribution credit per source id: the high-water mark of its contribution (>= 0),
        # what was credited so far, and how many of the model's evaluations were taken.
        self._high_water: list[float] = []
        self._credited: list[float] = []
        self._evaluations_seen = 0
        self._pricer: DataPricer | None = None  # made in setup, once the sources are known
        self._writer: LedgerWriter | None = None
        self._trainer: pl.Trainer | None = None
        self._source_names: tuple[str, ...] = (PLATFORM,)  # the fit's, from setup
        self._source_sites: tuple[int, ...] = (0,)  # of every source, from setup
        self._eval_shifts: list[ShiftCounts] = []  # of the current validation epoch

    @property
    def state_key(self) -> str:
        return self._generate_state_key(ledger_name=self.ledger_name)

    @property
    def accountant(self) -> ShiftAccountant:
        return self._accountant

    @property
    def ledger_path(self) -> Path | None:
        """The ledger this callback writes, once a fit has opened it."""
        return None if self._ledger_path is None else Path(self._ledger_path)

    @property
    def converged(self) -> bool:
        return is_converged(
            self._window, self.convergence_window, self.convergence_tol, self.min_prod_parity
        )

    # ------------------------------------------------------------------ lifecycle

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        # Read once: the sources are fixed for a fit, and every training batch names them.
        self._source_names = source_names_of(trainer.datamodule)
        self._source_sites = source_sites_of(trainer.datamodule, len(self._source_names))
        if self._pricer is None:
            self._pricer = DataPricer(len(self._source_names), **self._pricer_args)
        if not self._high_water:
            self._high_water = [0.0] * len(self._source_names)
            self._credited = [0.0] * len(self._source_names)

    @property
    def pricer(self) -> DataPricer | None:
        return self._pricer

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The ledger is opened here rather than in on_fit_start: strategies with
        # restore_checkpoint_after_setup (FSDP, DeepSpeed) restore callback state after
        # on_fit_start, but every strategy has restored it by on_train_start.
        path = self._new_ledger_path(trainer)
        if self._ledger_path is not None:  # resuming: continue a copy of the checkpoint's rows
            self._continue_ledger(path, trainer.ckpt_path)
        writer = LedgerWriter(path)
        if writer.rows != self._ledger_rows:
            writer.close()
            raise ValueError(
                f"ledger {str(path)!r} already holds {writer.rows} shifts from another run; "
                "resume that run with ckpt_path, or log to a new directory or ledger_name"
            )
        self._writer = writer
        self._ledger_path = str(path.resolve())

    def _continue_ledger(self, path: Path, ckpt_path: str | None) -> None:
        """Make ``path`` hold exactly the rows the checkpoint accounted for.

        The rows are found in the ledger beside the checkpoint's run folder (so a moved or
        copied run resumes), at the path the checkpoint recorded, or at ``path`` itself, and
        recognised by the checkpoint's digest of them. A run resumed into its own folder cuts
        its ledger back to those rows; a run resumed elsewhere (the CLI starts a new version
        folder) copies them and never modifies another run's files.
        """
        n_rows, digest = self._ledger_rows, self._ledger_digest
        recorded = Path(self._ledger_path)
        candidates = [path]
        if ckpt_path:  # <run>/checkpoints/<name>.ckpt, the run's ledger in <run>
            candidates.append(Path(ckpt_path).resolve().parent.parent / recorded.name)
        candidates.append(recorded)
        for candidate in candidates:
            prefix = ledger_prefix(candidate, n_rows)
            if prefix is None or (digest is not None and prefix_digest(prefix) != digest):
                continue
            if candidate.resolve() == path.resolve():
                with LedgerWriter(path) as own:
                    own.truncate(n_rows)
            elif ledger_prefix(path, 1) is not None:  # a row of its own
                raise ValueError(
                    f"ledger {str(path)!r} already holds shifts from another run; resume into "
                    "a new log directory (the CLI makes one), or move that file away"
                )
            else:
                write_ledger_copy(path, prefix)
            return
        where = ", ".join(dict.fromkeys(str(c) for c in candidates))
        raise FileNotFoundError(
            f"the checkpoint accounted {n_rows} shifts in ledger {recorded.name!r}, but no ledger "
            f"holding them was found (looked at {where}); put the run's {recorded.name} back "
            "beside its checkpoints folder"
        )

    def _new_ledger_path(self, trainer: pl.Trainer) -> Path:
        log_dir = trainer.log_dir or trainer.default_root_dir
        name = Path(self.ledger_name)
        rank = trainer.global_rank
        return Path(log_dir) / (name.name if rank == 0 else f"{name.stem}.rank{rank}.csv")

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The last evaluation comes after the last training batch: take it into the table
        # and the quote here (what it owes is paid when the customer's next shift finishes).
        self._take_attributions(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close()
        self._trainer = None

    # ------------------------------------------------------------------ training shifts

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        names = self._source_names
        if isinstance(outputs, Mapping) and outputs.get("novelty") is not None:
            value = self._pricer.price_batch(outputs["novelty"], outputs["novelty_source"])
            # Every batch is priced, but handed to the logger only on the steps it writes
            # (self.log costs about as much as a small update; SACModule throttles alike).
            if trainer.global_step % trainer.log_every_n_steps == 0:
                self._log_batch_value(pl_module, value, names)
        attributed = self._take_attributions(trainer, pl_module)
        episodes = require(batch, EpisodeBatch, "the training batch").episodes
        finished = [(i, ep) for i, ep in enumerate(episodes) if ep.shift is not None]
        if not finished:
            return
        constraints = outputs.get("shift_constraints") if isinstance(outputs, Mapping) else None
        if constraints is None or len(constraints) != len(episodes):
            found = "none" if constraints is None else f"{len(constraints)}"
            raise ValueError(
                "training_step must return a dict whose 'shift_constraints' holds one "
                f"(err_target, lam) pair per entry of batch.episodes ({len(episodes)}); "
                f"found {found}"
            )
        if self._writer is None:
            raise RuntimeError("EconomicsCallback: the ledger is not open (on_train_start?)")
        credits = self._pay_window([ep.source for _, ep in finished]) if attributed else None
        novelty = self._pricer.window_novelty() if self._pricer is not None else None
        row: LedgerRow | None = None
        for n, (i, episode) in enumerate(finished):
            err_target, lam = constraints[i]
            source = self._source_name(names, episode.source)
            priced = novelty is not None and not math.isnan(novelty[episode.source])
            if self._pricer is not None:  # later batches are priced at the latest unit price
                self._pricer.record_unit_price(episode.shift.price_per_unit)
            row = self._accountant.account(
                episode.shift,
                episode=self._shifts,
                global_step=trainer.global_step,
                source=source,
                err_target=float(err_target),
                lam=float(lam),
                delta_mpl_cust=None if credits is None else credits[n],
                novelty=novelty[episode.source] if priced else None,
                data_price=self._data_price(episode, source) if priced else None,
            )
            self._writer.append(row)
            self._shifts += 1
            self._ledger_rows = self._writer.rows
        assert row is not None
        for column, value in row.columns().items():
            if value is not None and column not in _UNLOGGED_COLUMNS:
                pl_module.log(f"econ/{column}", value, on_step=True, on_epoch=False, batch_size=1)

    def _data_price(self, episode: Any, source: str) -> float:
        """The premium quoted for a shift's source's data; the platform pays itself nothing."""
        if source in self.platform_sources:
            return 0.0
        return self._pricer.shift_price(episode.source, episode.shift.price_per_unit)

    def _take_attributions(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """Take the model's evaluations of each source's contribution made since the last
        call: raise the high-water marks, teach the ex-ante quote, rewrite attribution.csv.
        Whether the model measures attributions at all."""
        if not isinstance(pl_module, AttributionProvider) or pl_module.attribution is None:
            return False
        evaluations = pl_module.attribution.evaluations
        if len(evaluations) == self._evaluations_seen:
            return True
        customers = [
            k for k, name in enumerate(self._source_names) if name not in self.platform_sources
        ]
        for evaluation in evaluations[self._evaluations_seen :]:
            for k in customers:
                if not math.isnan(evaluation.contributions[k]):
                    self._high_water[k] = max(self._high_water[k], evaluation.contributions[k])
        latest = evaluations[-1].contributions
        if self._pricer is not None:
            self._pricer.learn(latest, customers)
        self._evaluations_seen = len(evaluations)
        if trainer.is_global_zero and self._ledger_path is not None:
            write_attribution_table(
                Path(self._ledger_path).with_name(ATTRIBUTION_FILE),
                evaluations,
                self._source_names,
                self.platform_sources,
            )
        return True

    def _pay_window(self, sources: Sequence[int]) -> list[float]:
        """``delta_mpl_cust`` of each of a window's finished shifts (their source ids, in order).

        Each customer source is owed its high-water contribution less what it was credited,
        and so are the demonstration datasets it owns (``source_sites``); that is divided
        evenly among its own shifts of the window (none of it goes to other sources' shifts)
        and then counts as credited. Platform shifts get 0. The credits add up to the window's
        attributed total: what the window's customers were owed.
        """
        names = self._source_names
        counts: dict[int, int] = {}
        for k in sources:
            counts[k] = counts.get(k, 0) + 1
        for k in counts:
            self._source_name(names, k)  # a shift's source must have a name
        owed = dict.fromkeys(counts, 0.0)
        for m, site in enumerate(self._source_sites):
            if site not in counts or self._source_name(names, site) in self.platform_sources:
                continue  # paid with the owner's next shifts; the platform pays itself nothing
            due = max(0.0, self._high_water[m] - self._credited[m])
            owed[site] += due
            self._credited[m] += due
        return [owed[k] / counts[k] for k in sources]

    @staticmethod
    def _log_batch_value(
        pl_module: pl.LightningModule, value: BatchValue, names: Sequence[str]
    ) -> None:
        metrics = {"econ/batch_delta_mpl": value.delta_mpl, "econ/data_price": value.price}
        for k, name in enumerate(names):
            metrics[f"econ/value/{name}"] = value.per_source[k]
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1)

    @staticmethod
    def _source_name(names: Sequence[str], source: int) -> str:
        if not 0 <= source < len(names):
            raise ValueError(
                f"EpisodeRecord.source {source} has no name in datamodule.source_names {names}"
            )
        return str(names[source])

    # ------------------------------------------------------------------ convergence

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_shifts = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        episodes = require(batch, EpisodeBatch, "the validation batch").episodes
        self._eval_shifts.extend(ep.shift for ep in episodes if ep.shift is not None)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The sanity check's batches are no evaluation of a trained policy: not counted.
        if trainer.sanity_checking or not self._eval_shifts:
            return
        parities = [self._accountant.parities(shift) for shift in self._eval_shifts]
        self._eval_shifts = []
        prod = sum(p.prod_parity for p in parities) / len(parities)
        wage = sum(p.wage_parity for p in parities) / len(parities)
        self._window = [*self._window, (prod, wage)][-self.convergence_window :]
        # sync_dist: every rank runs the same validation schedule, so these are collective-safe;
        # the training-shift logs above are not (ranks finish shifts at different steps).
        metrics = {
            "val/prod_parity": prod,
            "val/wage_parity": wage,
            "econ/converged": float(self.converged),
        }
        for key, value in metrics.items():
            pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=True, batch_size=1)

    # ------------------------------------------------------------------ checkpoint state

    def _rank_state(self) -> dict[str, Any]:
        return {
            "accountant": self._accountant.state_dict(),
            "shifts": self._shifts,
            "ledger_rows": self._ledger_rows,
            "ledger_path": self._ledger_path,
            "ledger_digest": self._digest_of_written_rows(),
            "window": [[prod, wage] for prod, wage in self._window],
            "pricer": None if self._pricer is None else self._pricer.state_dict(),
            "high_water": list(self._high_water),
            "credited": list(self._credited),
            "evaluations_seen": self._evaluations_seen,
        }

    def _digest_of_written_rows(self) -> str | None:
        if self._ledger_path is None:
            return None
        prefix = ledger_prefix(self._ledger_path, self._ledger_rows)
        return None if prefix is None else prefix_digest(prefix)

    def state_dict(self) -> dict[str, Any]:
        """Every rank's accounting state, as plain python values (``weights_only`` loadable).

        ``{"world_size": W, "ranks": [state of rank 0, ..., state of rank W-1]}``. Lightning
        writes only rank 0's copy of a checkpoint, so under DDP the ranks' states are gathered
        here (a collective: :meth:`Trainer.save_checkpoint` already runs on every rank).
        """
        own = self._rank_state()
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return {"world_size": 1, "ranks": [own]}
        ranks = [trainer.strategy.broadcast(own, src=k) for k in range(trainer.world_size)]
        return {"world_size": trainer.world_size, "ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore this rank's state from :meth:`state_dict`'s output.

        The rank is the attached trainer's (Lightning calls this after ``setup``), else 0.
        """
        trainer = self._trainer
        world_size = 1 if trainer is None else trainer.world_size
        rank = 0 if trainer is None else trainer.global_rank
        if state_dict["world_size"] != world_size:
            raise ValueError(
                f"the checkpoint's economics state is from {state_dict['world_size']} ranks; "
                f"resuming on {world_size} would split shifts across ledgers differently"
            )
        state = state_dict["ranks"][rank]
        if "w_smooth" not in state["accountant"]["indexer"]:
            raise ValueError(
                "the checkpoint's ledger was priced before the economics amendments of "
                "2026-12-01 (customer cost per robot-hour, no pass-through, a wage index that "
                "compounded inflation into its state); its rows cannot be continued under the "
                "new pricing without mixing two definitions in one column. Start a new run (the "
                "weights can start from it: model.init_args.encoder_ckpt takes its encoder)"
            )
        self._accountant.load_state_dict(state["accountant"])
        self._shifts = check_int("state['shifts']", state["shifts"], ge=0)
        self._ledger_rows = check_int("state['ledger_rows']", state["ledger_rows"], ge=0)
        self._ledger_path = state["ledger_path"]
        self._ledger_digest = state.get("ledger_digest")  # None: written before digests
        self._window = [(float(prod), float(wage)) for prod, wage in state["window"]]
        if "high_water" in state:  # absent: written before attribution credited customers
            self._high_water = [float(v) for v in state["high_water"]]
            self._credited = [float(v) for v in state["credited"]]
            self._evaluations_seen = check_int(
                "state['evaluations_seen']", state["evaluations_seen"], ge=0
            )
        if state.get("pricer") is not None:
            if self._pricer is None:
                # Outside a fit (Lightning restores after setup, which made the pricer): the
                # source names are unknown, so source 0 is taken for the platform's.
                self._pricer = DataPricer(state["pricer"]["num_sources"], **self._pricer_args)
            self._pricer.load_state_dict(state["pricer"])
