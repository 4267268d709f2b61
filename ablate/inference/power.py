"""Power of the paired t-test and the seeds it needs (Cohen 1988, ch. 2).

With ``n`` pairs, true mean difference ``δ`` and sd of the differences ``σ``, the statistic
``T = d̄ √n / s`` follows the noncentral t with ``ν = n - 1`` degrees of freedom and
noncentrality ``λ = |δ| √n / σ``; the two-sided test at ``α`` rejects when ``|T| > c``,
``c = t(1 - α/2, ν)``::

    power = P(T_λ > c) + P(T_λ < -c) = P(T_λ > c) + P(T_-λ > c)
          = ∫_0^∞ [Φ(λ - c u/√ν) + Φ(-λ - c u/√ν)] f_χν(u) du          (T = (Z + λ)/(U/√ν))

``scipy.stats.nct.cdf`` returns NaN in part of the ``ν = 1`` range
(``nct.cdf(-12.7, 1, 12.5)``); that NaN read as "enough power" made the report say 2 seeds
where 3 are needed. :func:`paired_power` takes both tails as ``1 - nct.cdf`` from
``scipy.special.nctdtr`` (the lower one by the symmetry ``T_λ = -T_-λ``; the public
function: scipy.stats, whose ``nct.sf`` calls a private one, costs a report half a second
to import), and wherever that gives anything but a probability (NaN: ``ν = 1`` beyond
``λ ≈ 7.6``, large ``λ`` at larger ``ν``) it integrates the last line over the chi density
(``scipy.integrate.quad`` of a smooth integrand, about 50 ms against nctdtr's 0.1 ms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
from scipy import special

from ablate.inference.paired import InferenceError, check_alpha


def _power_integral(df: int, nc: float, crit: float) -> float:
    """The chi-mixture integral of the module docstring (valid for every ``df >= 1``)."""
    from scipy import integrate  # here: only where nctdtr fails

    scale = crit / math.sqrt(df)
    # The chi(df) density, u^(df-1) exp(-u²/2) / (2^(df/2-1) Γ(df/2)), in logs.
    log_norm = (df / 2 - 1) * math.log(2) + float(special.gammaln(df / 2))

    def weighted(u: float) -> float:
        if u <= 0:
            return 0.0
        density = math.exp((df - 1) * math.log(u) - u * u / 2 - log_norm)
        return float(special.ndtr(nc - scale * u) + special.ndtr(-nc - scale * u)) * density

    return float(integrate.quad(weighted, 0, math.inf, epsabs=1e-12, epsrel=1e-10)[0])


def _powers(ns: np.ndarray, delta: float | np.ndarray, sd: float | np.ndarray, alpha: float
            ) -> np.ndarray:
    """:func:`paired_power` at each of ``ns`` (integers >= 2) in one vectorised scipy call:
    a call of ``nct.sf`` costs about 0.1 ms of argument handling whatever its length, and a
    report asks for the seeds of every variant. ``delta`` and ``sd`` may be arrays that
    broadcast with ``ns`` (a column of variants against a row of n)."""
    df = ns - 1
    nc = np.abs(delta) / sd * np.sqrt(ns)
    crit = special.stdtrit(df, 1 - alpha / 2)  # scipy.stats.t.ppf's own function
    # nct's survival function as 1 - its CDF (special.nctdtr, public; scipy.stats' sf
    # calls a private ufunc): an absolute error of about 1e-16, on a power >= alpha / 2.
    df, nc, crit = np.broadcast_arrays(df, nc, crit)
    power = np.array(2.0 - special.nctdtr(df, nc, crit) - special.nctdtr(df, -nc, crit),
                     dtype=float)
    for i in np.argwhere(~((power >= 0) & (power <= 1))):  # NaN: nct's series failed
        at = tuple(i)
        power[at] = _power_integral(int(df[at]), float(nc[at]), float(crit[at]))
    return np.clip(power, 0.0, 1.0)


def paired_power(n: int, delta: float, sd: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at ``alpha`` with ``n >= 2`` pairs when the
    true mean difference is ``delta`` and the differences' sd is ``sd > 0``."""
    check_alpha(alpha)
    if n < 2 or not sd > 0 or not math.isfinite(delta) or not math.isfinite(sd):
        raise InferenceError(f"n={n}, delta={delta}, sd={sd}: power needs n >= 2 pairs, a "
                             f"finite delta and a finite sd > 0")
    return float(_powers(np.array([n]), delta, sd, alpha)[0])


def seeds_for_power(delta: float | None, sd: float | None, power: float = 0.80,
                    alpha: float = 0.05, limit: int = 1 << 20) -> int | None:
    """The fewest pairs (seeds) with which the paired t-test at ``alpha`` detects ``delta``
    with at least ``power``, given the differences' sd. ``None`` when it cannot be said: no
    sd or delta, a zero delta, or more than ``limit`` seeds. With ``sd == 0`` (every pair
    moved by the same amount) the smallest test, 2 seeds, sees it. One pair of
    :func:`seeds_for_power_each`."""
    return seeds_for_power_each([delta], [sd], power, alpha, limit)[0]


def seeds_for_power_each(deltas: Sequence[float | None], sds: Sequence[float | None],
                         power: float = 0.80, alpha: float = 0.05, limit: int = 1 << 20
                         ) -> list[int | None]:
    """:func:`seeds_for_power` of each (delta, sd) pair, all searched together: a report
    asks it of every variant, and a call of nctdtr costs more than its length.

    Power grows with ``n``, so the answer is found by bisection between n known too few
    and n known enough. The z-test's answer ``((z(1-α/2) + z(power)) σ/δ)²`` lies just
    below the t-test's: the first n tried is its ceiling (at least 2), doubled until
    enough (or ``limit``); each step of the bisection is one vectorised call for every
    pair still open (about log2 of the answer steps).
    """
    if not 0 < power < 1:
        raise InferenceError(f"power={power}: a target power lies strictly between 0 and 1, "
                             f"e.g. 0.8")
    check_alpha(alpha)
    out: list[int | None] = [None] * len(deltas)
    z = NormalDist()
    scale = z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)
    todo, starts = [], []
    for i, (delta, sd) in enumerate(zip(deltas, sds, strict=True)):
        if delta is None or sd is None or not math.isfinite(delta) or not math.isfinite(sd) \
                or delta == 0:
            continue
        if sd == 0:
            out[i] = 2
            continue
        todo.append(i)
        starts.append(min(max(2, math.ceil((scale * sd / abs(delta)) ** 2)), limit))
    if not todo or limit < 2:
        return out
    d = np.array([deltas[i] for i in todo], dtype=float)
    s = np.array([sds[i] for i in todo], dtype=float)
    lo, hi = _bracket(np.array(starts, dtype=np.int64), d, s, power, alpha, limit)
    while (open_ := np.flatnonzero((hi - lo > 1) & (hi <= limit))).size:
        mid = (lo[open_] + hi[open_]) // 2
        enough = _powers(mid, d[open_], s[open_], alpha) >= power
        hi[open_] = np.where(enough, mid, hi[open_])
        lo[open_] = np.where(enough, lo[open_], mid)
    for i, n in zip(todo, hi.tolist(), strict=True):
        out[i] = int(n) if n <= limit else None
    return out


def _bracket(start: np.ndarray, d: np.ndarray, s: np.ndarray, power: float, alpha: float,
             limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per pair: n = lo known too few (1 at first: one pair tests nothing), n = hi
    enough, found by doubling from ``start``; hi = limit + 1 where even ``limit`` is not."""
    lo = np.ones_like(start)
    hi = start.copy()
    open_ = np.arange(len(start))
    while open_.size:
        enough = _powers(hi[open_], d[open_], s[open_], alpha) >= power
        short = open_[~enough]
        lo[short] = hi[short]
        at_limit = short[hi[short] >= limit]
        hi[at_limit] = limit + 1  # never enough within the limit
        open_ = short[hi[short] < limit]
        hi[open_] = np.minimum(2 * hi[open_], limit)
    return lo, hi
