"""Statistics of a study, torch-free and ablate-free (numpy, scipy): what a researcher
needs beyond a paired interval.

- :mod:`.paired`: paired differences, t intervals and p-values (the base of the rest).
- :mod:`.equivalence`: better / worse / equivalent / undecided by TOST (Schuirmann 1987).
- :mod:`.multiplicity`: Holm's step-down adjustment across variants (Holm 1979), with
  simultaneous Bonferroni intervals.
- :mod:`.power`: power of the paired t-test and the seeds it needs (correct at df = 1).
- :mod:`.stein`: planned seeds by Stein's two-stage procedure (Stein 1945).
- :mod:`.factorial`: full and fractional two-level designs, aliases, effects with
  intervals (Box, Hunter & Hunter 2005; Montgomery 2017).
- :mod:`.transfer`: does a trick transfer across models (Welch 1951; Berger 1982).

Bad input raises :class:`InferenceError` (a ``ValueError``) with a one-line message.
"""

from ablate.inference.equivalence import LABELS, Equivalence, Label, equivalence_test, label
from ablate.inference.factorial import (
    GENERATORS,
    Design,
    Effect,
    FactorialFit,
    estimate_effects,
    factorial_design,
)
from ablate.inference.multiplicity import Adjusted, Holm, adjust, holm
from ablate.inference.paired import (
    InferenceError,
    Interval,
    Paired,
    paired,
    t_interval,
    t_sf,
    t_two_sided,
)
from ablate.inference.power import paired_power, seeds_for_power, seeds_for_power_each
from ablate.inference.stein import SteinPlan, TwoStage, stein_interval, stein_plan, two_stage
from ablate.inference.transfer import Transfer, Verdict, Welch, transfer, welch_anova

__all__ = [
    "GENERATORS", "LABELS", "Adjusted", "Design", "Effect", "Equivalence", "FactorialFit",
    "Holm", "InferenceError", "Interval", "Label", "Paired", "SteinPlan", "Transfer", "TwoStage",
    "Verdict", "Welch", "adjust", "equivalence_test", "estimate_effects", "factorial_design",
    "holm", "label", "paired", "paired_power", "seeds_for_power", "seeds_for_power_each",
    "stein_interval",
    "stein_plan", "t_interval", "t_sf", "t_two_sided", "transfer", "two_stage", "welch_anova",
]
