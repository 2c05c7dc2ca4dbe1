"""The ledger file: an append-only CSV of :class:`LedgerRow`s (ECONOMICS.md section 10).

A resumed run continues its ledger. One written before a column was added (a header whose
columns are today's, in today's order, less some that may be empty) is migrated when it is
opened: rewritten with today's header and the new columns empty in its rows, through a
temporary file that replaces it atomically, so a kill leaves either the old file or the new
one. Any other header stops the writer with a message that says what differs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path
from types import TracebackType

from v2p.economics.ledger_row import LEDGER_COLUMNS, LEDGER_SCHEMA, LedgerRow
from v2p.validation import check_int


def _cell(value: int | float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    # repr of a float is the shortest string that reads back as the same float.
    return repr(float(value))


class LedgerWriter:
    """An append-only CSV file of :class:`LedgerRow`s with the section-10 header.

    Creates the parent directories, and writes the header when the file is new or empty. An
    existing file with an older header is migrated (module docstring); any other header raises
    ``ValueError``. Each row is one line (``source`` may not contain a line break) and is
    flushed as it is appended, so after a kill at most the last line is partial: opening the
    file drops such a partial line, since writing after it would fuse it with the next row.
    Floats are written with ``repr`` (they read back exactly), ints as ints, ``None`` as an
    empty cell.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._header = ",".join(LEDGER_COLUMNS) + "\n"
        self._path.parent.mkdir(parents=True, exist_ok=True)
        content = self._path.read_bytes() if self._path.exists() else b""
        header = self._header.encode()
        if b"\n" not in content and header.startswith(content):
            # New, empty, or holding a header cut short by a kill: (re)write the header.
            self._path.write_bytes(header)
            content = header
        elif not content.startswith(header):
            content = _migrate(self._path, content)
        complete = content.rfind(b"\n") + 1
        if complete < len(content):
            os.truncate(self._path, complete)
        self._rows = content.count(b"\n") - 1
        self._handle = self._path.open("a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._handle, lineterminator="\n")

    @property
    def path(self) -> Path:
        return self._path

    @property
    def rows(self) -> int:
        """Complete data rows in the file."""
        return self._rows

    def append(self, row: LedgerRow) -> None:
        """Write one row and flush it to the OS (no fsync: a process kill loses nothing)."""
        if not isinstance(row, LedgerRow):
            raise ValueError(f"row must be a LedgerRow, got {type(row).__name__}")
        if "\n" in row.source or "\r" in row.source:
            raise ValueError(f"row.source must not contain a line break, got {row.source!r}")
        self._csv.writerow([_cell(value) for value in row])
        self._handle.flush()
        self._rows += 1

    def truncate(self, n_rows: int) -> None:
        """Keep the header and the first ``n_rows`` data rows; drop every later line.

        This is how a resumed run drops the shifts written after its checkpoint was taken.
        ``n_rows`` larger than the file's row count raises ``ValueError``: those shifts were
        lost, and continuing would leave a gap in the ledger.
        """
        n_rows = check_int("n_rows", n_rows, ge=0)
        if n_rows > self._rows:
            raise ValueError(
                f"n_rows must be <= the {self._rows} complete rows of ledger "
                f"{str(self._path)!r}, got {n_rows}"
            )
        self._handle.close()
        content = self._path.read_bytes()
        end = 0
        for _ in range(n_rows + 1):  # the header line, then n_rows data lines
            end = content.index(b"\n", end) + 1
        os.truncate(self._path, end)
        self._rows = n_rows
        self._handle = self._path.open("a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._handle, lineterminator="\n")

    def close(self) -> None:
        """Close the file; idempotent."""
        self._handle.close()

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def ledger_prefix(path: str | os.PathLike[str], n_rows: int) -> bytes | None:
    """The header and first ``n_rows`` complete rows of the ledger at ``path``, as written
    (None: the file is missing or holds fewer complete rows)."""
    path = Path(path)
    if not path.is_file():
        return None
    content = path.read_bytes()
    end = 0
    for _ in range(n_rows + 1):  # the header line, then n_rows data lines
        end = content.find(b"\n", end) + 1
        if end == 0:
            return None
    return content[:end]


def prefix_digest(prefix: bytes) -> str:
    """A fingerprint of a ledger's first rows: a checkpoint records it so that a resumed run
    can tell its own ledger from another run's, wherever the file was moved."""
    return hashlib.sha256(prefix).hexdigest()


def write_ledger_copy(path: str | os.PathLike[str], prefix: bytes) -> None:
    """Start the ledger at ``path`` with the rows of another (a resumed run's own copy),
    through a temporary file, so a kill leaves no half-copied ledger."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(prefix)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def header_problem(found: list[str]) -> str | None:
    """Why a ledger with the header ``found`` cannot be migrated to today's; None if it can."""
    found = list(found)
    unknown = [name for name in found if name not in LEDGER_COLUMNS]
    if unknown:
        return f"it has columns this version does not know: {unknown}"
    if len(set(found)) < len(found):
        return f"it repeats columns: {sorted({n for n in found if found.count(n) > 1})}"
    if found != [name for name in LEDGER_COLUMNS if name in found]:
        return "its columns are not in today's order"
    required = [c.name for c in LEDGER_SCHEMA if c.name not in found and not c.optional]
    if required:
        return f"it lacks columns that cannot be empty: {required}"
    return None


def _migrate(path: Path, content: bytes) -> bytes:
    """Rewrite an older ledger with today's header; return the new content."""
    first_line = content.split(b"\n", 1)[0].decode("utf-8", "replace").removesuffix("\r")
    found = next(csv.reader([first_line]), [])
    problem = header_problem(found)
    if problem is not None:
        raise ValueError(
            f"ledger {str(path)!r} has the header {first_line!r}, which cannot be continued: "
            f"{problem}. This version writes the columns {list(LEDGER_COLUMNS)}. Resume with "
            "the version that wrote the file, or move the file away to start a new ledger."
        )
    complete = content[: content.rfind(b"\n") + 1]  # a partial last row is dropped
    lines = complete.decode("utf-8").split("\n")[1:-1]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LEDGER_COLUMNS)
    for line_number, record in enumerate(csv.reader(lines), start=2):
        if len(record) != len(found):
            raise ValueError(
                f"ledger {str(path)!r}: line {line_number} has {len(record)} fields, expected "
                f"{len(found)}; the file was not migrated to the columns {list(LEDGER_COLUMNS)}"
            )
        cells = dict(zip(found, record, strict=True))
        writer.writerow([cells.get(name, "") for name in LEDGER_COLUMNS])
    migrated = out.getvalue().encode("utf-8")
    temporary = path.with_name(f".{path.name}.migrating")
    try:
        with temporary.open("wb") as handle:
            handle.write(migrated)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return migrated
