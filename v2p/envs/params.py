"""Task parameters of the dishwashing job (ECONOMICS.md sections 1 and 2).

One frozen dataclass holds every parameter of the task, dynamics and economics alike, so that
``gymnasium.make("v2p/Dishwashing-v0", damage_cost=0.1, dish_mix={"plate": 1.0})`` is all it
takes to change the job, and every field is validated where it enters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from v2p.economics.params import EconomicParams, bounded
from v2p.validation import check_int, check_scalar


class DishKind(NamedTuple):
    """How one kind of dish multiplies the base parameters (ECONOMICS.md section 2)."""

    name: str
    base_rate: float
    k_err: float
    p_min: float
    care_cost: float


# The kinds the task knows. Their order fixes the one-hot layout of the state observation, so
# the observation shape does not depend on the mix (a plates-only mix still has three slots).
DISH_KINDS: tuple[DishKind, ...] = (
    DishKind("plate", base_rate=1.0, k_err=1.0, p_min=1.0, care_cost=1.0),
    DishKind("glass", base_rate=1.2, k_err=4.0, p_min=1.5, care_cost=1.0),
    DishKind("pot", base_rate=0.6, k_err=0.1, p_min=0.5, care_cost=3.0),
)
KIND_NAMES: tuple[str, ...] = tuple(kind.name for kind in DISH_KINDS)
DEFAULT_DISH_MIX: Mapping[str, float] = MappingProxyType({"plate": 0.4, "glass": 0.3, "pot": 0.3})


@dataclass(frozen=True)
class DishwashingParams(EconomicParams):
    """Dynamics and economics of one dishwashing site.

    Attempt rate, error probability and the dish-kind table follow ECONOMICS.md section 2;
    the economic fields (price, damage and energy cost, human productivity) come from
    :class:`v2p.economics.EconomicParams`.
    """

    base_rate: float = bounded(2.0, gt=0)  # attempts/min at full speed, before the care slowdown
    care_cost: float = bounded(0.25, ge=0)  # rate lost at full care (capped at 0.95)
    p_min: float = bounded(0.02, ge=0, le=0.5)  # error probability floor
    k_err: float = bounded(0.12, ge=0)  # error probability scale
    q_speed: float = bounded(1.2, gt=0)  # exponent of speed in the error probability
    q_care: float = bounded(1.5, gt=0)  # exponent of (1 - care) in the error probability
    step_seconds: float = bounded(60.0, gt=0)  # length of one env step
    steps: int = 60  # steps per shift (episode truncation)
    dish_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DISH_MIX))
    # The catalogue of kinds the task knows: its order fixes the one-hot layout of the state
    # observation, so sites that share a catalogue share an observation space whatever their
    # mix. Entries are DishKind or mappings of its fields (from a config).
    dish_kinds: tuple[DishKind, ...] = DISH_KINDS

    def __post_init__(self) -> None:
        super().__post_init__()  # checks every bounded() field
        check_int("steps", self.steps, ge=1)
        object.__setattr__(self, "dish_kinds", _catalogue(self.dish_kinds))
        self._check_mix()

    def _check_mix(self) -> None:
        if not isinstance(self.dish_mix, Mapping) or not self.dish_mix:
            raise ValueError(
                f"dish_mix must be a non-empty mapping of kind -> share, got {self.dish_mix!r}"
            )
        for kind, share in self.dish_mix.items():
            if kind not in self.kind_names:
                raise ValueError(
                    f"dish_mix has unknown kind {kind!r}; expected one of {self.kind_names}"
                )
            check_scalar(f"dish_mix[{kind!r}]", share, ge=0)
        total = sum(float(share) for share in self.dish_mix.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"dish_mix shares must sum to 1, got {total!r} from {self.dish_mix!r}")

    @property
    def step_hours(self) -> float:
        return self.step_seconds / 3600.0

    @property
    def shift_hours(self) -> float:
        """H of ECONOMICS.md section 1: the default 60 steps of 60 s make a 1-hour shift."""
        return self.steps * self.step_hours

    @property
    def kind_names(self) -> tuple[str, ...]:
        """The catalogue's kind names, in one-hot order."""
        return tuple(kind.name for kind in self.dish_kinds)

    @property
    def kind_shares(self) -> np.ndarray:
        """Shares of every catalogued kind in :attr:`kind_names` order, zeros for absent
        kinds. (K,)"""
        return np.array([float(self.dish_mix.get(name, 0.0)) for name in self.kind_names])

    @cached_property
    def kind_table(self) -> KindTable:
        """Per-kind base_rate, k_err, p_min and care_cost, each shaped (K,). Computed once."""
        return KindTable(
            base_rate=self.base_rate * np.array([k.base_rate for k in self.dish_kinds]),
            k_err=self.k_err * np.array([k.k_err for k in self.dish_kinds]),
            p_min=self.p_min * np.array([k.p_min for k in self.dish_kinds]),
            care_cost=self.care_cost * np.array([k.care_cost for k in self.dish_kinds]),
        )


def _catalogue(kinds: Any) -> tuple[DishKind, ...]:
    """``dish_kinds`` as a tuple of checked :class:`DishKind` (mappings are converted)."""
    if isinstance(kinds, Mapping | str) or not isinstance(kinds, Sequence) or not kinds:
        raise ValueError(
            f"dish_kinds must be a non-empty list of kinds (name, base_rate, k_err, p_min, "
            f"care_cost), got {kinds!r}"
        )
    catalogue = []
    for i, kind in enumerate(kinds):
        if isinstance(kind, Mapping):
            missing = set(DishKind._fields) - set(kind)
            extra = set(kind) - set(DishKind._fields)
            if missing or extra:
                raise ValueError(
                    f"dish_kinds[{i}] must have exactly the fields {DishKind._fields}; "
                    f"missing {sorted(missing)}, unknown {sorted(extra)}"
                )
            kind = DishKind(**kind)
        elif not isinstance(kind, DishKind):
            raise ValueError(f"dish_kinds[{i}] must be a DishKind or a mapping, got {kind!r}")
        if not isinstance(kind.name, str) or not kind.name:
            raise ValueError(f"dish_kinds[{i}].name must be a non-empty string, got {kind.name!r}")
        for name in ("base_rate", "k_err", "p_min", "care_cost"):
            check_scalar(f"dish_kinds[{i}].{name}", getattr(kind, name), gt=0)
        catalogue.append(DishKind(kind.name, *(float(v) for v in kind[1:])))
    names = [kind.name for kind in catalogue]
    if len(set(names)) != len(names):
        raise ValueError(f"dish_kinds has repeated names: {names}")
    return tuple(catalogue)


class KindTable(NamedTuple):
    """The section-2 parameters after the kind multipliers, one entry per kind. Each (K,)."""

    base_rate: np.ndarray
    k_err: np.ndarray
    p_min: np.ndarray
    care_cost: np.ndarray
