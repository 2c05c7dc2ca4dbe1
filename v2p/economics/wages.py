"""The human wage benchmark ``w_h`` and the market wages it tracks (ECONOMICS.md section 4)."""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path
from typing import Any, Protocol

from v2p.validation import check_int, check_scalar


class WageSource(Protocol):
    """A market wage series, read once per indexer update (update 0, 1, 2, ...)."""

    def wage(self, update_index: int) -> float:
        """The market wage [$/hr] in force at indexer update ``update_index``."""
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


class WageIndexer:
    """The human wage benchmark ``w_h`` [$/hr], smoothed toward a market wage (section 4).

    Every ``update_every`` finished shifts it reads the source at the next update index
    (0, 1, 2, ...) and applies the section-4 formula exactly as written::

        w_smooth = alpha * market_wage + (1 - alpha) * w_h_prev
        w_h      = w_smooth / (1 + inflation)     if inflation_adj else w_smooth

    ``inflation`` is applied once per *update*, as the spec writes it, not once per year: with
    the defaults (0.02, one update per 100 shifts) ``w_h`` is divided by 1.02 every 100 shifts.
    A consequence worth knowing: under a constant market wage ``m`` the fixed point is
    ``alpha * m / (alpha + inflation)`` (15.00 for m = 18, alpha 0.1, inflation 0.02), below
    ``m``; set ``inflation_adj=False`` for a benchmark that converges to the market wage.

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
    ) -> None:
        self._source = source
        self._w_h = check_scalar("w_h_init", w_h_init, ge=0)
        self._alpha = check_scalar("alpha", alpha, ge=0, le=1)
        self._inflation_adj = bool(inflation_adj)
        self._inflation = check_scalar("inflation", inflation, ge=0, le=1)
        self._update_every = check_int("update_every", update_every, ge=1)
        self._shift_count = 0
        self._update_index = 0

    @property
    def w_h(self) -> float:
        """The current human wage benchmark [$/hr]."""
        return self._w_h

    @property
    def shift_count(self) -> int:
        """Finished shifts counted so far."""
        return self._shift_count

    @property
    def update_index(self) -> int:
        """The source index the next update will read (= updates done so far)."""
        return self._update_index

    def on_shift_end(self) -> float:
        """Count one finished shift, update ``w_h`` if it completes a period; return ``w_h``."""
        shift_count = self._shift_count + 1
        if shift_count % self._update_every == 0:
            # Checked here, where a user-supplied source's value enters the accounts; a failure
            # leaves the indexer as it was, so the shift is not half-counted.
            market = check_scalar("market_wage", self._source.wage(self._update_index), gt=0)
            w_smooth = self._alpha * market + (1.0 - self._alpha) * self._w_h
            self._w_h = w_smooth / (1.0 + self._inflation) if self._inflation_adj else w_smooth
            self._update_index += 1
        self._shift_count = shift_count
        return self._w_h

    def state_dict(self) -> dict[str, Any]:
        """Plain python numbers, so the state pickles into a checkpoint."""
        return {
            "shift_count": self._shift_count,
            "update_index": self._update_index,
            "w_h": self._w_h,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters and ``w_h`` saved by :meth:`state_dict`."""
        self._shift_count = check_int("state['shift_count']", state["shift_count"], ge=0)
        self._update_index = check_int("state['update_index']", state["update_index"], ge=0)
        self._w_h = check_scalar("state['w_h']", state["w_h"], ge=0)
