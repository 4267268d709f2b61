"""The metrics a report can decide, each with its direction and where its value lives.

A run's top-1 and top-5 are in its result; the others are its last epoch's row of the
metrics table (``metrics.jsonl``: :mod:`zoo.metrics` defines them). A run from before a
metric was measured has none: it counts as missing for that metric only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ablate.errors import AblateError


@dataclass(frozen=True)
class Metric:
    """One metric of a report."""

    #: Its name on the command line and in the frame's columns (``delta_<name>``).
    name: str
    #: Its key in a run's result / metrics row.
    key: str
    #: How a table names it, and its unit.
    label: str
    unit: str
    #: Whether a larger value is better (lower is better for NLL and ECE).
    higher_is_better: bool
    #: Read from the run's result (top-1, top-5) rather than its last metrics row.
    in_result: bool = False

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("top1", "top1", "top-1", "%", True, in_result=True),
    Metric("top5", "top5", "top-5", "%", True, in_result=True),
    Metric("nll", "val_loss", "NLL", "nats", False),
    Metric("ece", "ece", "ECE", "%", False),
    Metric("worst_class", "worst_class", "worst-class top-1", "%", True),
    Metric("corruption", "corruption", "corruption top-1", "%", True),
)}

#: The metric a study decides first when its file declares no ``primary:``.
DEFAULT_PRIMARY = "top1"


def metric(name: str) -> Metric:
    """The metric of this name; an :class:`AblateError` naming the closest one."""
    try:
        return METRICS[name]
    except KeyError:
        from zoo.errors import did_you_mean

        raise AblateError(f"unknown metric '{name}'{did_you_mean(name, METRICS)} "
                          f"(known: {', '.join(METRICS)})") from None


def chosen(primary: str, names: Iterable[str] = ()) -> tuple[Metric, ...]:
    """The metrics a study's report decides: top-1 (the table's own columns), its primary
    metric and ``names``, each once, primary first."""
    ordered = dict.fromkeys([primary, DEFAULT_PRIMARY, *names])
    return tuple(metric(n) for n in ordered)


def extra_columns(metrics: Sequence[Metric]) -> tuple[str, ...]:
    """The frame's columns of the metrics beyond top-1 (whose columns are fixed):
    mean, paired delta with its interval, the sd of the differences, p-values and the
    decision, per metric."""
    out: list[str] = []
    for m in metrics:
        if m.name != "top1":
            n = m.name
            out += [n, f"delta_{n}", f"ci_{n}", f"ci_{n}_low", f"ci_{n}_high",
                    f"sd_diff_{n}", f"p_{n}", f"p_{n}_holm", f"verdict_{n}"]
    return tuple(out)
