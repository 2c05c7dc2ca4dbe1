"""EconomicParams: defaults, validation and extension by a task's parameters class."""

import dataclasses

import pytest

from v2p.economics import EconomicParams
from v2p.economics.params import bounded


def test_defaults_match_section_1():
    params = EconomicParams()
    assert (params.price_per_unit, params.damage_cost, params.energy_cost, params.human_mp) == (
        0.30,
        1.00,
        0.10,
        60.0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.price_per_unit = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_per_unit", -0.1),
        ("price_per_unit", float("nan")),
        ("damage_cost", float("inf")),
        ("energy_cost", -1.0),
        ("human_mp", 0.0),
        ("human_mp", -60.0),
        ("human_mp", [60.0, 61.0]),
    ],
)
def test_bad_fields_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        EconomicParams(**{field: value})


def test_zero_costs_are_allowed():
    assert EconomicParams(damage_cost=0.0, energy_cost=0.0).damage_cost == 0.0


def test_subclass_extends_validation():
    @dataclasses.dataclass(frozen=True)
    class TaskParams(EconomicParams):
        base_rate: float = bounded(2.0, gt=0)  # checked by the base __post_init__
        p_min: float = 0.02

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.p_min > 0.5:
                raise ValueError(f"p_min must be <= 0.5, got {self.p_min}")

    assert TaskParams(price_per_unit=0.5).price_per_unit == 0.5
    with pytest.raises(ValueError, match="price_per_unit"):
        TaskParams(price_per_unit=-1.0)
    with pytest.raises(ValueError, match="base_rate"):
        TaskParams(base_rate=0.0)
    with pytest.raises(ValueError, match="p_min"):
        TaskParams(p_min=0.9)
