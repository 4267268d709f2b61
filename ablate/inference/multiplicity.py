"""Multiplicity across a study's variants: Holm's step-down adjustment (Holm 1979).

A study of ``m`` variants tested at ``α`` each expects ``m·α`` false discoveries when no
trick does anything. Holm's procedure controls the family-wise error rate (the chance of
*any* false claim) at ``α`` under any dependence between the tests, and rejects everything
Bonferroni does and more. With the p-values sorted, ``p_(1) <= ... <= p_(m)``::

    adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) · p_(j))     reject H_(i) iff it <= α

:func:`adjust` applies it to a study's :class:`~.equivalence.Equivalence` tests, as two
families: the tests of a difference (``better``/``worse``) and the TOSTs (``equivalent``),
each controlled at ``α``. A variant's two nulls (``δ = 0`` and ``|δ| >= M``) cannot both be
true, so a false claim of either kind has probability at most ``α`` when only one kind of
null is true in the study, and at most ``2α`` in general; pass ``alpha / 2`` for ``α`` over
every claim.

Intervals. Holm has no simple interval that matches its decisions (Strassburger & Bretz
2008 give compatible bounds that collapse to 0 for rejected nulls). :func:`adjust` gives
the simultaneous Bonferroni intervals instead, each at level ``1 - α/m``: by the Bonferroni
inequality all ``m`` cover their true deltas together with probability at least ``1 - α``.
They are more conservative than Holm's decisions, so a variant Holm calls ``better`` may
have a Bonferroni interval that touches zero; show the Holm label beside the unadjusted
interval, and the simultaneous interval as the statement about all variants at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ablate.inference.equivalence import Equivalence, Label, label
from ablate.inference.paired import InferenceError, Interval, check_alpha


@dataclass(frozen=True)
class Holm:
    """Holm-adjusted p-values and decisions, in the order the p-values were given."""

    p_values: tuple[float, ...]
    adjusted: tuple[float, ...]
    reject: tuple[bool, ...]
    alpha: float


def holm(p_values: ArrayLike, alpha: float = 0.05) -> Holm:
    """Holm's step-down adjustment of ``p_values`` at family-wise level ``alpha`` (Holm
    1979, Scand. J. Statist. 6:65). Ties and order of input do not matter."""
    check_alpha(alpha)
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or not ((p >= 0) & (p <= 1)).all():
        raise InferenceError("p_values: need a flat sequence of numbers in [0, 1] (no NaN)")
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(steps)
    return Holm(tuple(p.tolist()), tuple(adjusted.tolist()),
                tuple((adjusted <= alpha).tolist()), alpha)


@dataclass(frozen=True)
class Adjusted:
    """One variant's test with Holm-adjusted p-values, its adjusted label and its
    simultaneous (Bonferroni) interval."""

    test: Equivalence
    p_diff: float
    p_tost: float | None
    label: Label
    simultaneous: Interval


def adjust(tests: Sequence[Equivalence]) -> tuple[Adjusted, ...]:
    """Holm-adjust a study's variant tests (all at the same ``alpha`` and margin); the
    adjusted label follows :func:`~.equivalence.label` from the adjusted p-values."""
    if not tests:
        return ()
    alpha, margin = tests[0].alpha, tests[0].margin
    if any(t.alpha != alpha or t.margin != margin for t in tests):
        raise InferenceError("tests: a study's variants are adjusted together at one alpha "
                             "and one margin; test them alike")
    diff = holm([t.p_diff for t in tests], alpha).adjusted
    tost: Sequence[float | None] = [None] * len(tests)
    if margin is not None:
        tost = holm([t.p_tost for t in tests], alpha).adjusted
    level = 1 - alpha / len(tests)
    return tuple(
        Adjusted(t, d, q, label(t.paired.mean, d, q, alpha), t.paired.interval(level))
        for t, d, q in zip(tests, diff, tost, strict=True))
