"""The ledger's columns, defined once: the fields of :class:`LedgerRow` (ECONOMICS.md section 10).

Every fact about a column lives on its field: its place (field order), its CSV name (the field
name, or a :class:`Column` annotation where the name cannot be a python identifier), its type
and whether it may be empty (``X | None``). :data:`LEDGER_SCHEMA` reads them off the class,
and the writer, the report's reader and the tests take the columns from it. Adding a column is
one field here and the code in :class:`~v2p.economics.ledger.ShiftAccountant` that fills it;
declare it ``X | None`` so that a ledger written before it existed can be resumed (its rows
get the new column empty, see :mod:`v2p.economics.ledger_file`).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Annotated, NamedTuple


@dataclass(frozen=True)
class Column:
    """Field metadata: the CSV name of a field whose own name cannot be the column's."""

    name: str


class LedgerRow(NamedTuple):
    """One finished shift as accounted; the fields are the ledger's columns, in order.

    ``None`` (an empty cell) means "not measured yet"; it is never replaced by a made-up
    number. :meth:`columns` keys the row by column name.
    """

    episode: int  # running index of accounted shifts
    global_step: int  # trainer.global_step when the shift was accounted
    source: str  # data source of the env that ran the shift
    hours: float  # H [hr]
    completed: int
    attempts: int
    errors: int
    mp_r: float  # MP_r [units/hr]
    err_rate: float  # err [fraction]
    err_target: float  # e* in force for the shift
    w_hat_r: float  # robot implied wage w_r [$/hr]
    w_h: float  # human wage benchmark at the end of the shift [$/hr]
    wage_parity: float  # w_r / w_h
    prod_parity: float  # MP_r / MP_h
    profit: float  # w_r - c_e [$/hr]
    # Lagrange multiplier of the service level; "lambda" is a python keyword.
    lam: Annotated[float, Column("lambda")]
    delta_mpl_total: float  # change of the smoothed MPL over this shift [units/hr]
    delta_mpl_cust: float | None  # part of it attributed to customer data (section 7)
    novelty: float | None  # novelty of the shift's data (section 7)
    s_cust: float
    s_plat: float
    spread: float  # [$/hr]
    spread_value: float  # [$]
    rebate: float  # [$]
    captured: float  # [$]
    # Per effective labor hour (section 6); empty where the shift sold no work (MP_r == 0).
    customer_cost: float | None  # [$/ELH]
    consumer_surplus: float | None  # [$/ELH]
    deflation_ratio: float | None  # rho = cost / w_h
    data_price: float | None  # non-sharing premium quoted for the shift's data [$]

    def columns(self) -> dict[str, int | float | str | None]:
        """The row keyed by ledger column name (``lam`` under ``"lambda"``)."""
        return dict(zip(LEDGER_COLUMNS, self, strict=True))


@dataclass(frozen=True)
class LedgerColumn:
    """One column of the ledger, as :data:`LEDGER_SCHEMA` reads it off :class:`LedgerRow`."""

    name: str  # in the CSV header
    field: str  # of LedgerRow
    type: type  # int, float or str
    optional: bool  # None (an empty cell) allowed


def _schema() -> tuple[LedgerColumn, ...]:
    columns = []
    for field, hint in typing.get_type_hints(LedgerRow, include_extras=True).items():
        name = field
        if typing.get_origin(hint) is Annotated:
            hint, *extras = typing.get_args(hint)
            name = next(extra.name for extra in extras if isinstance(extra, Column))
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = [member for member in members if member is not type(None)]
        if len(kinds) != 1 or kinds[0] not in (int, float, str):
            raise TypeError(f"LedgerRow.{field} must be int, float or str, or one | None")
        columns.append(LedgerColumn(name, field, kinds[0], len(kinds) < len(members)))
    return tuple(columns)


LEDGER_SCHEMA: tuple[LedgerColumn, ...] = _schema()
"""The ledger's columns, in the order of ECONOMICS.md section 10."""

LEDGER_COLUMNS: tuple[str, ...] = tuple(column.name for column in LEDGER_SCHEMA)
"""The ledger's header, in the order of ECONOMICS.md section 10."""
