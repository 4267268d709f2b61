"""The statistics of a report, read from :mod:`ablate.inference` (the one copy of each
formula): paired deltas with t intervals (Student 1908), each variant's decision by the
difference test and, with a margin, equivalence by TOST (Schuirmann 1987), Holm's
step-down adjustment across a study's variants (Holm 1979), and seeds for 80% power
(Cohen 1988, ch. 2).

This module only shapes those results for a report: per-seed mappings in, one decision
per variant out, with the rule stated in words for the notes under a table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ablate.errors import AblateError
from ablate.inference import (
    Adjusted,
    Equivalence,
    Paired,
    adjust,
    equivalence_test,
    paired_power,
    seeds_for_power,
)
from ablate.inference.paired import t_quantile

#: Confidence of the delta's interval, and the test behind "seeds for 80% power".
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.80

__all__ = ["ALPHA", "CONFIDENCE", "POWER", "Decision", "PairedDelta", "decide",
           "paired_delta", "paired_power", "rule", "seeds_for_power", "t_ppf"]


def t_ppf(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (scipy's, cached
    in :func:`ablate.inference.paired.t_quantile`)."""
    return t_quantile(q, df)


@dataclass(frozen=True)
class PairedDelta:
    """The mean of paired per-seed differences (variant - baseline) and its interval."""

    n: int
    mean: float
    #: Standard deviation of the differences (None with a single pair).
    sd: float | None
    #: Half-width of the 95% interval (None with one pair): the paired t's
    #: t(0.975, n-1) * sd / sqrt(n), except in a planned-seeds row (``two_stage`` set),
    #: where it is Stein's t(0.975, n0-1) * s0 / sqrt(n), from the pilot's sd ``s0`` on
    #: the pilot's n0-1 degrees of freedom: not computable from ``sd`` and ``n``.
    half_width: float | None
    #: The per-seed differences, in seed order (what a two-stage interval reads).
    differences: tuple[float, ...] = ()
    #: Planned seeds: Stein's two-stage summary the interval and the tests read instead
    #: of the plain paired t (:class:`ablate.inference.TwoStage`).
    two_stage: Paired | None = None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def paired(self) -> Paired | None:
        """The summary :mod:`ablate.inference` tests (None with a single pair)."""
        if self.two_stage is not None:
            return self.two_stage
        return None if self.sd is None else Paired(self.n, self.mean, self.sd)


def paired_delta(base: Mapping[int, float], other: Mapping[int, float],
                 confidence: float = CONFIDENCE) -> PairedDelta | None:
    """Paired comparison on the seeds both have (None when they share none)."""
    seeds = sorted(set(base) & set(other))
    if not seeds:
        return None
    diffs = tuple(other[s] - base[s] for s in seeds)
    if len(diffs) < 2:
        return PairedDelta(1, diffs[0], None, None, diffs)
    from ablate.inference import paired

    p = paired(diffs)
    return PairedDelta(p.n, p.mean, p.sd, p.interval(confidence).half_width, diffs)


@dataclass(frozen=True)
class Decision:
    """One variant's label, unadjusted and (when the study is adjusted) by Holm."""

    test: Equivalence
    #: Holm-adjusted p-values and label (None with ``adjust=False``).
    adjusted: Adjusted | None

    @property
    def label(self) -> str:
        """The decision the report acts on: Holm's when adjusted, else the plain one."""
        return self.test.label if self.adjusted is None else self.adjusted.label


def decide(deltas: Sequence[PairedDelta | None], margin: float | None = None,
           alpha: float = ALPHA, holm: bool = True) -> list[Decision | None]:
    """A decision for each variant's delta (None where there is no interval: no pairs or
    one seed). With ``holm``, the variants that have an interval form one family, adjusted
    by Holm's step-down procedure (two families: differences and, with a margin, TOSTs;
    :func:`ablate.inference.adjust`)."""
    tests = [None if d is None or d.paired is None else
             equivalence_test(d.paired, margin, alpha) for d in deltas]
    family = [t for t in tests if t is not None]
    adjusted = iter(adjust(family) if holm else [None] * len(family))
    return [None if t is None else Decision(t, next(adjusted)) for t in tests]


def rule(margin: float | None, family: int, holm: bool, alpha: float = ALPHA,
         two_stage: bool = False) -> str:
    """The decision rule in one sentence, for the notes under a table; ``two_stage``:
    the intervals and tests are Stein's (planned seeds)."""
    pct = f"{100 * (1 - alpha):g}%"
    tost = f"{100 * (1 - 2 * alpha):g}%"
    test = "Stein's two-stage t-test" if two_stage else "paired t-test"
    if margin is not None:
        text = (f"decision: equivalent when the {tost} CI lies inside ±{margin:g} top-1 "
                f"points (TOST, alpha = {alpha:g}), else better/worse when the {pct} CI "
                f"excludes zero ({test}), else undecided")
    else:
        text = (f"decision: better/worse when the {pct} CI excludes zero ({test}, "
                f"alpha = {alpha:g}), else undecided; no equivalence margin declared "
                f"('margin:' in the study or --margin), so nothing is called equivalent")
    if two_stage:
        text += (" (planned seeds: every CI and test uses d̄ over all of a variant's "
                 "paired seeds with the pilot's sd, on the pilot's n0 - 1 degrees of "
                 "freedom, an exact pivot (Stein 1945); a variant whose pilot is not "
                 "complete yet gets the plain paired t)")
    if holm and family > 1:
        text += (f"; Holm-adjusted across the study's {family} variants (family-wise "
                 f"alpha = {alpha:g}), the unadjusted label in parentheses where it differs")
    elif not holm and family > 1:
        text += (f"; not adjusted for the {family} variants tested (--no-adjust): about "
                 f"{family * alpha:.2g} false discoveries expected if no trick did anything")
    return text


def check_margin(margin: float | None, where: str) -> float | None:
    """A margin from a study file or the command line: a positive number of top-1 points."""
    if margin is None:
        return None
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (
            math.isfinite(margin) and margin > 0):
        raise AblateError(f"{where}: {margin!r} is not an equivalence margin; give a "
                             f"positive number of top-1 points, e.g. margin: 0.5")
    return float(margin)
