"""A ledger's cash flows (ECONOMICS.md section 8) and its deflation-ratio trend (section 9.4).

The fleet NPV uses :func:`v2p.economics.fleet_npv` on the ledger's captured spread per
robot-hour; its risk band is a bootstrap over shifts (section 8: "from the spread of the
ledger's per-shift values ... never from a made-up volatility"). The trend is an ordinary
least-squares line with a Student-t interval, computed with numpy and the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from v2p.economics import annual_cash_flow, fleet_npv
from v2p.report.ledger_io import Ledger
from v2p.validation import check_int, check_real, check_scalar

# Bootstrap index matrices are built in chunks of at most this many cells, so a long ledger
# (1e5 shifts) times 2000 resamples does not allocate gigabytes at once.
_BOOTSTRAP_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True)
class CashFlowOptions:
    """The fleet and the bootstrap of section 8; each field is validated on construction.

    Args:
        robots: robots in the fleet, >= 0.
        hours_per_year: operating hours per robot per year, >= 0.
        years: whole years of cash flow, >= 0.
        discount_rate: annual discount rate, in [0, 1].
        bootstrap: resamples of the shifts for the P5 to P95 band, >= 1.
        seed: seed of the bootstrap's numpy Generator, >= 0.
    """

    robots: float = 1.0
    hours_per_year: float = 2000.0
    years: int = 5
    discount_rate: float = 0.08
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        check_scalar("robots", self.robots, ge=0)
        check_scalar("hours_per_year", self.hours_per_year, ge=0)
        check_int("years", self.years, ge=0)
        check_scalar("discount_rate", self.discount_rate, ge=0, le=1)
        check_int("bootstrap", self.bootstrap, ge=1)
        check_int("seed", self.seed, ge=0)


class NPVEstimate(NamedTuple):
    """The fleet NPV of one ledger with its bootstrap band (section 8)."""

    shifts: int
    captured_per_hour: float  # sum(captured) / sum(hours) [$/robot-hr]
    captured_per_hour_p5: float
    captured_per_hour_p95: float
    annual: float  # [$/yr] for the whole fleet
    npv: float  # [$]
    npv_p5: float
    npv_p95: float


def captured_per_hour(captured: ArrayLike, hours: ArrayLike) -> float:
    """Platform captured spread per robot-hour ``sum(captured) / sum(hours)`` [$/hr] (section 8).

    A ratio of sums, not a mean of per-shift rates, so shifts of different lengths weigh by
    their hours.
    """
    captured = check_real("captured", captured, ge=0)
    hours = check_real("hours", hours, ge=0)
    total_hours = float(hours.sum())
    if total_hours <= 0:
        raise ValueError(f"hours must sum to > 0 to give a rate per hour, got {total_hours}")
    return float(captured.sum()) / total_hours


def bootstrap_captured_per_hour(
    captured: ArrayLike, hours: ArrayLike, resamples: int, seed: int
) -> NDArray[np.float64]:
    """``resamples`` values of :func:`captured_per_hour` over shifts drawn with replacement.

    Each resample draws as many shifts as there are, uniformly with replacement, from a numpy
    ``Generator`` seeded with ``seed``: the same seed gives the same values. A resample whose
    shifts all have 0 hours (possible only if some shifts do) has rate 0.
    """
    captured = check_real("captured", captured, ge=0)
    hours = check_real("hours", hours, ge=0)
    resamples = check_int("resamples", resamples, ge=1)
    n = captured.size
    if n == 0 or hours.shape != captured.shape or captured.ndim != 1:
        raise ValueError(
            f"captured and hours must be 1-d of one non-zero length, got {captured.shape} "
            f"and {hours.shape}"
        )
    rng = np.random.default_rng(check_int("seed", seed, ge=0))
    out = np.empty(resamples)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        index = rng.integers(0, n, size=(stop - start, n))  # (chunk, shifts)
        num, den = captured[index].sum(axis=1), hours[index].sum(axis=1)
        out[start:stop] = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return out


def npv_estimate(ledger: Ledger, options: CashFlowOptions) -> NPVEstimate:
    """Fleet NPV of a ledger's captured spread per robot-hour, with a P5 to P95 band (section 8).

    The band comes from :func:`bootstrap_captured_per_hour`; NPV is linear in the rate, so
    the NPV percentiles are the NPVs of the rate percentiles.
    """
    rate = captured_per_hour(ledger["captured"], ledger["hours"])
    samples = bootstrap_captured_per_hour(
        ledger["captured"], ledger["hours"], options.bootstrap, options.seed
    )
    p5, p95 = (float(v) for v in np.percentile(samples, [5.0, 95.0]))

    def npv(per_hour: float) -> float:
        return float(
            fleet_npv(
                per_hour,
                options.hours_per_year,
                options.robots,
                options.years,
                options.discount_rate,
            )
        )

    return NPVEstimate(
        shifts=len(ledger),
        captured_per_hour=rate,
        captured_per_hour_p5=p5,
        captured_per_hour_p95=p95,
        annual=float(annual_cash_flow(rate, options.hours_per_year, options.robots)),
        npv=npv(rate),
        npv_p5=npv(p5),
        npv_p95=npv(p95),
    )


# ---------------------------------------------------------------------------- trend


class LinearTrend(NamedTuple):
    """A least-squares line ``y = intercept + slope * x`` with a confidence interval."""

    n: int
    slope: float  # [y units per x unit]
    intercept: float
    slope_low: float
    slope_high: float
    confidence: float
    t_quantile: float  # of Student's t with n - 2 degrees of freedom
    slope_stderr: float
    residual_std: float
    x_mean: float
    sxx: float  # sum of (x - x_mean)**2

    def line(self, x: ArrayLike) -> NDArray[np.float64]:
        """The fitted line at ``x``."""
        return self.intercept + self.slope * np.asarray(x, dtype=np.float64)

    def band(self, x: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Confidence band of the fitted mean at ``x``: ``t * s * sqrt(1/n + (x - x̄)**2 / Sxx)``."""
        x = np.asarray(x, dtype=np.float64)
        half = (
            self.t_quantile
            * self.residual_std
            * np.sqrt(1.0 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        )
        fit = self.line(x)
        return fit - half, fit + half


def linear_trend(x: ArrayLike, y: ArrayLike, confidence: float = 0.95) -> LinearTrend:
    """Ordinary least squares of ``y`` on ``x`` with a ``confidence`` interval for the slope.

    The interval is ``slope ± t * s / sqrt(Sxx)`` with the exact Student-t quantile for
    ``n - 2`` degrees of freedom (:func:`t_quantile`, not the normal 1.96). It assumes
    independent residuals; consecutive shifts of a learning run are correlated, so read the
    interval as a lower bound on the uncertainty. Needs at least 3 points and 2 distinct ``x``.
    """
    x = check_real("x", x)
    y = check_real("y", y)
    confidence = check_scalar("confidence", confidence, gt=0)
    if not confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-d of one length, got {x.shape} and {y.shape}")
    n = x.size
    if n < 3:
        raise ValueError(f"a trend with a confidence interval needs >= 3 points, got {n}")
    x_mean, y_mean = float(x.mean()), float(y.mean())
    dx = x - x_mean  # centred, so a large x (episode 1e5) does not cancel in Sxx
    sxx = float(dx @ dx)
    if sxx <= 0:
        raise ValueError("x must take at least 2 distinct values to fit a slope")
    slope = float(dx @ (y - y_mean)) / sxx
    intercept = y_mean - slope * x_mean
    residuals = y - (intercept + slope * x)
    residual_std = math.sqrt(float(residuals @ residuals) / (n - 2))
    stderr = residual_std / math.sqrt(sxx)
    t = t_quantile(0.5 + confidence / 2, n - 2)
    return LinearTrend(
        n=n,
        slope=slope,
        intercept=intercept,
        slope_low=slope - t * stderr,
        slope_high=slope + t * stderr,
        confidence=confidence,
        t_quantile=t,
        slope_stderr=stderr,
        residual_std=residual_std,
        x_mean=x_mean,
        sxx=sxx,
    )


def deflation_trend(ledger: Ledger, confidence: float = 0.95) -> LinearTrend:
    """Trend of the deflation ratio ``rho`` over episodes (section 9.4), per shift.

    Shifts that sold no work (an empty ``rho``, section 6) are left out of the fit.
    """
    rho = ledger["deflation_ratio"]
    sold = ~np.isnan(rho)
    return linear_trend(ledger["episode"][sold], rho[sold], confidence)


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom, for p in (0.5, 1).

    Exact to about 1e-10: for ``t > 0``, ``P(T > t) = I_x(df/2, 1/2) / 2`` with
    ``x = df / (df + t**2)``, so ``x`` solves ``I_x(df/2, 1/2) = 2 (1 - p)`` (bisection; the
    regularized incomplete beta ``I`` by continued fraction, Numerical Recipes 6.4) and
    ``t = sqrt(df (1 - x) / x)``.
    """
    p = check_scalar("p", p, gt=0.5)
    df = check_scalar("df", df, gt=0)
    if not p < 1:
        raise ValueError(f"p must be in (0.5, 1), got {p}")
    target = 2.0 * (1.0 - p)
    a = df / 2.0
    lo, hi = 0.0, 1.0  # I_x rises from 0 at x=0 to 1 at x=1
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _betainc(a, 0.5, mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-16 * hi:
            break
    x = 0.5 * (lo + hi)
    return math.sqrt(df * (1.0 - x) / x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)`` (Numerical Recipes ``betai``)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta by the modified Lentz method (NR ``betacf``)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):  # O(sqrt(max(a, b))) iterations are needed
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")
