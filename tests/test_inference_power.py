"""Power of the paired t-test and seeds needed, against Monte Carlo and statsmodels; the
issue's cutout case (df = 1, where scipy's noncentral t cdf returns NaN) needs 3 seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from ablate.inference import InferenceError, paired_power, seeds_for_power
from ablate.inference.power import _power_integral

#: The demo's cutout: mean paired delta -3.0 top-1 points, sd of the differences 0.3383.
CUTOUT = (-3.0, 0.338296)


def _monte_carlo(n: int, delta: float, sd: float, draws: int, seed: int) -> float:
    """Fraction of simulated paired studies whose two-sided t-test rejects at 0.05."""
    d = np.random.default_rng(seed).normal(delta, sd, (draws, n))
    return float((stats.ttest_1samp(d, 0.0, axis=1).pvalue <= 0.05).mean())


def test_cutout_needs_three_seeds() -> None:
    delta, sd = CUTOUT
    df, nc = 1, abs(delta) / sd * math.sqrt(2)
    crit = stats.t.ppf(0.975, df)
    # The bug's cause, where this scipy still has it: one tail is NaN at df = 1.
    tails = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    assert math.isnan(tails) or tails == pytest.approx(0.675, abs=1e-3)
    assert paired_power(2, delta, sd) == pytest.approx(0.675, abs=1e-3)
    assert _power_integral(df, nc, crit) == pytest.approx(paired_power(2, delta, sd), abs=1e-7)
    assert seeds_for_power(delta, sd) == 3
    mc = _monte_carlo(2, delta, sd, 200_000, 1)
    assert abs(mc - paired_power(2, delta, sd)) < 4 * math.sqrt(0.675 * 0.325 / 200_000)


@pytest.mark.parametrize(("n", "effect"), [(2, 0.5), (2, 4.0), (2, 9.0), (2, 20.0), (3, 1.0),
                                           (4, 2.5), (8, 0.7), (20, 0.3)])
def test_power_against_monte_carlo(n: int, effect: float) -> None:
    power = paired_power(n, effect * 0.4, 0.4)
    mc = _monte_carlo(n, effect * 0.4, 0.4, 40_000, n)
    assert abs(mc - power) < 4 * math.sqrt(max(power * (1 - power), 1e-4) / 40_000) + 1e-4


@pytest.mark.parametrize("n", [3, 5, 10, 40])
@pytest.mark.parametrize("effect", [0.2, 0.8, 2.0])
def test_power_against_statsmodels(n: int, effect: float) -> None:
    ref = TTestPower().power(effect_size=effect, nobs=n, alpha=0.05, alternative="two-sided")
    assert paired_power(n, effect, 1.0) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("df", [1, 2, 5, 30])
@pytest.mark.parametrize("nc", [0.3, 2.0, 6.0, 14.0])
def test_integral_fallback_agrees_with_noncentral_t(df: int, nc: float) -> None:
    """The quadrature used where nct is undefined equals nct wherever nct is defined."""
    crit = stats.t.ppf(0.975, df)
    upper, lower = stats.nct.sf(crit, df, nc), stats.nct.sf(crit, df, -nc)  # both tails
    assert _power_integral(df, nc, crit) == pytest.approx(upper + lower, abs=1e-8)


@pytest.mark.parametrize(("delta", "sd"), [CUTOUT, (1.944, 0.785), (-0.333, 1.33),
                                           (0.3, 0.2186), (0.05, 1.0)])
def test_seeds_for_power_is_the_smallest_enough(delta: float, sd: float) -> None:
    n = seeds_for_power(delta, sd)
    assert n is not None
    assert paired_power(n, delta, sd) >= 0.8
    if n > 2:
        assert paired_power(n - 1, delta, sd) < 0.8
    if n > 3:  # statsmodels' continuous solution, where its nct is defined
        ref = TTestPower().solve_power(effect_size=abs(delta) / sd, alpha=0.05, power=0.8)
        assert n == math.ceil(ref)


def test_seeds_for_power_edge_cases() -> None:
    assert seeds_for_power(None, 1.0) is None
    assert seeds_for_power(0.0, 1.0) is None
    assert seeds_for_power(0.3, 0.0) == 2
    assert seeds_for_power(1e-6, 1.0, limit=1000) is None
    with pytest.raises(InferenceError, match="n >= 2"):
        paired_power(1, 1.0, 1.0)
    with pytest.raises(InferenceError, match="power=1"):
        seeds_for_power(1.0, 1.0, power=1)


@pytest.mark.parametrize(("effect", "limit"), [
    (1.0, 100), (0.3, 100), (0.3, 89), (0.3, 90), (0.3, 64), (0.1, 2000), (0.1, 700),
    (2.0, 3), (0.5, 10)])
def test_seeds_for_power_against_a_scan_of_statsmodels(effect: float, limit: int) -> None:
    """Small and large answers (a bisection below the z-test's start, the doubling past
    it) and the limit: the
    first n whose power (statsmodels' one-sample t) reaches 80%, or None beyond ``limit``."""
    power = TTestPower()
    first = next((n for n in range(2, limit + 1)
                  if power.power(effect_size=effect, nobs=n, alpha=0.05) >= 0.8), None)
    assert seeds_for_power(effect, 1.0, limit=limit) == first


def test_seeds_for_power_each_answers_a_whole_report_at_once_as_statsmodels() -> None:
    """Pairs of many effect sizes (and the cases without an answer) searched together, as
    a report does: each the first n whose power (statsmodels' one-sample t) reaches 80%."""
    from ablate.inference import seeds_for_power_each

    power = TTestPower()
    effects = [2.0, 1.0, 0.7, 0.5, 0.3, 0.25, 0.15]
    deltas = [e * sd for e, sd in zip(effects, [1.0, 0.5, 2.0, 1.0, 3.0, 1.0, 0.2],
                                      strict=True)]
    sds = [1.0, 0.5, 2.0, 1.0, 3.0, 1.0, 0.2]
    got = seeds_for_power_each([*deltas, None, 0.0, 0.4], [*sds, 1.0, 1.0, 0.0])
    want = [next(n for n in range(2, 2000)
                 if power.power(effect_size=e, nobs=n, alpha=0.05) >= 0.8) for e in effects]
    assert got == [*want, None, None, 2]
