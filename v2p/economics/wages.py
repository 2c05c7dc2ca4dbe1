"""The human wage benchmark ``w_h`` and the market wages it tracks (ECONOMICS.md section 4)."""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from v2p.validation import check_int, check_scalar

_DAYS_PER_YEAR = 365.25


class WageSource(Protocol):
    """A market wage series, read once per indexer update (update 0, 1, 2, ...)."""

    def wage(self, update_index: int) -> float:
        """The market wage [$/hr] in force at indexer update ``update_index``."""
        ...


@runtime_checkable
class DatedWageSource(WageSource, Protocol):
    """A market wage series whose updates carry dates (a CSV of dated wages).

    The indexer deflates such a series by the time since its first date (section 4) instead of
    by the run's own elapsed hours.
    """

    def years_since_start(self, update_index: int) -> float:
        """Years from the series' first date to the date of update ``update_index``."""
        ...


class ConstantWage:
    """A market wage that never changes."""

    def __init__(self, wage: float = 18.0) -> None:
        self._wage = check_scalar("wage", wage, gt=0)

    def wage(self, update_index: int) -> float:
        check_int("update_index", update_index, ge=0)
        return self._wage


class LinearDriftWage:
    """A market wage ``start + drift_per_update * update_index`` [$/hr].

    ``drift_per_update`` is in $/hr per indexer update (one update per ``update_every`` shifts);
    the default 0.05 is a slow rise chosen for illustration, not an estimate. A negative drift is
    allowed, but the wage must stay > 0: reading it past that point raises rather than clipping.
    """

    def __init__(self, start: float = 18.0, drift_per_update: float = 0.05) -> None:
        self._start = check_scalar("start", start, gt=0)
        self._drift = check_scalar("drift_per_update", drift_per_update)

    def wage(self, update_index: int) -> float:
        update_index = check_int("update_index", update_index, ge=0)
        wage = self._start + self._drift * update_index
        if wage <= 0:
            raise ValueError(
                f"LinearDriftWage market wage must stay > 0, got {wage} at update_index "
                f"{update_index} (start={self._start}, drift_per_update={self._drift})"
            )
        return wage


class CSVWage:
    """A market wage series read from a CSV file of dated wages (a user's real series).

    The file has a header row naming at least ``date_column`` (ISO dates, ``YYYY-MM-DD``) and
    ``wage_column`` ($/hr). It is checked on load: a missing file raises ``FileNotFoundError``;
    a missing column, an unparsable date or wage, a wage that is not finite and > 0, or dates
    that are not strictly increasing raise ``ValueError`` naming the file, row and value.
    Data row ``k`` (0-based) is the market wage of update ``k``; after the series ends the last
    row is held.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        date_column: str = "date",
        wage_column: str = "wage",
    ) -> None:
        self._path = Path(path)
        if not self._path.is_file():
            raise FileNotFoundError(f"wage CSV {str(self._path)!r} does not exist")
        dates: list[dt.date] = []
        wages: list[float] = []
        with self._path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            for column in (date_column, wage_column):
                if column not in columns:
                    raise ValueError(
                        f"wage CSV {str(self._path)!r} has no column {column!r}; "
                        f"its columns are {columns}"
                    )
            for row_number, row in enumerate(reader, start=1):
                where = f"wage CSV {str(self._path)!r}, row {row_number} (line {reader.line_num})"
                date = self._parse_date(where, date_column, row[date_column])
                if dates and date <= dates[-1]:
                    raise ValueError(
                        f"{where}: {date_column} {date.isoformat()} is not after the previous "
                        f"row's {dates[-1].isoformat()}; dates must be strictly increasing"
                    )
                dates.append(date)
                wages.append(self._parse_wage(where, wage_column, row[wage_column]))
        if not wages:
            raise ValueError(f"wage CSV {str(self._path)!r} has no data rows")
        self._dates = tuple(dates)
        self._wages = tuple(wages)

    @staticmethod
    def _parse_date(where: str, column: str, raw: str | None) -> dt.date:
        try:
            return dt.date.fromisoformat((raw or "").strip())
        except ValueError as exc:
            raise ValueError(f"{where}: {column} {raw!r} is not an ISO date (YYYY-MM-DD)") from exc

    @staticmethod
    def _parse_wage(where: str, column: str, raw: str | None) -> float:
        try:
            wage = float((raw or "").strip())
        except ValueError as exc:
            raise ValueError(f"{where}: {column} {raw!r} is not a number") from exc
        return check_scalar(f"{where}: {column}", wage, gt=0)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def dates(self) -> tuple[dt.date, ...]:
        return self._dates

    @property
    def wages(self) -> tuple[float, ...]:
        return self._wages

    def wage(self, update_index: int) -> float:
        update_index = check_int("update_index", update_index, ge=0)
        return self._wages[min(update_index, len(self._wages) - 1)]

    def years_since_start(self, update_index: int) -> float:
        """Years from the series' first date to the date of the row read at ``update_index``.

        The row held after the series ends keeps its own date: the wages are dated, so the
        time they stand for is the file's, not the run's. Years of 365.25 days.
        """
        update_index = check_int("update_index", update_index, ge=0)
        date = self._dates[min(update_index, len(self._dates) - 1)]
        return (date - self._dates[0]).days / _DAYS_PER_YEAR


class WageIndexer:
    """The human wage benchmark ``w_h`` [$/hr], smoothed toward a market wage (section 4).

    Every ``update_every`` finished shifts it reads the source at the next update index
    (0, 1, 2, ...) and applies the section-4 formula as amended on 2026-12-01::

        w_smooth = alpha * market_wage + (1 - alpha) * w_smooth_prev     (nominal $/hr)
        w_h      = w_smooth / (1 + inflation) ** years   if inflation_adj else w_smooth

    The state ``w_smooth`` is nominal: inflation never compounds into it (the old rule divided
    it by ``1 + inflation`` at every update, so a constant 18.00 market wage settled at 15.00).
    ``years`` is the time since the run's first shift, the hours of the shifts counted so far
    (``on_shift_end(hours=...)``) over ``hours_per_year``, or, for a dated source such as
    :class:`CSVWage`, the time from the series' first date to the date of the row just read.
    ``w_h`` changes only at updates, so it is the benchmark published for the period that
    follows; it starts at ``w_h_init`` (``years = 0``).

    The indexer is accounting only: it never feeds the RL reward.
    """

    def __init__(
        self,
        source: WageSource,
        w_h_init: float = 18.0,
        alpha: float = 0.1,
        inflation_adj: bool = True,
        inflation: float = 0.02,
        update_every: int = 100,
        hours_per_year: float = 2000.0,
    ) -> None:
        self._source = source
        self._w_h = check_scalar("w_h_init", w_h_init, ge=0)
        self._w_smooth = self._w_h
        self._alpha = check_scalar("alpha", alpha, ge=0, le=1)
        self._inflation_adj = bool(inflation_adj)
        self._inflation = check_scalar("inflation", inflation, ge=0, le=1)
        self._update_every = check_int("update_every", update_every, ge=1)
        self._hours_per_year = check_scalar("hours_per_year", hours_per_year, gt=0)
        self._shift_count = 0
        self._update_index = 0
        self._elapsed_hours = 0.0

    @property
    def w_h(self) -> float:
        """The current human wage benchmark [$/hr], deflated to the run's start."""
        return self._w_h

    @property
    def w_smooth(self) -> float:
        """The smoothed nominal market wage [$/hr], the indexer's state."""
        return self._w_smooth

    @property
    def shift_count(self) -> int:
        """Finished shifts counted so far."""
        return self._shift_count

    @property
    def update_index(self) -> int:
        """The source index the next update will read (= updates done so far)."""
        return self._update_index

    @property
    def elapsed_hours(self) -> float:
        """Hours of the shifts counted so far: the run's time since its first shift [hr]."""
        return self._elapsed_hours

    def _years(self, update_index: int, elapsed_hours: float) -> float:
        if isinstance(self._source, DatedWageSource):
            return check_scalar(
                "years_since_start", self._source.years_since_start(update_index), ge=0
            )
        return elapsed_hours / self._hours_per_year

    def on_shift_end(self, hours: float = 1.0) -> float:
        """Count one finished shift of ``hours`` [hr]; update ``w_h`` if it ends a period.

        Returns ``w_h``. ``hours`` defaults to 1.0, the default task's shift length.
        """
        hours = check_scalar("hours", hours, ge=0)
        shift_count = self._shift_count + 1
        elapsed_hours = self._elapsed_hours + hours
        if shift_count % self._update_every == 0:
            # Checked here, where a user-supplied source's value enters the accounts; a failure
            # leaves the indexer as it was, so the shift is not half-counted.
            market = check_scalar("market_wage", self._source.wage(self._update_index), gt=0)
            w_smooth = self._alpha * market + (1.0 - self._alpha) * self._w_smooth
            if self._inflation_adj:
                years = self._years(self._update_index, elapsed_hours)
                self._w_h = w_smooth / (1.0 + self._inflation) ** years
            else:
                self._w_h = w_smooth
            self._w_smooth = w_smooth
            self._update_index += 1
        self._shift_count = shift_count
        self._elapsed_hours = elapsed_hours
        return self._w_h

    def market_history(self) -> list[tuple[int, float]]:
        """``(shift, market wage)`` of every update so far: the 0-based index of the shift that
        made the update, and the market wage [$/hr] the update read (for the report's plot of
        the index against the market; the source is read again, as it is a function of the
        update index)."""
        return [
            ((k + 1) * self._update_every - 1, float(self._source.wage(k)))
            for k in range(self._update_index)
        ]

    def state_dict(self) -> dict[str, Any]:
        """Plain python numbers, so the state pickles into a checkpoint."""
        return {
            "shift_count": self._shift_count,
            "update_index": self._update_index,
            "w_h": self._w_h,
            "w_smooth": self._w_smooth,
            "elapsed_hours": self._elapsed_hours,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`.

        A state saved before 2026-12-01 has neither ``w_smooth`` nor ``elapsed_hours``: its
        ``w_h`` was the old recursion's state (already deflated), so it is taken as the smoothed
        wage, and its shifts as one hour each (the default task's length). The difference from
        a nominal state then decays with the smoothing, by ``1 - alpha`` per update.
        """
        shift_count = check_int("state['shift_count']", state["shift_count"], ge=0)
        update_index = check_int("state['update_index']", state["update_index"], ge=0)
        w_h = check_scalar("state['w_h']", state["w_h"], ge=0)
        w_smooth = check_scalar("state['w_smooth']", state.get("w_smooth", w_h), ge=0)
        elapsed_hours = check_scalar(
            "state['elapsed_hours']", state.get("elapsed_hours", float(shift_count)), ge=0
        )
        self._shift_count, self._update_index = shift_count, update_index
        self._w_h, self._w_smooth, self._elapsed_hours = w_h, w_smooth, elapsed_hours
