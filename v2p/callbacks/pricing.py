"""The ex-ante price of a source's data from its novelty (ECONOMICS.md section 7.2).

ΔMPL_cust, what a source's data did, is measured by the attribution (section 7.1,
:mod:`v2p.attribution`); novelty alone never sets it. Novelty quotes the price of data before
it is trained on: an online estimator maps a source's mean novelty to its expected ΔMPL,

    E[ΔMPL_k] = w0 + w1 * mean novelty of source k's transitions,

and learns from the attributions: at every attribution, each customer source is one sample,
its mean novelty over the transitions trained on since the previous attribution against its
attributed contribution (the value of its data so far, units/hr). That is a cross-section of
sources at one point of training, so what the estimator learns is which novelty goes with
which value, not how both move with training progress (the raw site MPL changes the
estimator learnt from before 2026-12-01 fall as training converges while novelty grows, which
taught it a negative slope).

Every trained batch is quoted too (``econ/data_price``): the premium of its transitions at
the estimator's current weights. Everything per batch stays on the batch's device (no host
sync); the novelty window is read back once per attribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from v2p.economics import OnlineDataValueEstimator, data_price
from v2p.validation import check_int, check_scalar


class BatchValue(NamedTuple):
    """A batch's expected ΔMPL [units/hr] quoted ex ante, per source, and its price [$]."""

    delta_mpl: torch.Tensor  # () mean over the batch's transitions of their quote
    per_source: torch.Tensor  # (S,) quote at each source's mean novelty in the batch (0: none)
    price: torch.Tensor  # () the non-sharing premium of the batch's data


class Quote(NamedTuple):
    """One ex-ante quote, and the attribution it was then taught with."""

    source: int
    novelty: float  # the source's mean novelty over the window
    predicted: float  # E[ΔMPL] before learning from this sample [units/hr]
    attributed: float  # the attributed contribution it learnt from [units/hr]


class DataPricer:
    """Ex-ante quotes of each source's data (module docstring).

    Args:
        num_sources: data sources the transitions' ``source`` ids index.
        horizon_hours: hours the premium covers (default a working year of one site).
        scale: deployments the premium applies to.
        min_samples, ridge: of the :class:`~v2p.economics.OnlineDataValueEstimator`.
    """

    def __init__(
        self,
        num_sources: int,
        horizon_hours: float = 2000.0,
        scale: float = 1.0,
        min_samples: int = 10,
        ridge: float = 1.0,
    ) -> None:
        self.num_sources = check_int("num_sources", num_sources, ge=1)
        self.horizon_hours = check_scalar("horizon_hours", horizon_hours, ge=0)
        self.scale = check_scalar("scale", scale, ge=0)
        self.estimator = OnlineDataValueEstimator(1, min_samples=min_samples, ridge=ridge)
        self.price_per_unit = 0.0  # of the latest accounted shift; no price before one
        # The confidence discount of the latest window's mean novelty, for the batch quotes
        # (a batch's own would need a host read of its novelty).
        self.kappa = 0.0
        self.quotes: list[Quote] = []  # every sample the estimator learnt from, in order
        self._last_novelty = [math.nan] * self.num_sources  # of each source's latest window
        self._reset_window()

    def _reset_window(self) -> None:
        self._novelty_sum: torch.Tensor | None = None  # (S,) on the batches' device
        self._count: torch.Tensor | None = None  # (S,)

    def _weights(self) -> tuple[float, float]:
        """``(w0, w1)`` of the estimator's prediction, both 0 until it has ``min_samples``."""
        w0 = self.estimator.predict([0.0])
        return w0, self.estimator.predict([1.0]) - w0

    def price_batch(self, novelty: torch.Tensor, source: torch.Tensor) -> BatchValue:
        """Quote a batch's transitions (novelty (n,), source ids (n,)) and add their novelty
        to the open window."""
        novelty = novelty.detach().float()
        source = source.to(novelty.device, torch.long)
        if self._novelty_sum is None:
            self._novelty_sum, self._count = (novelty.new_zeros(self.num_sources) for _ in "ab")
        elif self._novelty_sum.device != novelty.device:  # restored from a checkpoint on the CPU
            self._novelty_sum, self._count = (t.to(novelty.device) for t in self._window())
        batch_sum = novelty.new_zeros(self.num_sources).index_add_(0, source, novelty)
        batch_count = novelty.new_zeros(self.num_sources).index_add_(
            0, source, torch.ones_like(novelty)
        )
        self._novelty_sum += batch_sum
        self._count += batch_count
        w0, w1 = self._weights()
        per_source = torch.where(batch_count > 0, w0 + w1 * batch_sum / batch_count.clamp_min(1), 0)
        total = w0 + w1 * novelty.mean()
        price = self.price_per_unit * self.kappa * total.clamp_min(0.0)
        return BatchValue(total, per_source, price * self.horizon_hours * self.scale)

    def _window(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._novelty_sum is not None and self._count is not None
        return self._novelty_sum, self._count

    def window_novelty(self) -> list[float]:
        """Each source's mean novelty over the open window; a source without transitions in
        it keeps its previous window's (NaN: never scored)."""
        if self._novelty_sum is not None:
            sums, counts = (t.tolist() for t in self._window())
            for k, (s, c) in enumerate(zip(sums, counts, strict=True)):
                if c:
                    self._last_novelty[k] = s / c
        return list(self._last_novelty)

    def quote(self, source: int) -> tuple[float, float]:
        """``(E[ΔMPL], kappa)`` of a source's data at its latest mean novelty (0, 0 before
        the source was scored or before the estimator has ``min_samples``)."""
        novelty = self._last_novelty[source]
        if math.isnan(novelty):
            return 0.0, 0.0
        return self.estimator.predict([novelty]), self.estimator.kappa([novelty])

    def learn(self, contributions: Sequence[float], sources: Sequence[int]) -> list[Quote]:
        """One sample per source in ``sources`` scored in this window: its mean novelty
        against its attributed contribution. Predicts before it learns; closes the window."""
        novelty = self.window_novelty()
        learnt = []
        for k in sources:
            if math.isnan(novelty[k]) or math.isnan(contributions[k]):
                continue
            predicted = self.estimator.predict_then_update([novelty[k]], contributions[k])
            learnt.append(Quote(k, novelty[k], predicted, float(contributions[k])))
        self.quotes.extend(learnt)
        scored = [v for v in novelty if not math.isnan(v)]
        if scored:
            self.kappa = self.estimator.kappa([sum(scored) / len(scored)])
        self._reset_window()
        return learnt

    def record_unit_price(self, price_per_unit: float) -> None:
        """The price per unit of the latest accounted shift, which later batches are priced
        at (a batch's own shifts have not finished when it is priced)."""
        self.price_per_unit = check_scalar("price_per_unit", price_per_unit, ge=0)

    def shift_price(self, source: int, price_per_unit: float) -> float:
        """The premium quoted for a source's data, at the price of one of its shifts [$]."""
        expected, kappa = self.quote(source)
        return float(data_price(expected, price_per_unit, kappa, self.horizon_hours, self.scale))

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, Any]:
        """Plain python values (``weights_only`` loadable); the open window is read back."""
        sums, counts = (None, None) if self._novelty_sum is None else self._window()
        return {
            "num_sources": self.num_sources,
            "estimator": self.estimator.state_dict(),
            "price_per_unit": self.price_per_unit,
            "kappa": self.kappa,
            "quotes": [list(q) for q in self.quotes],
            # None, not NaN, for a source never scored: NaN != NaN would make equal states differ
            "last_novelty": [None if math.isnan(v) else v for v in self._last_novelty],
            "novelty_sum": None if sums is None else sums.tolist(),
            "count": None if counts is None else counts.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "quotes" not in state:
            raise ValueError(
                "the checkpoint's data pricer learnt from raw site MPL changes (before the "
                "amendment of 2026-12-01 that teaches it the attributions); start a new run"
            )
        self.estimator.load_state_dict(state["estimator"])
        self.price_per_unit = float(state["price_per_unit"])
        self.kappa = float(state["kappa"])
        self.quotes = [Quote(int(q[0]), *map(float, q[1:])) for q in state["quotes"]]
        self._last_novelty = [math.nan if v is None else float(v) for v in state["last_novelty"]]
        if state["novelty_sum"] is None:
            self._reset_window()
        else:
            self._novelty_sum = torch.tensor(state["novelty_sum"])
            self._count = torch.tensor(state["count"])
