"""ablate.inference paired statistics and TOST against statsmodels and scipy on the same
data; the four labels on constructed cases; the package imports neither torch nor the rest
of ablate."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import DescrStatsW, ttost_paired

from ablate.inference import InferenceError, Paired, equivalence_test, paired
from tests.conftest import LIMIT, ROOT

RNG_CASES = [(n, shift, margin) for n in (2, 3, 5, 12) for shift in (-0.8, 0.05, 0.6)
             for margin in (0.3, 1.0)]


@pytest.mark.parametrize(("n", "shift", "margin"), RNG_CASES)
def test_tost_matches_statsmodels_and_scipy(n: int, shift: float, margin: float) -> None:
    rng = np.random.default_rng(n * 100 + int(shift * 10) + int(margin * 7))
    base = 80 + rng.normal(0, 0.7, n)
    other = base + shift + rng.normal(0, 0.4, n)
    test = equivalence_test(paired(other - base), margin, alpha=0.05)

    p, (_, p_low, df_low), (_, p_high, df_high) = ttost_paired(other, base, -margin, margin)
    assert test.p_low == pytest.approx(p_low, rel=1e-9, abs=1e-15)
    assert test.p_high == pytest.approx(p_high, rel=1e-9, abs=1e-15)
    assert test.p_tost == pytest.approx(p, rel=1e-9, abs=1e-15)
    assert df_low == df_high == n - 1
    # The same from the summary (n, mean, sd) alone, and from scipy's one-sample tests.
    d = other - base
    summary = Paired(n, float(d.mean()), float(d.std(ddof=1)))
    assert equivalence_test(summary, margin).p_tost == pytest.approx(p, rel=1e-9, abs=1e-15)
    assert DescrStatsW(d).ttost_mean(-margin, margin)[0] == pytest.approx(p, rel=1e-9,
                                                                          abs=1e-15)
    assert test.p_low == pytest.approx(
        stats.ttest_1samp(d, -margin, alternative="greater").pvalue, rel=1e-9, abs=1e-15)
    assert test.p_diff == pytest.approx(stats.ttest_rel(other, base).pvalue, rel=1e-9)
    ci = stats.ttest_rel(other, base).confidence_interval(0.95)
    assert (test.interval.low, test.interval.high) == pytest.approx((ci.low, ci.high))
    ci90 = stats.ttest_rel(other, base).confidence_interval(0.90)
    assert (test.tost_interval.low, test.tost_interval.high) == pytest.approx(
        (ci90.low, ci90.high))


def test_labels_follow_the_interval_rule_on_a_grid() -> None:
    """equivalent <=> the 90% interval inside ±M; otherwise better/worse <=> the 95%
    interval above/below zero; else undecided (the documented rule, read off scipy's
    intervals)."""
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(400):
        n = int(rng.integers(2, 10))
        d = rng.normal(rng.uniform(-1.5, 1.5), rng.uniform(0.05, 1.0), n)
        margin = float(rng.uniform(0.2, 1.5))
        res = stats.ttest_1samp(d, 0.0)
        ci95, ci90 = res.confidence_interval(0.95), res.confidence_interval(0.90)
        if -margin < ci90.low and ci90.high < margin:
            expect = "equivalent"
        elif ci95.low > 0:
            expect = "better"
        elif ci95.high < 0:
            expect = "worse"
        else:
            expect = "undecided"
        test = equivalence_test(paired(d), margin)
        assert test.label == expect
        assert test.differs == (ci95.low > 0 or ci95.high < 0)
        seen.add(expect)
    assert seen == {"better", "worse", "equivalent", "undecided"}


def test_constructed_labels() -> None:
    noisy = [-1.0, 1.2, 0.1]
    assert equivalence_test(paired(noisy), margin=0.5).label == "undecided"
    assert equivalence_test(paired([0.02, -0.01, 0.0, 0.01]), 0.5).label == "equivalent"
    assert equivalence_test(paired([2.0, 2.2, 1.9]), 0.5).label == "better"
    assert equivalence_test(paired([-2.0, -2.2, -1.9]), 0.5).label == "worse"
    # Real but trivially small (Lakens et al.'s "different and equivalent"): equivalent,
    # and `differs` still says it differs from zero.
    small = equivalence_test(paired([0.10, 0.11, 0.12, 0.10, 0.11]), margin=0.5)
    assert small.label == "equivalent" and small.differs
    # Without a margin: the plain t-test's labels.
    assert equivalence_test(paired([0.02, -0.01, 0.0, 0.01])).label == "undecided"
    assert equivalence_test(paired([2.0, 2.2, 1.9])).p_tost is None


def test_zero_sd() -> None:
    """Every seed moved by the same amount: the interval is a point."""
    same = Paired(3, 0.4, 0.0)
    assert equivalence_test(same, 0.5).label == "equivalent"
    assert equivalence_test(same, 0.3).label == "better"
    assert equivalence_test(Paired(3, 0.0, 0.0)).p_diff == 1.0


@pytest.mark.parametrize(("call", "words"), [
    (lambda: paired([1.0]), "at least two"),
    (lambda: paired([1.0, float("nan")]), "finite"),
    (lambda: Paired(3, 0.1, -1.0), "sd >= 0"),
    (lambda: equivalence_test(Paired(3, 0.1, 1.0), margin=0), "margin=0"),
    (lambda: equivalence_test(Paired(3, 0.1, 1.0), alpha=0.5), "alpha=0.5"),
])
def test_bad_input_is_one_line(call, words: str) -> None:
    with pytest.raises(InferenceError, match=words) as err:
        call()
    assert "\n" not in str(err.value)


def test_package_imports_only_numpy_scipy() -> None:
    code = ("import sys, ablate.inference; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'zoo', 'sqlalchemy', 'statsmodels', 'typer', 'pandas') or "
            "(m.startswith('ablate.') and not m.startswith('ablate.inference'))); "
            "print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=LIMIT)
    assert out.returncode == 0, out.stdout + out.stderr
