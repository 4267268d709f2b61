"""Paired differences and the t machinery every other module of the package builds on.

A variant is compared with its baseline on the seeds both have: the per-seed differences
``d_s = variant_s - baseline_s`` are one sample of ``n`` values with mean ``d̄`` and standard
deviation ``s``; ``(d̄ - δ) √n / s`` follows Student's t with ``n - 1`` degrees of freedom
when the differences are normal with mean ``δ`` (Student 1908). Intervals and p-values of
equivalence, multiplicity, Stein's procedure, factorial effects and transfer all go through
:func:`t_interval` and :func:`t_sf` here, so there is one definition of each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy import special


class InferenceError(ValueError):
    """Input the statistics cannot use; the message is one line naming the argument and
    the fix (the CLI turns it into its own error type)."""


@lru_cache(maxsize=4096)
def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t: ``scipy.special.stdtrit``, the function
    ``scipy.stats.t.ppf`` calls, without importing scipy.stats (about half a second of a
    report's start-up); cached: a report asks for the same few quantiles thousands of
    times."""
    return float(special.stdtrit(df, q))


def check_alpha(alpha: float) -> None:
    """A test level must lie in (0, 0.5): TOST (:mod:`.equivalence`) reads the
    ``1 - 2α`` interval."""
    if not 0 < alpha < 0.5:
        raise InferenceError(f"alpha={alpha}: a test level lies strictly between 0 and 0.5, "
                             f"e.g. 0.05")


def t_sf(estimate: float, se: float, df: float) -> float:
    """``P(T_df >= estimate / se)``: the one-sided p-value of ``H0: θ <= 0`` against
    ``θ > 0``. With ``se == 0`` the statistic is ±inf (0 when the estimate is 0 too)."""
    if se == 0:
        return float(special.stdtr(df, -math.copysign(math.inf, estimate) if estimate else 0.0))
    # scipy.stats.t.sf(x, df) is special.stdtr(df, -x): the same function, no stats import.
    return float(special.stdtr(df, -(estimate / se)))


def t_two_sided(estimate: float, se: float, df: float, null: float = 0.0) -> float:
    """Two-sided p-value of ``H0: θ = null`` from an estimate with standard error ``se``."""
    return min(1.0, 2 * t_sf(abs(estimate - null), se, df))


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval ``estimate ± half_width`` at ``level``."""

    estimate: float
    half_width: float
    level: float

    @property
    def low(self) -> float:
        return self.estimate - self.half_width

    @property
    def high(self) -> float:
        return self.estimate + self.half_width

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the closed interval."""
        return self.low <= value <= self.high


def t_interval(estimate: float, se: float, df: float, level: float) -> Interval:
    """``estimate ± t(1 - (1 - level)/2, df) · se``: the t interval at ``level``."""
    if not 0 < level < 1:
        raise InferenceError(f"level={level}: a confidence level lies strictly between 0 "
                             f"and 1, e.g. 0.95")
    if not df > 0:
        raise InferenceError(f"df={df}: a t interval needs at least one degree of freedom "
                             f"(two seeds)")
    return Interval(estimate, t_quantile(1 - (1 - level) / 2, df) * se, level)


@dataclass(frozen=True)
class Paired:
    """Summary of ``n`` paired differences: their mean and standard deviation (``ddof=1``).

    Build it from the differences with :func:`paired`, or directly from ``(n, mean, sd)``
    when only the summary is known.
    """

    n: int
    mean: float
    sd: float

    def __post_init__(self) -> None:
        if int(self.n) != self.n or self.n < 2:
            raise InferenceError(f"n={self.n}: paired statistics need at least two seeds "
                                 f"both runs have; run more seeds")
        if not (math.isfinite(self.mean) and math.isfinite(self.sd)) or self.sd < 0:
            raise InferenceError(f"mean={self.mean}, sd={self.sd}: need a finite mean and a "
                                 f"finite sd >= 0")

    @property
    def df(self) -> int:
        return self.n - 1

    @property
    def se(self) -> float:
        """Standard error of the mean difference, ``s / √n``."""
        return self.sd / math.sqrt(self.n)

    def interval(self, level: float = 0.95) -> Interval:
        """The paired t interval ``d̄ ± t(1 - (1 - level)/2, n - 1) · s/√n``."""
        return t_interval(self.mean, self.se, self.df, level)

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided p-value of the paired t-test of ``H0: δ = null``."""
        return t_two_sided(self.mean, self.se, self.df, null)


def paired(differences: ArrayLike) -> Paired:
    """The :class:`Paired` summary of per-seed differences (variant - baseline).

    The mean and the sd (``ddof=1``, two passes) are correctly rounded sums
    (``math.fsum``), in Python floats: a report summarises thousands of samples of a few
    seeds each, where numpy's per-call overhead is four times the arithmetic."""
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or not np.isfinite(d).all():
        raise InferenceError("differences: need a flat sequence of finite numbers "
                             "(one per seed; drop seeds either run lacks)")
    if d.size < 2:
        raise InferenceError(f"differences: {d.size} value(s); paired statistics need at "
                             f"least two seeds")
    values = d.tolist()
    n = len(values)
    mean = math.fsum(values) / n
    return Paired(n, mean, math.sqrt(math.fsum([(v - mean) ** 2 for v in values]) / (n - 1)))
