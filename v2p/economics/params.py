"""Economic parameters of a task (ECONOMICS.md section 1).

:class:`EconomicParams` is a frozen dataclass meant to be extended: a task's parameters class
(``DishwashingParams(EconomicParams)``) adds its own fields and, if it needs checks of its own,
a ``__post_init__`` that first calls ``super().__post_init__()``. Fields declared with
:func:`bounded` are checked here, base or subclass alike, so declaring the bound is enough.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from v2p.validation import check_scalar

_BOUNDS_KEY = "v2p_bounds"


def bounded(
    default: float,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> Any:
    """A dataclass field whose value :meth:`EconomicParams.__post_init__` checks.

    The value must be a finite number and satisfy the given bounds (``ge``: >=, ``gt``: >,
    ``le``: <=); otherwise construction raises ``ValueError`` naming the field.
    """
    return field(default=default, metadata={_BOUNDS_KEY: {"ge": ge, "gt": gt, "le": le}})


@dataclass(frozen=True)
class EconomicParams:
    """Prices, costs and the human benchmark productivity (ECONOMICS.md section 1)."""

    price_per_unit: float = bounded(0.30, ge=0)  # p [$/unit]: revenue of one completed unit
    damage_cost: float = bounded(1.00, ge=0)  # c_a [$/error]: cost of one broken unit
    energy_cost: float = bounded(0.10, ge=0)  # c_e [$/hr]: running cost of the robot
    human_mp: float = bounded(60.0, gt=0)  # MP_h [units/hr]: divides MP_r for prod. parity

    def __post_init__(self) -> None:
        for f in fields(self):
            bounds = f.metadata.get(_BOUNDS_KEY)
            if bounds is not None:
                check_scalar(f.name, getattr(self, f.name), **bounds)
