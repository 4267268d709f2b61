"""The statistics of a report: paired deltas with t intervals, and seeds for 80% power.

Every delta is the mean of paired per-seed differences (variant - baseline) on the seeds
both have, with a 95% interval from the t distribution (Student 1908). "Seeds needed" is
the smallest n at which the two-sided paired t-test reaches 80% power against the observed
delta, given the observed sd of the differences: power from the noncentral t distribution
(Cohen 1988, ch. 2).

Only public scipy functions: ``scipy.special.stdtrit`` (t quantiles), ``nctdtr`` (the
noncentral t's cdf, what ``scipy.stats.nct.cdf`` evaluates, without scipy.stats' second of
import). Where the noncentral t's numerics give NaN (its tails at small df: scipy 1.17
answers NaN for ``nctdtr(2, 15.4, -4.3)``), that tail is integrated numerically instead
(:func:`_tail`), so NaN is never read as "enough seeds".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

#: Confidence of the delta's interval, and the test behind "seeds for 80% power".
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.80


@dataclass(frozen=True)
class PairedDelta:
    """The mean of paired per-seed differences (variant - baseline) and its interval."""

    n: int
    mean: float
    #: Standard deviation of the differences (None with a single pair).
    sd: float | None
    #: Half-width of the 95% interval, t(0.975, n-1) * sd / sqrt(n) (None with one pair).
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def verdict(self) -> str:
        """``better`` (interval above zero), ``worse`` (below), ``within noise`` (covers
        zero) or ``n=1`` (one pair: no interval)."""
        if self.half_width is None:
            return "n=1"
        assert self.low is not None and self.high is not None
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "within noise"


def paired_delta(base: Mapping[int, float], other: Mapping[int, float],
                 confidence: float = CONFIDENCE) -> PairedDelta | None:
    """Paired comparison on the seeds both have (None when they share none)."""
    seeds = sorted(set(base) & set(other))
    if not seeds:
        return None
    diffs = [other[s] - base[s] for s in seeds]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return PairedDelta(n, mean, None, None)
    sd = statistics.stdev(diffs)
    t = t_ppf(1 - (1 - confidence) / 2, n - 1)
    return PairedDelta(n, mean, sd, t * sd / math.sqrt(n))


@lru_cache(maxsize=1024)
def t_ppf(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def _tail(df: int, nc: float, x: float, upper: bool) -> float:
    """P(T > x) (``upper``) or P(T < x) of the noncentral t by numerical integration,
    where scipy's closed form is NaN: T = (Z + nc) / sqrt(V / df), Z standard normal, V
    chi-square with df degrees of freedom, so P(T > x) = E_V[P(Z > x sqrt(V/df) - nc)]
    (a smooth one-dimensional integral over V's density)."""
    from scipy import integrate, stats

    def integrand(v: float) -> float:
        z = x * math.sqrt(v / df) - nc
        return float(stats.chi2.pdf(v, df) * (stats.norm.sf(z) if upper else stats.norm.cdf(z)))

    value, _ = integrate.quad(integrand, 0, math.inf, limit=200)
    return min(max(value, 0.0), 1.0)


def paired_power(n: int, delta: float, sd: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs when the true mean difference
    is ``delta`` and the differences have standard deviation ``sd`` (noncentral t)."""
    from scipy.special import nctdtr, ndtr

    df = n - 1
    nc = abs(delta) / sd * math.sqrt(n)
    crit = t_ppf(1 - alpha / 2, df)
    upper = 1.0 - float(nctdtr(df, nc, crit))
    if not math.isfinite(upper):
        upper = _tail(df, nc, crit, upper=True)
    lower = float(nctdtr(df, nc, -crit))
    if not math.isfinite(lower):
        # T < -crit < 0 needs Z + nc < 0: the tail is at most P(Z < -nc). Below 1e-12 it
        # cannot move a power compared at two decimals; only above is it integrated.
        bound = float(ndtr(-nc))
        lower = 0.0 if bound < 1e-12 else _tail(df, nc, -crit, upper=False)
    return min(max(upper + lower, 0.0), 1.0)


def seeds_for_power(delta: float | None, sd: float | None, power: float = POWER,
                    alpha: float = ALPHA, limit: int = 1 << 20) -> int | None:
    """About how many seeds a paired t-test needs to detect ``delta`` at ``power``, given
    the observed sd of the paired differences. None when it cannot be said (no sd yet, a
    zero delta, or more than ``limit`` seeds)."""
    if delta is None or sd is None or not math.isfinite(delta) or not math.isfinite(sd):
        return None
    if delta == 0:
        return None
    if sd == 0:
        return 2  # every pair moved by the same amount: the smallest paired test sees it
    # Power grows with n: double until enough, then bisect.
    lo, hi = 1, 2
    while paired_power(hi, delta, sd, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if paired_power(mid, delta, sd, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi
