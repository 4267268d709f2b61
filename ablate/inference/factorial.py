"""Two-level factorial designs over tricks: full ``2^k`` and fractional ``2^(k-p)``, their
alias structure, and every main effect and two-way interaction with a confidence interval.

One-factor-at-a-time ablations (add-one, cumulative, leave-one-out) cannot say whether two
tricks add up, cancel or need each other. A two-level factorial runs every trick on (+1)
or off (-1) in a balanced pattern of variants; the effect of a factor is the mean response
at its + level minus the mean at its - level, ``contrast / (N/2)`` over ``N`` runs (Box,
Hunter & Hunter 2005, *Statistics for Experimenters*, 2nd ed., ch. 5-6; Montgomery 2017,
*Design and Analysis of Experiments*, 9th ed., ch. 6-8). A fractional design runs the
``2^(k-p)`` rows of a full design in the first ``k - p`` factors and sets each of the last
``p`` factors to a product of those (its *generator*, e.g. ``E = ABCD``). The generator
words and all their products form the *defining relation*; an effect is *aliased* with its
products with every word (the same column, one estimate for all of them), and the design's
*resolution* is the length of its shortest word: at resolution IV no main effect is aliased
with another or with a two-way interaction; at resolution V no two-way interaction is
aliased with another.

:data:`GENERATORS` holds, for each number of factors, the smallest standard design of
resolution at least IV and at least V (the minimum-aberration generators of Box, Hunter &
Hunter 2005, Table 6.22, as reprinted in the NIST/SEMATECH e-Handbook of Statistical
Methods, section 5.3.3.4.7, and Montgomery 2017, Table 8.14).

Effects are estimated by least squares with seeds as blocks (one dummy per seed, so seed
to seed shifts of every variant together do not count as noise): ``y = block_seed + Σ β_e
x_e + ε`` over one ±1 column per alias class that holds a main effect or a two-way
interaction, ``effect = 2 β`` with standard error ``2 √(σ̂² [(XᵀX)⁻¹]_ee)`` and a t
interval on the residual degrees of freedom (Montgomery 2017, sec. 6.3-6.4 and 5.6 on
blocking replicates). Higher interactions are assumed negligible: they are the residual.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, reduce

import numpy as np
from numpy.typing import ArrayLike

from ablate.inference.paired import (
    InferenceError,
    Interval,
    check_alpha,
    t_interval,
    t_two_sided,
)

LETTERS = string.ascii_uppercase

#: ``{k: {resolution: generators}}``: the smallest standard ``2^(k-p)`` design with at least
#: that resolution (empty: only the full ``2^k`` has it). Each entry's resolution is
#: recomputed from its words by :attr:`Design.resolution` in the tests.
GENERATORS: dict[int, dict[int, tuple[str, ...]]] = {
    2: {4: (), 5: ()},
    3: {4: (), 5: ()},
    4: {4: ("D=ABC",), 5: ()},                                   # 2^(4-1) IV, 8 runs
    5: {4: ("E=ABCD",), 5: ("E=ABCD",)},                         # 2^(5-1) V, 16 runs
    6: {4: ("E=ABC", "F=BCD"), 5: ("F=ABCDE",)},                 # 2^(6-2) IV, 2^(6-1) VI
    7: {4: ("E=ABC", "F=BCD", "G=ACD"), 5: ("G=ABCDEF",)},       # 2^(7-3) IV, 2^(7-1) VII
    8: {4: ("E=BCD", "F=ACD", "G=ABC", "H=ABD"), 5: ("G=ABCD", "H=ABEF")},  # IV 16, V 64
}


def _mask(letters: str) -> int:
    """An effect or word as a bit mask over the factors: ``"ACD"`` -> 0b1101."""
    return reduce(lambda m, c: m | 1 << LETTERS.index(c), letters, 0)


def _letters(mask: int) -> str:
    return "".join(c for i, c in enumerate(LETTERS) if mask >> i & 1)


@dataclass(frozen=True)
class Design:
    """A two-level design: factor names (letter ``A`` is the first), its generators in
    letters (``()`` for a full factorial) and its runs in standard (Yates) order, the first
    factor alternating fastest, levels ``-1``/``+1``."""

    factors: tuple[str, ...]
    generators: tuple[str, ...]

    @property
    def k(self) -> int:
        return len(self.factors)

    @property
    def p(self) -> int:
        return len(self.generators)

    @cached_property
    def matrix(self) -> np.ndarray:
        """Runs × factors, entries ±1 (read-only)."""
        base = self.k - self.p
        rows = np.arange(2 ** base)
        cols = [np.where(rows >> j & 1, 1, -1) for j in range(base)]
        for gen in self.generators:
            word = gen.split("=")[1]
            cols.append(np.prod([cols[LETTERS.index(c)] for c in word], axis=0))
        m = np.column_stack(cols).astype(np.int8)
        m.setflags(write=False)
        return m

    @property
    def runs(self) -> int:
        return 2 ** (self.k - self.p)

    @property
    def on(self) -> tuple[tuple[str, ...], ...]:
        """Per run, the factors (tricks) at their + level: the variants a study trains."""
        return tuple(tuple(f for f, level in zip(self.factors, row, strict=True) if level > 0)
                     for row in self.matrix)

    @cached_property
    def words(self) -> tuple[str, ...]:
        """The defining relation: every product of generator words except the identity,
        shortest first (``I = ABCE = BCDF = ADEF`` gives ``("ABCE", "ADEF", "BCDF")``)."""
        gens = [_mask(g.replace("=", "")) for g in self.generators]
        masks = {reduce(int.__xor__, combo, 0)
                 for r in range(1, len(gens) + 1) for combo in itertools.combinations(gens, r)}
        return tuple(sorted((_letters(m) for m in masks), key=lambda w: (len(w), w)))

    @property
    def resolution(self) -> int | None:
        """Length of the shortest word (None for a full factorial: nothing is aliased)."""
        return len(self.words[0]) if self.words else None

    def name(self, mask: int) -> str:
        """An effect's name from its factor names, ``"mixup:cutout"`` (patsy's style)."""
        return ":".join(f for i, f in enumerate(self.factors) if mask >> i & 1)

    def alias_masks(self, mask: int) -> frozenset[int]:
        """Every effect sharing ``mask``'s column (itself included)."""
        return frozenset(mask ^ _mask(w) for w in ("", *self.words))

    def aliases(self, max_order: int = 2) -> dict[str, tuple[str, ...]]:
        """For each main effect and two-way interaction, the other effects of order at most
        ``max_order`` it is aliased with (empty when it is clear of them)."""
        out = {}
        for mask in _low_order_masks(self.k):
            others = sorted((m for m in self.alias_masks(mask)
                             if m != mask and 0 < m.bit_count() <= max_order),
                            key=lambda m: (m.bit_count(), _letters(m)))
            out[self.name(mask)] = tuple(self.name(m) for m in others)
        return out


def _low_order_masks(k: int) -> list[int]:
    """Main effects then two-way interactions, in factor order."""
    return [1 << i for i in range(k)] + [1 << i | 1 << j
                                         for i, j in itertools.combinations(range(k), 2)]


def factorial_design(factors: Sequence[str], *, resolution: int | None = None,
                     generators: Sequence[str] | None = None) -> Design:
    """A two-level design over ``factors``: the full ``2^k`` (default), the smallest
    standard fraction of at least ``resolution`` 4 or 5 (:data:`GENERATORS`, k <= 8), or
    the fraction of explicit ``generators`` in letters (``["E=ABCD"]``: each generated
    factor is one of the last p letters, a product of the first k - p)."""
    names = tuple(str(f) for f in factors)
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        raise InferenceError(f"factors {list(names)}: a factorial design needs at least two "
                             f"distinct, non-empty factor names")
    if len(names) > len(LETTERS):
        raise InferenceError(f"factors: {len(names)} factors; at most {len(LETTERS)}")
    k = len(names)
    if resolution is not None and generators is not None:
        raise InferenceError("give either resolution (standard generators) or generators, "
                             "not both")
    if resolution is not None:
        if resolution not in (4, 5):
            raise InferenceError(f"resolution={resolution}: standard fractions are of "
                                 f"resolution 4 or 5")
        if k not in GENERATORS:
            raise InferenceError(f"resolution={resolution} with {k} factors: the standard "
                                 f"table covers 2 to 8 factors; give generators instead")
        return Design(names, GENERATORS[k][resolution])
    gens = tuple(g.replace(" ", "").upper() for g in generators or ())
    base = LETTERS[: k - len(gens)]
    for i, g in enumerate(gens):
        lhs, _, rhs = g.partition("=")
        letter = LETTERS[len(base) + i]
        if (lhs != letter or len(rhs) < 2 or len(set(rhs)) != len(rhs)
                or not set(rhs) <= set(base)):
            raise InferenceError(f"generator '{g}': write it as '{letter}=' and two or more of "
                                 f"the base factors {base}, e.g. '{letter}={base}'")
    return Design(names, gens)


@dataclass(frozen=True)
class Effect:
    """One main effect or two-way interaction: mean response at + minus mean at -."""

    name: str
    factors: tuple[str, ...]
    estimate: float
    se: float
    #: The ``1 - α`` t interval and two-sided p-value (None without residual df).
    interval: Interval | None
    p_value: float | None
    #: Main effects and two-way interactions sharing this column: the estimate is of
    #: their sum.
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class FactorialFit:
    """Every estimable main effect and two-way interaction of a design's responses."""

    design: Design
    effects: tuple[Effect, ...]
    #: Residual sd and degrees of freedom of the blocked model.
    sigma: float
    df: int
    alpha: float

    def effect(self, name: str) -> Effect:
        """The effect named ``name``, or the one it is aliased with."""
        for e in self.effects:
            if name == e.name or name in e.aliases:
                return e
        raise InferenceError(f"effect '{name}': not a main effect or two-way interaction of "
                             f"{', '.join(self.design.factors)}")


def estimate_effects(design: Design, responses: ArrayLike,
                     alpha: float = 0.05) -> FactorialFit:
    """Least-squares effects of ``responses``, shape (seeds, runs): row ``s`` holds seed
    ``s``'s response of every run of ``design`` in its order, NaN for a run that did not
    finish. Seeds are blocks; each main effect and two-way interaction gets an estimate,
    and a ``1 - alpha`` interval when the model leaves residual degrees of freedom (a
    saturated single-seed design leaves none: run a second seed)."""
    check_alpha(alpha)
    y = np.asarray(responses, dtype=float)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2 or y.shape[1] != design.runs:
        raise InferenceError(f"responses: shape {y.shape}; need (seeds, {design.runs}), one "
                             f"row per seed over the design's {design.runs} runs")
    classes: dict[frozenset[int], list[int]] = {}
    for mask in _low_order_masks(design.k):
        classes.setdefault(design.alias_masks(mask), []).append(mask)
    x = design.matrix.astype(float)
    columns = np.column_stack([np.prod(x[:, [i for i in range(design.k) if m[0] >> i & 1]],
                                       axis=1) for m in classes.values()])
    seeds, cells = np.nonzero(np.isfinite(y))
    blocks = np.unique(seeds)
    X = np.hstack([(seeds[:, None] == blocks[None, :]).astype(float), columns[cells]])
    rank = np.linalg.matrix_rank(X)
    if rank < X.shape[1]:
        raise InferenceError("responses: the runs that finished cannot separate every main "
                             "effect and two-way interaction; rerun the missing runs")
    beta, *_ = np.linalg.lstsq(X, y[seeds, cells], rcond=None)
    df = len(cells) - rank
    resid = y[seeds, cells] - X @ beta
    sigma = float(np.sqrt(resid @ resid / df)) if df > 0 else float("nan")
    cov = np.linalg.inv(X.T @ X)[len(blocks):, len(blocks):]
    effects = []
    for members, b, var in zip(classes.values(), beta[len(blocks):], np.diag(cov),
                                 strict=True):
        est, se = 2 * float(b), 2 * sigma * float(np.sqrt(var))
        effects.append(Effect(
            name=design.name(members[0]),
            factors=tuple(design.name(1 << i) for i in range(design.k) if members[0] >> i & 1),
            estimate=est, se=se,
            interval=t_interval(est, se, df, 1 - alpha) if df > 0 else None,
            p_value=t_two_sided(est, se, df) if df > 0 else None,
            aliases=tuple(design.name(m) for m in members[1:])))
    return FactorialFit(design, tuple(effects), sigma, df, alpha)
