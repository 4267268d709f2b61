"""Does a trick transfer across models? One verdict from per-model paired deltas.

Each model ``i`` gives its own paired comparison of the variant with that model's baseline
(:class:`~.paired.Paired`: ``n_i`` differences, mean ``d̄_i``, sd ``s_i``). Two questions:

1. *Is the effect the same everywhere?* The trick × model interaction is the heterogeneity
   of the deltas: ``H0: δ_1 = ... = δ_K``. Models differ in their seed noise, so the test
   is Welch's heteroscedastic one-way ANOVA on the differences (Welch 1951, Biometrika
   38:330), with ``w_i = n_i / s_i²``, ``W = Σ w_i``, ``m = Σ w_i d̄_i / W``::

       A = Σ w_i (d̄_i - m)² / (K - 1)         Λ = Σ (1 - w_i/W)² / (n_i - 1)
       F = A / (1 + 2 (K - 2) Λ / (K² - 1))    on (K - 1, (K² - 1) / (3 Λ)) df

2. *Does each model get the same answer?* Each model's label (:mod:`.equivalence`, same
   margin and ``α``).

The verdict:

- ``transfers``: every model has the same decided label (all ``better``, all ``worse``,
  or with a margin all ``equivalent``). That is an intersection-union test (Berger 1982,
  Technometrics 24:295): each model's test at ``α`` makes the joint claim a level-``α``
  test, with no adjustment. The size may still differ between models:
  :attr:`Transfer.heterogeneous` says whether Welch's test rejects.
- ``model-specific``: the labels are not all the same and Welch's test rejects equal
  deltas at ``α``. Its level is that of Welch's F, an approximation that is not exact at
  small n: with 3 seeds per model and unequal seed noise it rejects equal deltas about 7%
  of the time at ``α`` = 0.05 (Monte Carlo: tests/test_inference_transfer.py), with equal
  noise about 4%. Read it as "approximately level ``α``", liberal when models differ in
  their noise and seeds are few.
- ``undecided``: neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from ablate.inference.equivalence import Equivalence, equivalence_test
from ablate.inference.paired import InferenceError, Paired

Verdict = Literal["transfers", "model-specific", "undecided"]


@dataclass(frozen=True)
class Welch:
    """Welch's test of equal means across groups."""

    f: float
    df_num: float
    df_den: float
    p_value: float


def welch_anova(groups: Mapping[str, Paired]) -> Welch:
    """Welch's (1951) heteroscedastic test that every group's mean is equal, from each
    group's ``(n, mean, sd)``; every sd must be positive."""
    if len(groups) < 2:
        raise InferenceError(f"groups: {len(groups)} model(s); a test across models needs "
                             f"at least two")
    flat = [name for name, g in groups.items() if not g.sd > 0]
    if flat:
        raise InferenceError(f"model '{flat[0]}': its paired differences do not vary (sd 0); "
                             f"Welch's test needs seed noise in every model")
    n = np.array([g.n for g in groups.values()], dtype=float)
    mean = np.array([g.mean for g in groups.values()])
    w = n / np.array([g.sd for g in groups.values()]) ** 2
    k, total = len(n), w.sum()
    centre = (w * mean).sum() / total
    a = (w * (mean - centre) ** 2).sum() / (k - 1)
    lam = ((1 - w / total) ** 2 / (n - 1)).sum()
    f = a / (1 + 2 * (k - 2) * lam / (k * k - 1))
    df_den = (k * k - 1) / (3 * lam)
    # special.fdtrc is scipy.stats.f.sf's own function (no scipy.stats import).
    return Welch(float(f), k - 1.0, float(df_den), float(special.fdtrc(k - 1, df_den, f)))


@dataclass(frozen=True)
class Transfer:
    """A trick across models: each model's test, the heterogeneity test and the verdict."""

    tests: Mapping[str, Equivalence]
    welch: Welch
    verdict: Verdict

    @property
    def heterogeneous(self) -> bool:
        """Welch's test rejects equal deltas across models at the tests' ``α``."""
        return self.welch.p_value <= next(iter(self.tests.values())).alpha


def transfer(deltas: Mapping[str, Paired], margin: float | None = None,
             alpha: float = 0.05) -> Transfer:
    """The verdict of the module docstring for one trick, from each model's paired
    differences against its own baseline (``{"resnet50": Paired(...), ...}``)."""
    welch = welch_anova(deltas)
    tests = {name: equivalence_test(p, margin, alpha) for name, p in deltas.items()}
    labels = {t.label for t in tests.values()}
    verdict: Verdict = "undecided"
    if len(labels) == 1 and labels != {"undecided"}:
        verdict = "transfers"
    elif len(labels) > 1 and welch.p_value <= alpha:
        verdict = "model-specific"
    return Transfer(tests, welch, verdict)
