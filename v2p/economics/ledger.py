"""The economics ledger: one accounted row per finished shift (ECONOMICS.md section 10).

:class:`ShiftAccountant` turns a finished shift's counts and prices into a :class:`LedgerRow`
with the formulas of sections 1, 4, 5 and 6 (each computed by the :mod:`v2p.economics` function
that owns it), and :class:`LedgerWriter` appends the rows to a CSV file that a resumed run can
cut back to the rows its checkpoint accounted for. The columns are defined once, as the fields
of :class:`LedgerRow` (:mod:`v2p.economics.ledger_row`); the file is
:mod:`v2p.economics.ledger_file`'s. Pure python and numpy: no torch, no Lightning.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from v2p.economics.labor import error_rate, implied_wage, mpl, profit_rate
from v2p.economics.ledger_file import LedgerWriter
from v2p.economics.ledger_row import LEDGER_COLUMNS, LedgerRow
from v2p.economics.shift import PLATFORM, ShiftCounts
from v2p.economics.spread import (
    allocate_spread,
    consumer_surplus,
    customer_cost,
    deflation_ratio,
)
from v2p.economics.wages import WageIndexer
from v2p.validation import check_int, check_scalar

__all__ = [
    "LEDGER_COLUMNS",
    "LedgerRow",
    "LedgerWriter",
    "Parities",
    "ShiftAccountant",
    "ShiftLabor",
    "shift_labor",
]


def _cell(value: float) -> float | None:
    """A ledger cell: None (empty) for NaN, the section-6 "no work sold"."""
    return None if math.isnan(value) else float(value)


class ShiftLabor(NamedTuple):
    """The section-1 labor quantities of one shift, from its counts and prices alone."""

    mp_r: float  # [units/hr]
    err_rate: float  # [fraction]
    w_hat_r: float  # [$/hr]
    profit: float  # [$/hr]
    prod_parity: float  # MP_r / MP_h


def shift_labor(shift: ShiftCounts) -> ShiftLabor:
    """Section 1 for one shift: ``MP_r``, ``err``, ``w_r``, profit and productivity parity."""
    human_mp = check_scalar("shift.human_mp", shift.human_mp, gt=0)
    mp_r = float(mpl(shift.completed, shift.hours))
    err = float(error_rate(shift.errors, shift.attempts))
    w_r = float(implied_wage(mp_r, err, shift.price_per_unit, shift.damage_cost))
    profit = float(profit_rate(w_r, shift.energy_cost))
    return ShiftLabor(mp_r, err, w_r, profit, mp_r / human_mp)


class Parities(NamedTuple):
    """Productivity and wage parity of a shift measured against the current benchmark."""

    prod_parity: float  # MP_r / MP_h
    wage_parity: float  # w_r / w_h


class ShiftAccountant:
    """Accounts finished shifts into :class:`LedgerRow`s (sections 1, 4, 5, 6 and 10).

    Args:
        wage_indexer: the human wage benchmark; advanced once per accounted shift. Its ``w_h``
            must be > 0 (the deflation ratio divides by it).
        mpl_smoothing: weight of the newest shift in the EMA of ``MP_r`` whose change is
            ``delta_mpl_total``, in (0, 1].
        eps_parity: no spread unless ``w_r / w_h > 1 + eps_parity`` (section 5).
        base_fee: added to the platform's bill per robot-hour [$/hr] (section 6).
        floor_margin: lower bound on the platform's bill per robot-hour [$/hr] (section 6).
        pass_through: part of the platform's share of the spread passed on to the customer,
            ``pi`` in [0, 1] (section 5).

    ``customer_cost`` and ``consumer_surplus`` are per effective labor hour (section 6); a shift
    that completed nothing sold no work, and those cells and ``deflation_ratio`` are empty.

    A row shows ``w_h`` *after* the shift's indexer update: the wage in force at the end of the
    shift, which is also the wage its spread and pricing are computed against. A shift that
    completes an update period is therefore priced at the new benchmark.

    ``delta_mpl_total`` is the change of an EMA of ``MP_r``, not of the raw per-shift value:
    ``completed`` is a sum of Poisson attempts less binomial errors, so consecutive shifts of an
    unchanged policy differ by several units/hr, and their raw difference would mostly be noise
    (section 7 asks for a smoothed MPL). There is one EMA per data source (site): sites with
    other tasks work at other levels of ``MP_r``, and one EMA over their mix would move with the
    order in which their shifts finish. A source's first shift seeds its EMA with its own
    ``MP_r`` and has ``delta_mpl_total = 0``.
    """

    def __init__(
        self,
        wage_indexer: WageIndexer,
        mpl_smoothing: float = 0.05,
        eps_parity: float = 0.05,
        base_fee: float = 0.0,
        floor_margin: float = 0.0,
        pass_through: float = 0.5,
    ) -> None:
        check_scalar("wage_indexer.w_h", wage_indexer.w_h, gt=0)
        self._indexer = wage_indexer
        self._mpl_smoothing = check_scalar("mpl_smoothing", mpl_smoothing, gt=0, le=1)
        self._eps_parity = check_scalar("eps_parity", eps_parity, ge=0)
        self._base_fee = check_scalar("base_fee", base_fee, ge=0)
        self._floor_margin = check_scalar("floor_margin", floor_margin, ge=0)
        self._pass_through = check_scalar("pass_through", pass_through, ge=0, le=1)
        self._mpl_ema: dict[str, float] = {}  # per source, from its first shift on

    @property
    def w_h(self) -> float:
        """The human wage benchmark now in force [$/hr]."""
        return self._indexer.w_h

    @property
    def wage_indexer(self) -> WageIndexer:
        """The human wage benchmark's indexer (read only: the accountant advances it)."""
        return self._indexer

    @property
    def mpl_ema(self) -> dict[str, float]:
        """The smoothed ``MP_r`` [units/hr] of each source that finished a shift."""
        return dict(self._mpl_ema)

    def parities(self, shift: ShiftCounts) -> Parities:
        """Parities of a shift against the current ``w_h``, without accounting it.

        For evaluation episodes: they measure the policy but are not shifts worked for a
        customer, so they neither advance the wage indexer nor enter the MPL EMA.
        """
        labor = shift_labor(shift)
        return Parities(labor.prod_parity, labor.w_hat_r / self.w_h)

    def account(
        self,
        shift: ShiftCounts,
        *,
        episode: int,
        global_step: int,
        source: str,
        err_target: float,
        lam: float,
        delta_mpl_cust: float | None = None,
        novelty: float | None = None,
        data_price: float | None = None,
    ) -> LedgerRow:
        """Account one finished shift: advance the wage indexer and the MPL EMA, return its row.

        Every input is checked before any state changes, so a bad one raises ``ValueError``
        (naming it) and leaves the accountant as it was.
        """
        episode = check_int("episode", episode, ge=0)
        global_step = check_int("global_step", global_step, ge=0)
        if not isinstance(source, str):
            raise ValueError(f"source must be a str, got {source!r}")
        err_target = check_scalar("err_target", err_target, ge=0, le=1)
        lam = check_scalar("lam", lam, ge=0)
        if delta_mpl_cust is not None:
            delta_mpl_cust = check_scalar("delta_mpl_cust", delta_mpl_cust, ge=0)
        if novelty is not None:
            novelty = check_scalar("novelty", novelty)
        if data_price is not None:
            data_price = check_scalar("data_price", data_price, ge=0)
        labor = shift_labor(shift)
        hours = float(shift.hours)

        previous = self._mpl_ema.get(source)
        if previous is None:
            mpl_ema, delta_mpl_total = labor.mp_r, 0.0
        else:
            a = self._mpl_smoothing
            mpl_ema = a * labor.mp_r + (1.0 - a) * previous
            delta_mpl_total = mpl_ema - previous

        indexer_before = self._indexer.state_dict()
        w_h = self._indexer.on_shift_end(hours=hours)
        try:
            # Until data sources exist every transition comes from the platform's own sites, so
            # the customer's contribution is zero, not unknown: the split uses 0 while the
            # delta_mpl_cust column stays empty.
            alloc = allocate_spread(
                labor.w_hat_r,
                w_h,
                hours,
                0.0 if delta_mpl_cust is None else delta_mpl_cust,
                delta_mpl_total,
                eps_parity=self._eps_parity,
                pass_through=self._pass_through,
            )
            cost = customer_cost(
                w_r=labor.w_hat_r,
                rebate=alloc.rebate,
                hours=hours,
                w_h=w_h,
                mp_r=labor.mp_r,
                mp_h=shift.human_mp,
                err=labor.err_rate,
                damage_cost=shift.damage_cost,
                base_fee=self._base_fee,
                floor_margin=self._floor_margin,
            )
            surplus = consumer_surplus(w_h, cost)
            rho = deflation_ratio(cost, w_h)
        except ValueError:
            self._indexer.load_state_dict(indexer_before)
            raise
        self._mpl_ema[source] = mpl_ema

        return LedgerRow(
            episode=episode,
            global_step=global_step,
            source=source,
            hours=hours,
            completed=int(shift.completed),
            attempts=int(shift.attempts),
            errors=int(shift.errors),
            mp_r=labor.mp_r,
            err_rate=labor.err_rate,
            err_target=err_target,
            w_hat_r=labor.w_hat_r,
            w_h=w_h,
            wage_parity=float(alloc.wage_parity),
            prod_parity=labor.prod_parity,
            profit=labor.profit,
            lam=lam,
            delta_mpl_total=delta_mpl_total,
            delta_mpl_cust=delta_mpl_cust,
            novelty=novelty,
            s_cust=float(alloc.s_cust),
            s_plat=float(alloc.s_plat),
            spread=float(alloc.spread),
            spread_value=float(alloc.spread_value),
            rebate=float(alloc.rebate),
            captured=float(alloc.captured),
            customer_cost=_cell(cost),
            consumer_surplus=_cell(surplus),
            deflation_ratio=_cell(rho),
            data_price=data_price,
        )

    def state_dict(self) -> dict[str, Any]:
        """Indexer state and the MPL EMA (None: no shift seen yet), as plain python values.

        Plain ints, floats, None and dicts, so a checkpoint holding it loads with
        ``torch.load(weights_only=True)``. The constructor arguments are configuration, not state.
        """
        return {"indexer": self._indexer.state_dict(), "mpl_ema": dict(self._mpl_ema)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`."""
        ema = state["mpl_ema"]
        if ema is None:  # saved before any shift, by a version with one EMA for all sources
            ema = {}
        elif not isinstance(ema, dict):  # one EMA for all sources: the default source's
            ema = {PLATFORM: ema}
        ema = {str(k): check_scalar(f"state['mpl_ema'][{k!r}]", v, ge=0) for k, v in ema.items()}
        self._indexer.load_state_dict(state["indexer"])
        self._mpl_ema = ema
