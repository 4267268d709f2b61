"""The metrics a report can decide (:data:`zoo.contract.REPORTABLE`: each with its direction
and where its value lives), looked up by name, and the frame's columns of each.

A run's top-1 and top-5 are in its result; the others are its last epoch's row of the
metrics table (``metrics.jsonl``: :mod:`zoo.metrics` defines them). A run from before a
metric was measured has none: it counts as missing for that metric only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ablate.errors import AblateError
from zoo.contract import REPORTABLE as METRICS
from zoo.contract import Metric

__all__ = ["DEFAULT_PRIMARY", "METRICS", "Metric", "chosen", "extra_columns", "metric"]


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
