"""Planned seeds: Stein's two-stage procedure (Stein 1945, Ann. Math. Statist. 16:243).

Adding seeds until an interval looks good (optional stopping) inflates false positives.
Stein fixes the second stage from the first alone: from a pilot of ``n0`` paired
differences with sd ``s0``, the total number of seeds is::

    n = min(max_n, max(n0, ceil((t(1 - α/2, n0 - 1) · s0 / h)²)))

and the interval, from the mean ``d̄_n`` of all ``n`` differences (pilot included), is::

    d̄_n ± t(1 - α/2, n0 - 1) · s0 / √n

Its coverage is exactly ``1 - α`` for any ``σ``: given ``s0``, ``n`` is fixed and ``d̄_n`` is
normal with variance ``σ²/n`` (the pilot mean is independent of ``s0``, the later seeds of
everything), so ``(d̄_n - δ) √n / s0`` is Student's t with ``n0 - 1`` degrees of freedom.
Its half-width is at most ``h`` by the choice of ``n``, unless ``max_n`` capped it. The
price of exactness is the pilot's few degrees of freedom (``t(0.975, 2) = 4.30`` with
three pilot seeds), and that ``n`` must not depend on anything seen after the pilot.

The coverage is over the pilot's sd too: it holds for all variants together, not for the
variants picked by anything decided from ``s0``. ``capped`` is such a thing: a variant
whose pilot underestimated ``σ`` plans few seeds, is not capped, and its interval misses
more often than ``α`` (with 3 pilot seeds, ``h`` = 0.3 and ``max_n`` = 12, the variants
not capped covered about 0.78 at ``σ`` = 0.5: tests/test_planned_seeds.py); the capped
ones cover more. ``capped`` says only whether the half-width target is guaranteed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ablate.inference.paired import (
    InferenceError,
    Interval,
    Paired,
    check_alpha,
    t_quantile,
)


@dataclass(frozen=True)
class SteinPlan:
    """The seeds one variant needs, fixed from its pilot."""

    n0: int
    s0: float
    #: The target half-width ``h`` and the level ``1 - α`` of the planned interval.
    half_width: float
    alpha: float
    #: Total seeds (pilot included) and whether ``max_n`` cut it below Stein's ``n``
    #: (whether the target half-width is guaranteed; not whether this variant's interval
    #: is more or less reliable: see the module docstring).
    n: int
    capped: bool

    @property
    def extra(self) -> int:
        """Seeds to train after the pilot."""
        return self.n - self.n0

    @property
    def t(self) -> float:
        """``t(1 - α/2, n0 - 1)``, the quantile both stages use."""
        return t_quantile(1 - self.alpha / 2, self.n0 - 1)

    @property
    def planned_half_width(self) -> float:
        """The half-width the interval will have with ``n`` seeds: ``t · s0 / √n``."""
        return self.t * self.s0 / math.sqrt(self.n)


def stein_plan(pilot: Paired, half_width: float, alpha: float = 0.05,
               max_n: int | None = None) -> SteinPlan:
    """Total seeds for a ``1 - alpha`` interval of half-width at most ``half_width`` (top-1
    points) from the pilot's paired differences, capped at ``max_n`` seeds."""
    check_alpha(alpha)
    if not half_width > 0:
        raise InferenceError(f"half_width={half_width}: the target half-width is a positive "
                             f"number of top-1 points, e.g. 0.3")
    if max_n is not None and max_n < pilot.n:
        raise InferenceError(f"max_n={max_n}: the cap on seeds cannot be below the pilot's "
                             f"{pilot.n} seeds")
    t = t_quantile(1 - alpha / 2, pilot.df)
    need = max(pilot.n, math.ceil((t * pilot.sd / half_width) ** 2))
    n = need if max_n is None else min(need, max_n)
    return SteinPlan(pilot.n, pilot.sd, half_width, alpha, n, n < need)


@dataclass(frozen=True)
class TwoStage(Paired):
    """A planned variant's ``n`` differences (pilot first) summarised as the tests of
    :mod:`.equivalence` and :mod:`.multiplicity` read a :class:`Paired`: mean ``d̄_n``,
    standard error ``s0 / √n`` on the pilot's ``n0 - 1`` degrees of freedom, the exact
    pivot of the module docstring. Its interval is Stein's, its p-values (difference,
    TOST) are exact tests by the same pivot, so Holm's adjustment over them stays valid.
    ``sd`` is the sd of all ``n`` differences (for display; the tests do not read it)."""

    plan: SteinPlan

    @property
    def df(self) -> int:
        return self.plan.n0 - 1

    @property
    def se(self) -> float:
        return self.plan.s0 / math.sqrt(self.n)


def two_stage(plan: SteinPlan, differences: ArrayLike) -> TwoStage:
    """The :class:`TwoStage` summary of every paired difference of the variant, pilot
    first (at least the pilot's ``n0``; normally exactly ``plan.n``)."""
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or not np.isfinite(d).all() or d.size < plan.n0:
        raise InferenceError(f"differences: need a flat sequence of at least the pilot's "
                             f"{plan.n0} finite values (pilot first), got {d.size}")
    return TwoStage(int(d.size), float(d.mean()), float(d.std(ddof=1)), plan)


def stein_interval(plan: SteinPlan, differences: ArrayLike) -> Interval:
    """Stein's interval from every paired difference of the variant, pilot first (at least
    the pilot's ``n0``; normally exactly ``plan.n``). Seeds lost to failures leave it valid
    as long as the loss does not depend on their values; its half-width then exceeds the
    planned one."""
    return two_stage(plan, differences).interval(1 - plan.alpha)
