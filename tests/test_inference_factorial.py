"""Factorial designs: the standard fractions' resolutions and runs checked by brute force on
their matrices; a hand-computed 2^3 (effect = contrast / (N/2)); a simulated 2^(5-1) with
planted effects; every fit against statsmodels' ols on the same data."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from ablate.inference import (
    GENERATORS,
    InferenceError,
    estimate_effects,
    factorial_design,
)

#: Runs of the smallest standard design with at least resolution IV / V (NIST e-Handbook
#: 5.3.3.4.7; BHH 2005 Table 6.22).
RUNS = {2: (4, 4), 3: (8, 8), 4: (8, 16), 5: (16, 16), 6: (16, 32), 7: (16, 64), 8: (16, 64)}


def _brute_resolution(matrix: np.ndarray) -> int | None:
    """Length of the shortest set of columns whose product is constant (None: none is)."""
    k = matrix.shape[1]
    for size in range(1, k + 1):
        for cols in itertools.combinations(range(k), size):
            if len(set(np.prod(matrix[:, cols], axis=1))) == 1:
                return size
    return None


@pytest.mark.parametrize("k", sorted(GENERATORS))
@pytest.mark.parametrize("resolution", [4, 5])
def test_standard_fractions(k: int, resolution: int) -> None:
    d = factorial_design([f"t{i}" for i in range(k)], resolution=resolution)
    m = d.matrix.astype(int)
    assert m.shape == (RUNS[k][resolution - 4], k)
    assert len({tuple(r) for r in m}) == d.runs  # distinct runs
    assert (m.T @ m == d.runs * np.eye(k)).all()  # balanced, orthogonal columns
    brute = _brute_resolution(m)
    assert brute == d.resolution
    assert brute is None or brute >= resolution
    assert d.on[0] == tuple(f for f, lv in zip(d.factors, m[0], strict=True) if lv > 0)


def test_half_fraction_is_the_principal_half() -> None:
    """2^(5-1) with E = ABCD: exactly the runs of the full 2^5 with ABCDE = +1."""
    d = factorial_design(list("abcde"), resolution=5)
    full = np.array(list(itertools.product([-1, 1], repeat=5)))
    assert {tuple(r) for r in d.matrix} == {tuple(r) for r in full if np.prod(r) == 1}


def test_alias_structure_of_the_2_4_1() -> None:
    d = factorial_design(["ls", "mixup", "cutout", "zg"], resolution=4)
    assert d.generators == ("D=ABC",) and d.words == ("ABCD",)
    aliases = d.aliases()
    assert aliases["ls"] == () and aliases["ls:mixup"] == ("cutout:zg",)
    assert aliases["ls:zg"] == ("mixup:cutout",)
    assert d.aliases(max_order=3)["ls"] == ("mixup:cutout:zg",)
    v = factorial_design(list("abcde"), resolution=5).aliases()
    assert all(a == () for a in v.values())  # resolution V: every 2fi clear
    assert factorial_design(list("abcdef"), resolution=4).aliases()["a:b"] == ("c:e",)


# The 2^3 sign table in standard order (1), a, b, ab, c, ac, bc, abc, written out by hand.
SIGNS = {
    "A": [-1, 1, -1, 1, -1, 1, -1, 1],
    "B": [-1, -1, 1, 1, -1, -1, 1, 1],
    "C": [-1, -1, -1, -1, 1, 1, 1, 1],
    "A:B": [1, -1, -1, 1, 1, -1, -1, 1],
    "A:C": [1, -1, 1, -1, -1, 1, -1, 1],
    "B:C": [1, 1, -1, -1, -1, -1, 1, 1],
}
Y23 = np.array([[72.1, 74.3, 71.0, 75.9, 73.2, 77.8, 71.9, 78.6],
                [72.9, 74.0, 70.4, 76.6, 73.0, 78.9, 72.6, 78.1]])


def _frame(design, y: np.ndarray) -> pd.DataFrame:
    rows = []
    for s, row in enumerate(y):
        for r, value in enumerate(row):
            if np.isfinite(value):
                rows.append({"seed": s, "y": value,
                             **{chr(97 + j): float(design.matrix[r, j])
                                for j in range(design.k)}})
    return pd.DataFrame(rows)


def _check_against_ols(fit, frame: pd.DataFrame, terms: list[str]) -> None:
    ref = smf.ols("y ~ C(seed) + " + " + ".join(terms), frame).fit()
    ci = ref.conf_int(0.05)
    letters = {f: chr(97 + i) for i, f in enumerate(fit.design.factors)}
    for e in fit.effects:
        term = ":".join(letters[f] for f in e.factors)
        assert term in terms
        assert e.estimate == pytest.approx(2 * ref.params[term], abs=1e-9)
        assert e.se == pytest.approx(2 * ref.bse[term], rel=1e-9)
        assert (e.interval.low, e.interval.high) == pytest.approx(
            (2 * ci.loc[term, 0], 2 * ci.loc[term, 1]), abs=1e-9)
        assert e.p_value == pytest.approx(ref.pvalues[term], rel=1e-6, abs=1e-12)
    assert fit.df == ref.df_resid
    assert fit.sigma == pytest.approx(np.sqrt(ref.scale))


def test_hand_computed_2_3() -> None:
    d = factorial_design(["A", "B", "C"])
    assert d.matrix.T.tolist() == [SIGNS["A"], SIGNS["B"], SIGNS["C"]]
    fit = estimate_effects(d, Y23)
    n = Y23.size
    totals = Y23.sum(axis=0)
    for name, signs in SIGNS.items():
        assert fit.effect(name).estimate == pytest.approx(np.dot(signs, totals) / (n / 2))
    # Residual: 16 runs - 2 seed blocks - 6 effects; se of an effect is 2 σ̂ / √N.
    assert fit.df == 8
    assert fit.effect("A").se == pytest.approx(2 * fit.sigma / np.sqrt(n))
    _check_against_ols(fit, _frame(d, Y23), [t.lower() for t in SIGNS])


def _planted(rng: np.random.Generator, d, seeds: int = 3, sigma: float = 0.3):
    x = d.matrix.astype(float)
    truth = {"a": 2.0, "b": -1.0, "c": 0.0, "d": 0.5, "e": 0.0, "a:b": 1.0, "c:e": -0.8}
    mean = 75 + sum(v / 2 * np.prod(x[:, [ord(c) - 97 for c in k.split(":")]], axis=1)
                    for k, v in truth.items())
    blocks = rng.normal(0, 1.0, (seeds, 1))  # a seed shifts every variant together
    return truth, mean + blocks + rng.normal(0, sigma, (seeds, d.runs))


def test_simulated_2_5_1_recovers_planted_effects() -> None:
    d = factorial_design(list("abcde"), resolution=5)
    rng = np.random.default_rng(5)
    truth, y = _planted(rng, d)
    fit = estimate_effects(d, y)
    assert len(fit.effects) == 15 and fit.df == 48 - 3 - 15
    for e in fit.effects:
        assert abs(e.estimate - truth.get(e.name, 0.0)) < 4 * e.se
    terms = [*"abcde", *(f"{a}:{b}" for a, b in itertools.combinations("abcde", 2))]
    _check_against_ols(fit, _frame(d, y), terms)
    covered = []
    for _ in range(300):
        truth, y = _planted(rng, d)
        covered += [e.interval.contains(truth.get(e.name, 0.0))
                    for e in estimate_effects(d, y).effects]
    assert np.mean(covered) >= 0.94


def test_aliased_fraction_and_missing_runs_against_ols() -> None:
    d = factorial_design(list("abcd"), resolution=4)
    rng = np.random.default_rng(9)
    y = 70 + rng.normal(0, 1, (3, 8)) + d.matrix[:, 0] * 0.8
    y[1, 2] = y[2, 5] = np.nan  # two runs that did not finish
    fit = estimate_effects(d, y)
    assert [e.name for e in fit.effects] == ["a", "b", "c", "d", "a:b", "a:c", "a:d"]
    assert fit.effect("c:d") is fit.effect("a:b")
    _check_against_ols(fit, _frame(d, y), ["a", "b", "c", "d", "a:b", "a:c", "a:d"])


def test_single_seed_saturated_has_no_interval() -> None:
    d = factorial_design(list("abcd"), resolution=4)
    fit = estimate_effects(d, np.arange(8.0))
    assert fit.df == 0 and all(e.interval is None and e.p_value is None for e in fit.effects)
    assert fit.effect("a").estimate == pytest.approx(1.0)  # contrast / (N/2) of 0..7


@pytest.mark.parametrize(("call", "words"), [
    (lambda: factorial_design(["a"]), "at least two"),
    (lambda: factorial_design(["a", "a"]), "distinct"),
    (lambda: factorial_design(list("abc"), resolution=3), "resolution=3"),
    (lambda: factorial_design(list("abcdefghi"), resolution=4), "2 to 8 factors"),
    (lambda: factorial_design(list("abcd"), generators=["D=AD"]), "generator 'D=AD'"),
    (lambda: factorial_design(list("abcd"), generators=["C=AB"]), "generator 'C=AB'"),
    (lambda: estimate_effects(factorial_design(list("ab")), np.ones((2, 3))), "shape"),
    (lambda: estimate_effects(factorial_design(list("ab")),
                              [[1, np.nan, np.nan, 2.0]]), "cannot separate"),
    (lambda: estimate_effects(factorial_design(list("ab")), np.ones((2, 4))).effect("z"),
     "effect 'z'"),
])
def test_bad_input_is_one_line(call, words: str) -> None:
    with pytest.raises(InferenceError, match=words) as err:
        call()
    assert "\n" not in str(err.value)


def test_custom_generators_resolution_three() -> None:
    """A 2^(3-1) with C = AB: resolution III, each main effect aliased with a 2fi."""
    d = factorial_design(list("abc"), generators=["C=AB"])
    assert d.resolution == 3 == _brute_resolution(d.matrix)
    assert d.aliases()["a"] == ("b:c",)
