"""Pricing training data by its predicted ΔMPL, per transition and per source (ECONOMICS.md 7).

The chain: novelty of each transition a batch trains on -> the online data-value estimator ->
predicted ΔMPL -> data price. The estimator is linear in its one feature, the mean novelty of
the transitions trained on, ``ΔMPL_batch = w0 + w1 * mean(novelty)``. Linearity makes the
attribution exact: transition ``i`` of a batch of ``n`` carries ``(w0 + w1 * novelty_i) / n``,
and these sum to the batch's prediction. How that splits between sources (``attribution``):

- ``marginal`` (default): a customer's transition is credited only with what it carries beyond
  a transition of the platform's own data, ``w1 * (novelty_i - ref) / n``, ``ref`` the mean
  novelty of the batch's platform transitions; the rest of its prediction (what the platform's
  data would have brought anyway) is the platform's. Data that duplicates the platform's, or
  that the platform's data already covers, is no more novel than it and earns about nothing:
  the credit follows what the data adds at the margin, not its volume. A batch without
  platform transitions is split proportionally.
- ``proportional``: every transition carries its own ``(w0 + w1 * novelty_i) / n``, so sources
  of equal novelty are credited by volume.

Either way the sources' parts sum to the batch's prediction.

A *window* is the batches trained between two batches in which shifts finished. When it
closes, the shifts that finished get their customer's part of the window's prediction
(``ΔMPL_cust``, before the estimator sees the outcome), and then the estimator learns from the
realised change: the sum of those shifts' ``delta_mpl_total`` (the change of an EMA of MP_r,
see :class:`~v2p.economics.ledger.ShiftAccountant`: per-shift MP_r is Poisson-noisy) spread
evenly over the window's batches, with the window's mean novelty as the feature.

Everything per batch stays on the batch's device (no host sync); the window is read back once,
when it closes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from v2p.economics import OnlineDataValueEstimator, data_price
from v2p.validation import check_int, check_scalar

ATTRIBUTIONS = ("marginal", "proportional")


class BatchValue(NamedTuple):
    """A batch's predicted ΔMPL [units/hr], in total and per source, and its price [$]."""

    delta_mpl: torch.Tensor  # () the batch's predicted ΔMPL
    per_source: torch.Tensor  # (S,) the part carried by each source's transitions; sums to it
    price: torch.Tensor  # () the non-sharing premium of the batch's data


class Window(NamedTuple):
    """A closed window, on the host."""

    batches: int
    delta_mpl: list[float]  # (S,) predicted ΔMPL carried by each source over the window
    novelty: list[float]  # (S,) mean novelty of each source's transitions (NaN: none trained)
    mean_novelty: float  # over every transition of the window: the estimator's feature
    kappa: float  # the estimator's confidence discount for this window, before it learns


class DataPricer:
    """Predicted ΔMPL and price of every trained batch; attribution when shifts finish.

    Args:
        num_sources: data sources the transitions' ``source`` ids index.
        horizon_hours: hours the premium covers (default a working year of one site).
        scale: deployments the premium applies to.
        min_samples, ridge: of the :class:`~v2p.economics.OnlineDataValueEstimator`.
        platform_ids: the source ids of the platform's own data (the reference of the
            ``marginal`` attribution).
        attribution: ``marginal`` or ``proportional`` (module docstring).
    """

    def __init__(
        self,
        num_sources: int,
        horizon_hours: float = 2000.0,
        scale: float = 1.0,
        min_samples: int = 10,
        ridge: float = 1.0,
        platform_ids: Sequence[int] = (0,),
        attribution: str = "marginal",
    ) -> None:
        self.num_sources = check_int("num_sources", num_sources, ge=1)
        if attribution not in ATTRIBUTIONS:
            raise ValueError(f"attribution must be one of {ATTRIBUTIONS}, got {attribution!r}")
        self.attribution = attribution
        bad = [k for k in platform_ids if not 0 <= k < self.num_sources]
        if bad:
            raise ValueError(
                f"platform_ids {list(platform_ids)} must be source ids in [0, {self.num_sources})"
            )
        self._is_platform = torch.zeros(self.num_sources, dtype=torch.bool)
        self._is_platform[list(platform_ids)] = True
        self.horizon_hours = check_scalar("horizon_hours", horizon_hours, ge=0)
        self.scale = check_scalar("scale", scale, ge=0)
        self.estimator = OnlineDataValueEstimator(1, min_samples=min_samples, ridge=ridge)
        self.price_per_unit = 0.0  # of the latest accounted shift; no price before one
        self.kappa = 0.0  # of the latest closed window
        self._reset_window()

    def _reset_window(self) -> None:
        self._batches = 0
        self._value: torch.Tensor | None = None  # (S,) on the batches' device
        self._novelty_sum: torch.Tensor | None = None  # (S,)
        self._count: torch.Tensor | None = None  # (S,)

    def _weights(self) -> tuple[float, float]:
        """``(w0, w1)`` of the estimator's prediction, both 0 until it has ``min_samples``."""
        w0 = self.estimator.predict([0.0])
        return w0, self.estimator.predict([1.0]) - w0

    def price_batch(self, novelty: torch.Tensor, source: torch.Tensor) -> BatchValue:
        """Predicted ΔMPL of a batch's transitions (novelty (n,), source ids (n,)), added to
        the open window."""
        novelty = novelty.detach().float()
        source = source.to(novelty.device, torch.long)
        w0, w1 = self._weights()
        per_transition = (w0 + w1 * novelty) / novelty.shape[0]  # (n,) sums to the prediction
        per_source = novelty.new_zeros(self.num_sources).index_add_(0, source, per_transition)
        if self.attribution == "marginal":
            per_source = self._marginal(novelty, source, per_transition, w1, per_source)
        if self._value is None:
            self._value, self._novelty_sum, self._count = (
                novelty.new_zeros(self.num_sources) for _ in range(3)
            )
        elif self._value.device != novelty.device:  # restored from a checkpoint on the CPU
            self._value, self._novelty_sum, self._count = (
                t.to(novelty.device) for t in (self._value, self._novelty_sum, self._count)
            )
        self._value += per_source
        self._novelty_sum.index_add_(0, source, novelty)
        self._count.index_add_(0, source, torch.ones_like(novelty))
        self._batches += 1
        total = per_transition.sum()
        price = self.price_per_unit * self.kappa * total.clamp_min(0.0)
        return BatchValue(total, per_source, price * self.horizon_hours * self.scale)

    def _marginal(
        self,
        novelty: torch.Tensor,
        source: torch.Tensor,
        per_transition: torch.Tensor,
        w1: float,
        proportional: torch.Tensor,
    ) -> torch.Tensor:
        """Per-source parts of the ``marginal`` attribution (module docstring); on the
        batch's device, without a host sync."""
        if self._is_platform.device != novelty.device:
            self._is_platform = self._is_platform.to(novelty.device)
        n = novelty.shape[0]
        platform = self._is_platform[source]  # (n,)
        platform_count = novelty.new_zeros(self.num_sources).index_add_(
            0, source, platform.float()
        )  # (S,) platform transitions per platform source
        count = platform_count.sum()
        reference = (novelty * platform).sum() / count.clamp_min(1.0)
        excess = torch.where(platform, 0.0, w1 * (novelty - reference) / n)  # customers' credit
        customers = novelty.new_zeros(self.num_sources).index_add_(0, source, excess)
        # The platform keeps its own transitions' part and the rest of the customers'.
        platform_part = per_transition.sum() - excess.sum()
        marginal = customers + platform_part * platform_count / count.clamp_min(1.0)
        return torch.where(count > 0, marginal, proportional)

    def close_window(self) -> Window | None:
        """The open window (None if no batch was priced since the last one), then a new one."""
        if self._batches == 0:
            return None
        value, novelty_sum, count = (
            t.tolist() for t in (self._value, self._novelty_sum, self._count)
        )
        mean_novelty = sum(novelty_sum) / max(sum(count), 1.0)
        self.kappa = self.estimator.kappa([mean_novelty])
        window = Window(
            batches=self._batches,
            delta_mpl=value,
            novelty=[s / c if c else math.nan for s, c in zip(novelty_sum, count, strict=True)],
            mean_novelty=mean_novelty,
            kappa=self.kappa,
        )
        self._reset_window()
        return window

    def record_unit_price(self, price_per_unit: float) -> None:
        """The price per unit of the latest accounted shift, which later batches are priced
        at (a batch's own shifts have not finished when it is priced)."""
        self.price_per_unit = check_scalar("price_per_unit", price_per_unit, ge=0)

    def shift_price(self, delta_mpl_cust: float, price_per_unit: float, kappa: float) -> float:
        """The premium quoted for a customer's data behind ``delta_mpl_cust`` [$]."""
        return float(
            data_price(delta_mpl_cust, price_per_unit, kappa, self.horizon_hours, self.scale)
        )

    def learn(self, window: Window, realised_delta_mpl: float) -> None:
        """Update the estimator with the realised (smoothed) ΔMPL of a window's shifts."""
        self.estimator.update([window.mean_novelty], realised_delta_mpl / window.batches)

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, Any]:
        """Plain python values (``weights_only`` loadable); the open window is read back."""

        def as_list(t: torch.Tensor | None) -> list[float] | None:
            return None if t is None else t.tolist()

        return {
            "num_sources": self.num_sources,
            "estimator": self.estimator.state_dict(),
            "price_per_unit": self.price_per_unit,
            "kappa": self.kappa,
            "batches": self._batches,
            "value": as_list(self._value),
            "novelty_sum": as_list(self._novelty_sum),
            "count": as_list(self._count),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def as_tensor(values: Sequence[float] | None) -> torch.Tensor | None:
            return None if values is None else torch.tensor(values)

        self.estimator.load_state_dict(state["estimator"])
        self.price_per_unit = float(state["price_per_unit"])
        self.kappa = float(state["kappa"])
        self._batches = int(state["batches"])
        self._value = as_tensor(state["value"])
        self._novelty_sum = as_tensor(state["novelty_sum"])
        self._count = as_tensor(state["count"])
