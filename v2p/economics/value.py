"""Data value: novelty features to expected ΔMPL to a price (ECONOMICS.md section 7)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from v2p.economics._numeric import Real, RealLike, scalar_or_array
from v2p.validation import check_int, check_real, check_scalar


class OnlineDataValueEstimator:
    """Online Bayesian linear regression from novelty features to realised ΔMPL (section 7).

    The model is ``ΔMPL = w0 + w . features + noise`` with a Gaussian prior ``w ~ N(0,
    sigma^2 / ridge * I)`` on every weight, intercept included. It learns by recursive least
    squares: each sample is one rank-one (Sherman-Morrison) update of the posterior mean and of
    ``P = (X^T X + ridge * I)^-1``, so nothing is refit over the history and memory does not
    grow with the number of shifts.

    The noise variance ``sigma^2`` is estimated online as the mean of squared standardised
    one-step-ahead errors, ``e_t^2 / (1 + x_t^T P_{t-1} x_t)``, whose sum equals the ridge
    objective ``min_w |y - X w|^2 + ridge |w|^2`` at every step; under the model each term has
    expectation ``sigma^2``.

    It predicts before it learns (:meth:`predict_then_update`) and returns 0 until it has seen
    ``min_samples``. Per-shift ΔMPL is Poisson-noisy, so the caller should pass a smoothed
    target (the ΔMPL of an EMA of MPL, or of periodic evaluations) and record which it used.
    """

    def __init__(
        self,
        n_features: int = 1,
        min_samples: int = 10,
        ridge: float = 1.0,
        confidence_z: float = 1.645,
    ) -> None:
        self._n_features = check_int("n_features", n_features, ge=1)
        self._min_samples = check_int("min_samples", min_samples, ge=0)
        self._ridge = check_scalar("ridge", ridge, gt=0)
        self._confidence_z = check_scalar("confidence_z", confidence_z, ge=0)
        dim = self._n_features + 1
        self._weights = np.zeros(dim)  # (D,) posterior mean, intercept first
        self._precision_inv = np.eye(dim) / self._ridge  # (D, D) P; sigma^2 * P is the cov
        self._sse = 0.0  # sum of squared standardised one-step-ahead errors
        self._n_seen = 0

    @property
    def n_features(self) -> int:
        return self._n_features

    @property
    def n_seen(self) -> int:
        """Samples learned from so far."""
        return self._n_seen

    @property
    def weights(self) -> NDArray[np.float64]:
        """A copy of the posterior mean weights, intercept first. (D,)"""
        return self._weights.copy()

    @property
    def noise_variance(self) -> float:
        """The running estimate of ``sigma^2`` (0 before any sample)."""
        return self._sse / self._n_seen if self._n_seen else 0.0

    def _design(self, features: RealLike) -> NDArray[np.float64]:
        x = check_real("features", features)
        if x.shape != (self._n_features,):
            raise ValueError(
                f"features must be a 1-D array of length {self._n_features}, got shape {x.shape}"
            )
        return np.concatenate(([1.0], x))  # (D,)

    def _ready(self) -> bool:
        return self._n_seen >= self._min_samples

    def predict(self, features: RealLike) -> float:
        """Expected ΔMPL for these features; 0.0 until ``min_samples`` have been seen."""
        x = self._design(features)
        return float(x @ self._weights) if self._ready() else 0.0

    def update(self, features: RealLike, realised_delta_mpl: float) -> None:
        """Learn from one realised (smoothed) ΔMPL by a rank-one update."""
        x = self._design(features)
        y = check_scalar("realised_delta_mpl", realised_delta_mpl)
        px = self._precision_inv @ x  # (D,)
        innovation_scale = 1.0 + float(x @ px)
        error = y - float(x @ self._weights)
        gain = px / innovation_scale  # (D,)
        self._weights = self._weights + gain * error
        precision_inv = self._precision_inv - np.outer(gain, px)
        # Symmetrise: the rank-one downdate drifts off symmetric by rounding over many shifts.
        self._precision_inv = 0.5 * (precision_inv + precision_inv.T)
        self._sse += error * error / innovation_scale
        self._n_seen += 1

    def predict_then_update(self, features: RealLike, realised_delta_mpl: float) -> float:
        """Predict for these features, then learn from the realised value; return the prediction.

        The prediction is the one made before this sample was seen, so it is an honest
        out-of-sample forecast of the shift it is used to price.
        """
        prediction = self.predict(features)
        self.update(features, realised_delta_mpl)
        return prediction

    def kappa(self, features: RealLike) -> float:
        """Confidence discount ``clip(LCB / mean, 0, 1)`` of the expected ΔMPL (section 7).

        ``LCB = mean - confidence_z * std``, with ``std = sqrt(sigma^2 * x^T P x)`` the posterior
        std of the predicted mean ``x . w``: the price is on the expectation, so its discount is
        the uncertainty of the expectation, which shrinks as data accrues (the per-shift noise
        does not). 0 until ``min_samples`` have been seen, and 0 where the mean is <= 0.
        """
        x = self._design(features)
        if not self._ready():
            return 0.0
        mean = float(x @ self._weights)
        if mean <= 0.0:
            return 0.0
        # max(0, .): P is positive definite, but rounding can push a tiny x^T P x below 0.
        leverage = max(0.0, float(x @ self._precision_inv @ x))
        std = float(np.sqrt(self.noise_variance * leverage))
        return float(np.clip((mean - self._confidence_z * std) / mean, 0.0, 1.0))

    def state_dict(self) -> dict[str, Any]:
        """Learned state as plain python numbers and lists (exact: floats round-trip)."""
        return {
            "n_seen": self._n_seen,
            "sse": self._sse,
            "weights": self._weights.tolist(),
            "precision_inv": self._precision_inv.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict` into an estimator of the same shape."""
        dim = self._n_features + 1
        weights = check_real("state['weights']", state["weights"])
        precision_inv = check_real("state['precision_inv']", state["precision_inv"])
        if weights.shape != (dim,) or precision_inv.shape != (dim, dim):
            raise ValueError(
                f"state has weights of shape {weights.shape} and precision_inv of shape "
                f"{precision_inv.shape}; this estimator (n_features={self._n_features}) "
                f"expects ({dim},) and ({dim}, {dim})"
            )
        self._n_seen = check_int("state['n_seen']", state["n_seen"], ge=0)
        self._sse = check_scalar("state['sse']", state["sse"], ge=0)
        self._weights = weights.copy()
        self._precision_inv = precision_inv.copy()


def data_price(
    expected_delta_mpl: RealLike,
    price_per_unit: RealLike,
    kappa: RealLike,
    horizon_hours: RealLike,
    scale: RealLike = 1.0,
) -> Real:
    """Non-sharing premium ``p * kappa * max(0, E[ΔMPL]) * horizon_hours * scale`` [$] (sec. 7).

    ``E[ΔMPL]`` may be negative (data predicted to hurt); it is floored at 0 because a premium
    for withholding data is never negative: data that would not help is simply worth nothing.
    ``kappa`` is in [0, 1], ``horizon_hours`` >= 0 and ``scale`` (deployments) >= 0.
    """
    expected_delta_mpl = check_real("expected_delta_mpl", expected_delta_mpl)
    price_per_unit = check_real("price_per_unit", price_per_unit, ge=0)
    kappa = check_real("kappa", kappa, ge=0, le=1)
    horizon_hours = check_real("horizon_hours", horizon_hours, ge=0)
    scale = check_real("scale", scale, ge=0)
    gain = np.maximum(0.0, expected_delta_mpl)
    return scalar_or_array(price_per_unit * kappa * gain * horizon_hours * scale)
