"""Equivalence by two one-sided tests (TOST, Schuirmann 1987), and the four labels.

"The interval covers zero" says nothing about whether a trick has no effect: with three
seeds it almost always does. The claim *no effect worth having* needs a margin ``M`` (in
top-1 points) declared before looking, and evidence that ``|δ| < M``: both one-sided nulls
``H01: δ <= -M`` and ``H02: δ >= +M`` rejected at level ``α``::

    p_low  = P(T_{n-1} >= (d̄ + M) / se)      p_high = P(T_{n-1} <= (d̄ - M) / se)
    p_TOST = max(p_low, p_high)

``p_TOST < α`` exactly when the ``1 - 2α`` interval lies inside ``(-M, +M)``. A test
rejects at ``p <= α`` (Holm 1979's and statsmodels' convention): only at an exact tie, an
interval end on the bound, does that differ from the interval rule.

The label rule (Lakens, Scheel & Isager 2018 combine the two tests the same way):

- ``equivalent``: ``p_TOST <= α`` (the ``1 - 2α`` interval is inside ``±M``). This holds
  even when the effect also differs from zero (their case "statistically different, but
  practically equivalent"): the margin declares such an effect too small to matter.
  :attr:`Equivalence.differs` still tells that case apart.
- ``better`` / ``worse``: not equivalent, and the two-sided test of ``δ = 0`` rejects
  (``p <= α``: the ``1 - α`` interval lies entirely above / below zero).
- ``undecided``: neither.

Without a margin (``margin=None``) nothing is ``equivalent`` and the labels are the plain
two-sided t-test's, what ``ablate report`` says today (``undecided`` = "within noise").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ablate.inference.paired import InferenceError, Interval, Paired, check_alpha, t_sf

Label = Literal["better", "worse", "equivalent", "undecided"]
LABELS: tuple[Label, ...] = ("better", "worse", "equivalent", "undecided")


def label(mean: float, p_diff: float, p_tost: float | None, alpha: float) -> Label:
    """The rule of the module docstring, from the two-sided p-value ``p_diff`` of
    ``δ = 0`` and ``p_TOST`` (None: no margin). Adjusted p-values (:mod:`.multiplicity`)
    give the adjusted label by the same rule."""
    if p_tost is not None and p_tost <= alpha:
        return "equivalent"
    if p_diff <= alpha:
        return "better" if mean > 0 else "worse"
    return "undecided"


@dataclass(frozen=True)
class Equivalence:
    """One variant against its baseline: the test of a difference and, with a margin, TOST."""

    paired: Paired
    margin: float | None
    alpha: float
    #: Two-sided p-value of ``δ = 0`` (paired t-test).
    p_diff: float
    #: One-sided p-values of ``δ <= -M`` and ``δ >= +M`` (None without a margin).
    p_low: float | None
    p_high: float | None

    @property
    def p_tost(self) -> float | None:
        """TOST p-value, ``max(p_low, p_high)`` (None without a margin)."""
        return None if self.p_low is None or self.p_high is None else max(self.p_low,
                                                                           self.p_high)

    @property
    def interval(self) -> Interval:
        """The ``1 - α`` interval the difference test and ``better``/``worse`` read."""
        return self.paired.interval(1 - self.alpha)

    @property
    def tost_interval(self) -> Interval:
        """The ``1 - 2α`` interval whose inclusion in ``±M`` is equivalence."""
        return self.paired.interval(1 - 2 * self.alpha)

    @property
    def differs(self) -> bool:
        """The two-sided test rejects ``δ = 0`` (also true of some equivalent variants)."""
        return self.p_diff <= self.alpha

    @property
    def label(self) -> Label:
        return label(self.paired.mean, self.p_diff, self.p_tost, self.alpha)


def equivalence_test(paired: Paired, margin: float | None = None,
                     alpha: float = 0.05) -> Equivalence:
    """Test one paired comparison for a difference and, given ``margin`` ``M > 0`` (in the
    differences' unit, top-1 points), for equivalence within ``±M`` (TOST, Schuirmann 1987,
    J. Pharmacokinet. Biopharm. 15:657)."""
    check_alpha(alpha)
    if margin is not None and not margin > 0:
        raise InferenceError(f"margin={margin}: an equivalence margin is a positive number "
                             f"of top-1 points, e.g. 0.5")
    p_low = p_high = None
    if margin is not None:
        p_low = t_sf(paired.mean + margin, paired.se, paired.df)
        p_high = t_sf(margin - paired.mean, paired.se, paired.df)
    return Equivalence(paired, margin, alpha, paired.p_value(), p_low, p_high)
