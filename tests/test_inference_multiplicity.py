"""Holm's adjustment against statsmodels' multipletests; the study-level labels and the
simultaneous intervals; family-wise error and joint coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from ablate.inference import InferenceError, Paired, adjust, equivalence_test, holm, paired


@pytest.mark.parametrize("alpha", [0.05, 0.1])
@pytest.mark.parametrize("seed", range(6))
def test_holm_matches_statsmodels(alpha: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 20))
    p = rng.uniform(0, 0.2, m) ** rng.uniform(0.5, 3)
    if m > 3:  # ties, and an exact threshold value
        p[1] = p[2]
        p[3] = alpha / m
    ref_reject, ref_adjusted, *_ = multipletests(p, alpha=alpha, method="holm")
    res = holm(p, alpha)
    assert res.adjusted == pytest.approx(tuple(ref_adjusted), rel=1e-12)
    assert res.reject == tuple(ref_reject)


def test_holm_bad_input() -> None:
    with pytest.raises(InferenceError, match="p_values"):
        holm([0.1, float("nan")])
    with pytest.raises(InferenceError, match="p_values"):
        holm([1.2])


def _study(rng: np.random.Generator, deltas: list[float], n: int = 3,
           sd: float = 0.5) -> list[Paired]:
    return [paired(rng.normal(d, sd, n)) for d in deltas]


def test_adjusted_labels_and_intervals() -> None:
    rng = np.random.default_rng(3)
    deltas = [3.0, -3.0, 0.0, 0.05, 1.0, 0.0, 0.4, 0.0, 0.0, 2.0, 0.0, 0.0, -0.2]
    tests = [equivalence_test(p, margin=0.5) for p in _study(rng, deltas, n=6, sd=0.4)]
    out = adjust(tests)
    m = len(tests)
    diff = multipletests([t.p_diff for t in tests], method="holm")[1]
    tost = multipletests([t.p_tost for t in tests], method="holm")[1]
    for t, a, d, q in zip(tests, out, diff, tost, strict=True):
        assert a.p_diff == pytest.approx(d) and a.p_tost == pytest.approx(q)
        # Adjusting only ever makes a label less decisive.
        assert a.label == t.label or a.label == "undecided"
        expect = ("equivalent" if q <= 0.05 else
                  ("better" if t.paired.mean > 0 else "worse") if d <= 0.05 else "undecided")
        assert a.label == expect
        # The simultaneous interval: the t interval at 1 - alpha/m (Bonferroni).
        half = stats.t.ppf(1 - 0.05 / (2 * m), t.paired.df) * t.paired.se
        assert a.simultaneous.half_width == pytest.approx(half)
        assert a.simultaneous.level == pytest.approx(1 - 0.05 / m)
    labels = [a.label for a in out]
    assert labels[0] == "better" and labels[1] == "worse"
    assert sum(a.label != a.test.label for a in out) >= 1  # something became undecided


def test_adjust_refuses_mixed_tests() -> None:
    p = Paired(3, 0.1, 0.2)
    with pytest.raises(InferenceError, match="one alpha and one margin"):
        adjust([equivalence_test(p, 0.5), equivalence_test(p, 0.3)])
    assert adjust([]) == ()


def test_family_wise_error_and_joint_coverage_by_simulation() -> None:
    """13 null variants, 3 seeds: unadjusted tests make a false claim in about half of the
    studies; Holm in at most alpha of them. The Bonferroni intervals cover every true
    delta together in at least 1 - alpha of the studies."""
    rng = np.random.default_rng(2024)
    studies, m, n = 2000, 13, 3
    d = rng.normal(0.0, 0.5, (studies, m, n))
    p = stats.ttest_1samp(d, 0.0, axis=2).pvalue
    any_raw = (p <= 0.05).any(axis=1).mean()
    any_holm = np.mean([any(holm(row).reject) for row in p])
    assert any_raw > 0.4
    assert any_holm <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / studies)
    covered = []
    for study in d[:300]:  # the library path end to end, on fewer studies
        out = adjust([equivalence_test(paired(x)) for x in study])
        covered.append(all(a.simultaneous.contains(0.0) for a in out))
    assert np.mean(covered) >= 0.95 - 3 * np.sqrt(0.05 * 0.95 / 300)
