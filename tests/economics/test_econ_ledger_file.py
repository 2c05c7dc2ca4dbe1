"""Section 10: the ledger's columns defined once, and resuming a ledger with an older header."""

import os

import pytest

from v2p.economics import ConstantWage, WageIndexer
from v2p.economics.ledger import LEDGER_COLUMNS, LedgerRow, LedgerWriter, ShiftAccountant
from v2p.economics.ledger_file import header_problem
from v2p.economics.ledger_row import LEDGER_SCHEMA
from v2p.economics.shift import ShiftCounts
from v2p.report.ledger_io import INT_COLUMNS, OPTIONAL_COLUMNS, TEXT_COLUMNS, read_ledger

HEADER = ",".join(LEDGER_COLUMNS)


def rows(n: int) -> list[LedgerRow]:
    acc = ShiftAccountant(WageIndexer(ConstantWage(18.0), w_h_init=18.0, update_every=2))
    counts = ShiftCounts(1.0, 70, 4, 66, 0.3, 1.0, 0.1, 60.0, 15.0, 70.0, 4.0)
    return [
        acc.account(
            counts, episode=i, global_step=i, source="a,b", err_target=0.1, lam=0.5, novelty=0.25
        )
        for i in range(n)
    ]


def write(path, table: list[list[str]]) -> None:
    path.write_text("".join(",".join(line) + "\n" for line in table))


def without(columns: set[str], text: str) -> list[list[str]]:
    """The ledger ``text`` (simple cells only) as written before ``columns`` existed."""
    keep = [i for i, name in enumerate(LEDGER_COLUMNS) if name not in columns]
    return [[line.split(",")[i] for i in keep] for line in text.splitlines()]


def test_the_schema_is_read_off_the_row():
    assert tuple(c.field for c in LEDGER_SCHEMA) == LedgerRow._fields
    assert {c.field: c.name for c in LEDGER_SCHEMA if c.name != c.field} == {"lam": "lambda"}
    # Each field's declared type is what the accountant fills it with.
    row = rows(1)[0]._replace(data_price=None)
    for column in LEDGER_SCHEMA:
        value = getattr(row, column.field)
        assert type(value) is column.type or (value is None and column.optional), column
    # The reader's column kinds come from the same fields (these were its hand-written sets).
    assert INT_COLUMNS >= {"episode", "global_step", "completed", "attempts", "errors"}
    assert TEXT_COLUMNS >= {"source"} and "hours" not in INT_COLUMNS | TEXT_COLUMNS
    assert OPTIONAL_COLUMNS >= {"delta_mpl_cust", "novelty", "data_price"}
    assert "profit" not in OPTIONAL_COLUMNS


def test_an_older_header_is_migrated_with_the_new_columns_empty(tmp_path):
    # Today's file, with delta_mpl_cust and data_price empty as an older version left them.
    today = tmp_path / "today.csv"
    with LedgerWriter(today) as writer:
        for row in rows(3):
            writer.append(row._replace(source="platform"))
    expected = today.read_bytes()
    old = tmp_path / "economics.csv"
    write(old, without({"delta_mpl_cust", "data_price"}, today.read_text()))
    with open(old, "a") as handle:  # and a row cut short by a kill
        handle.write("3,3,platf")
    with LedgerWriter(old) as writer:
        assert writer.rows == 3
        assert old.read_bytes() == expected
        writer.append(rows(4)[3])
    assert len(read_ledger(old)) == 4
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary left


def test_migration_keeps_quoted_cells(tmp_path):
    path = tmp_path / "economics.csv"
    with LedgerWriter(path) as writer:
        writer.append(rows(1)[0])  # source "a,b" is quoted
    text = path.read_text()
    header, line = text.splitlines()
    path.write_text(header.removesuffix(",data_price") + "\n" + line.removesuffix(",") + "\n")
    LedgerWriter(path).close()
    assert path.read_text() == text


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (HEADER.replace(",rebate", ""), r"cannot be empty: \['rebate'\]"),
        (HEADER + ",bonus", r"does not know: \['bonus'\]"),
        (HEADER.replace("hours,completed", "completed,hours"), "not in today's order"),
    ],
)
def test_a_header_that_cannot_be_migrated_stops_the_writer(tmp_path, header, problem):
    path = tmp_path / "economics.csv"
    path.write_text(header + "\n")
    with pytest.raises(ValueError, match=problem) as info:
        LedgerWriter(path)
    assert "move the file away" in str(info.value) and "economics.csv" in str(info.value)
    assert path.read_text() == header + "\n"
    lacking_hours = [name for name in LEDGER_COLUMNS if name != "hours"]
    assert header_problem(lacking_hours) == "it lacks columns that cannot be empty: ['hours']"


def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "economics.csv"
    old = HEADER.removesuffix(",data_price") + "\n"
    path.write_text(old)

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        LedgerWriter(path)
    assert path.read_text() == old and os.listdir(tmp_path) == ["economics.csv"]
