"""Read an economics ledger (ECONOMICS.md section 10) into typed numpy columns.

The ledger is written by :class:`~v2p.economics.ledger.LedgerWriter` one flushed line per
finished shift, so while a run is in progress (or after a kill) its last line may be cut short.
Such a line is skipped with a :class:`PartialRowWarning`; everything else that does not read as
the section-10 ledger raises a ``ValueError`` naming the file, the line and what was wrong.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from v2p.economics.ledger_row import LEDGER_COLUMNS, LEDGER_SCHEMA

# Column kinds, read off LedgerRow's fields: int fields are int64 arrays, str fields str arrays,
# float fields float64.
INT_COLUMNS: frozenset[str] = frozenset(c.name for c in LEDGER_SCHEMA if c.type is int)
TEXT_COLUMNS: frozenset[str] = frozenset(c.name for c in LEDGER_SCHEMA if c.type is str)
OPTIONAL_COLUMNS: frozenset[str] = frozenset(c.name for c in LEDGER_SCHEMA if c.optional)
"""Columns a :class:`~v2p.economics.ledger.LedgerRow` may leave empty ("not measured yet")."""


class NoShiftsError(ValueError):
    """The ledger exists but holds no finished shift yet (empty, header only, or one partial row).

    A ``ValueError`` like every other ledger problem, but a distinct type: a run that stopped
    before its first shift is a normal state, which callers may report and move on from.
    """


class PartialRowWarning(UserWarning):
    """The ledger's last line is incomplete (a run still writing, or killed mid-line): skipped."""


@dataclass(frozen=True, eq=False)
class Ledger:
    """A ledger's rows as one read-only numpy array per column of ``LEDGER_COLUMNS``.

    Integer columns are int64, ``source`` is a str array, every other column float64; empty
    cells of the optional columns (:data:`OPTIONAL_COLUMNS`) are NaN.
    ``label`` names the run in reports; ``partial_line`` is the 1-based number of a skipped
    incomplete last line, or None.
    """

    path: Path
    label: str
    columns: Mapping[str, NDArray] = field(repr=False)
    partial_line: int | None = None

    def __post_init__(self) -> None:
        lengths = {len(values) for values in self.columns.values()}
        if tuple(self.columns) != LEDGER_COLUMNS or len(lengths) != 1:
            raise ValueError("Ledger.columns must hold LEDGER_COLUMNS, in order, of one length")
        for values in self.columns.values():
            values.setflags(write=False)

    def __len__(self) -> int:
        return len(self.columns["episode"])

    def __getitem__(self, column: str) -> NDArray:
        if column not in self.columns:
            raise KeyError(f"{column!r} is not a ledger column; the columns are {LEDGER_COLUMNS}")
        return self.columns[column]

    @property
    def sources(self) -> tuple[str, ...]:
        """Distinct data sources, in order of first appearance."""
        return tuple(dict.fromkeys(self.columns["source"].tolist()))


def read_ledger(path: str | os.PathLike[str], label: str | None = None) -> Ledger:
    """Read the ledger at ``path`` up to its last complete row (ECONOMICS.md section 10).

    Raises:
        FileNotFoundError: no file at ``path``.
        NoShiftsError: the file is empty or holds only the header (and maybe a partial row).
        ValueError: the header is not ``LEDGER_COLUMNS`` (naming the first differing column),
            a line before the last has the wrong number of fields, or a value does not read
            (naming the line, the column and the value).

    Warns:
        PartialRowWarning: the last line has no line end, or fewer fields than the header: the
            row a running (or killed) writer was in the middle of. It is skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ledger at {str(path)!r} (expected a run's economics.csv)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"ledger {str(path)!r} is not UTF-8 text: {exc}") from exc
    label = path.resolve().parent.name if label is None else label

    lines = text.split("\n")
    # What follows the last line end was still being written: never a finished row.
    tail = lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    header_text = ",".join(LEDGER_COLUMNS)
    if not lines:
        if header_text.startswith(tail):
            what = (
                "the file is empty"
                if not tail
                else "the header only"
                if tail == header_text
                else "a partial header only"
            )
            raise NoShiftsError(f"ledger {str(path)!r}: no finished shifts yet ({what})")
        lines, tail = [tail], ""  # a single unterminated line: judge it as the header
    _check_header(path, next(csv.reader([lines[0]])))

    records = list(csv.reader(lines[1:]))
    partial_line: int | None = None
    if tail:
        partial_line = len(lines) + 1
        _warn_partial(path, partial_line, "has no line end")
    elif records and len(records[-1]) < len(LEDGER_COLUMNS):
        partial_line = len(lines)
        _warn_partial(path, partial_line, f"has {len(records[-1])} of {len(LEDGER_COLUMNS)} fields")
        records.pop()
    if not records:
        extra = " and a partial row" if partial_line is not None else ""
        raise NoShiftsError(
            f"ledger {str(path)!r}: no finished shifts yet (the header{extra} only)"
        )
    return Ledger(path, label, _parse_columns(path, records), partial_line)


def _warn_partial(path: Path, line: int, why: str) -> None:
    warnings.warn(
        f"ledger {str(path)!r}: line {line} {why}: a row still being written (or cut by a kill); "
        "skipped",
        PartialRowWarning,
        stacklevel=3,
    )


def _check_header(path: Path, found: list[str]) -> None:
    if tuple(found) == LEDGER_COLUMNS:
        return
    for position, (expected, got) in enumerate(zip(LEDGER_COLUMNS, found, strict=False), start=1):
        if expected != got:
            problem = f"column {position} is {got!r}, expected {expected!r}"
            break
    else:
        if len(found) < len(LEDGER_COLUMNS):
            missing = LEDGER_COLUMNS[len(found)]
            problem = f"the header stops after {len(found)} columns, missing {missing!r}"
        else:
            problem = f"column {len(LEDGER_COLUMNS) + 1} is an extra column {found[-1]!r}"
    raise ValueError(
        f"ledger {str(path)!r} does not have the ECONOMICS.md section-10 header: {problem}"
    )


def _parse_columns(path: Path, records: list[list[str]]) -> dict[str, NDArray]:
    n_columns = len(LEDGER_COLUMNS)
    cells: dict[str, list[int | float | str]] = {name: [] for name in LEDGER_COLUMNS}
    for line, record in enumerate(records, start=2):  # line 1 is the header
        if len(record) != n_columns:
            raise ValueError(
                f"ledger {str(path)!r}: line {line} has {len(record)} fields, expected "
                f"{n_columns} (only the last line may be incomplete)"
            )
        for name, text in zip(LEDGER_COLUMNS, record, strict=True):
            cells[name].append(_parse_cell(path, line, name, text))
    columns: dict[str, NDArray] = {}
    for name, values in cells.items():
        if name in TEXT_COLUMNS:
            columns[name] = np.array(values, dtype=str)
        elif name in INT_COLUMNS:
            columns[name] = np.array(values, dtype=np.int64)
        else:
            columns[name] = np.array(values, dtype=np.float64)
    return columns


def _parse_cell(path: Path, line: int, column: str, text: str) -> int | float | str:
    if column in TEXT_COLUMNS:
        return text
    if column in OPTIONAL_COLUMNS and text == "":
        return math.nan  # "not measured yet" (LedgerRow's None)
    kind = "an integer" if column in INT_COLUMNS else "a finite number"
    try:
        value: int | float = int(text) if column in INT_COLUMNS else float(text)
    except ValueError:
        value = math.nan
    # The writer never writes NaN or inf (the accountant rejects them), so one here is damage.
    if not math.isfinite(value):
        raise ValueError(
            f"ledger {str(path)!r}: line {line}, column {column!r}: cannot read {text!r} as {kind}"
        )
    return value
