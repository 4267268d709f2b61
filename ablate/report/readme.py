"""README blocks: the findings, tables and notes between ``<!-- ablate:report STUDY -->``
and ``<!-- /ablate:report -->`` in a markdown file, refreshed in place from the database.

The findings paragraph is generated from the same statistics as the table (which variants
are above or below the baseline with their intervals, which are undecided and how many
seeds each would need), so no sentence about the results is typed by hand: a rerun on
another machine that flips a conclusion rewrites the paragraph with it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError
from ablate.report.aggregate import build_rows
from ablate.report.kernels import kernel_notes, with_kernel_notes
from ablate.report.render import _records_by_study, _study_block, decided_metrics, image_links

if TYPE_CHECKING:
    from ablate.store.db import Store

#: The marker comments around a generated README table.
README_MARKER = re.compile(
    r"(<!-- ablate:report (?P<study>[^\s>]+) -->)(?P<body>.*?)(<!-- /ablate:report -->)",
    re.S,
)
_OPEN_MARKER = re.compile(r"<!-- ablate:report (?P<study>[^\s>]+) -->")
_IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\([^)]*\)\s*$")

# --------------------------------------------------------------------------- README


def readme_studies(text: str) -> list[str]:
    """The studies named by report markers in a README, in order; a marker without its
    closing comment is an error."""
    opened = [m.group("study") for m in _OPEN_MARKER.finditer(text)]
    closed = [m.group("study") for m in README_MARKER.finditer(text)]
    if opened != closed:
        missing = next((s for s in opened if opened.count(s) != closed.count(s)), opened[-1])
        raise AblateError(f"marker '<!-- ablate:report {missing} -->' has no closing "
                          f"'<!-- /ablate:report -->'")
    return list(dict.fromkeys(closed))


def render_readme(text: str, store: Store, plots_dir: str | None = None,
                  studies: Sequence[str] | None = None) -> str:
    """``text`` with the block between each ``<!-- ablate:report STUDY -->`` and
    ``<!-- /ablate:report -->`` replaced by that study's table and notes; everything outside
    the markers is left byte for byte. Image lines inside a block are kept as they are, or,
    with ``plots_dir`` (as the README's reader sees it), replaced by links to the study's
    plots there. With ``studies``, only their markers are refreshed. Idempotent.

    A README holds what the report makes from the database exactly when
    ``render_readme(text, store) == text``.
    """
    names = readme_studies(text)
    if studies:
        names = [n for n in names if n in set(studies)]
    if not names:
        return text
    by_study = _records_by_study(with_kernel_notes(build_rows(store, names),
                                                   kernel_notes(store, names)))

    def replace(m: re.Match[str]) -> str:
        study = m.group("study")
        if study not in names:
            return m.group(0)
        if plots_dir is not None:
            images = image_links(study, plots_dir)
        else:
            images = [ln.strip() for ln in m.group("body").splitlines()
                      if _IMAGE_LINE.match(ln.strip())]
        if study not in by_study:
            raise AblateError(f"study '{study}' is not in the report")
        records = by_study[study]
        summary = findings(records)
        block = (f"{summary}\n\n" if summary else "") + _study_block(records, images)
        return f"{m.group(1)}\n{block}{m.group(4)}"

    return README_MARKER.sub(replace, text)


# --------------------------------------------------------------------------- findings


def _number(value: Any) -> float | None:
    """A number of the frame as a float, None for a missing one (None, NaN, pandas' NA)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _interval(row: Mapping[str, Any]) -> str:
    delta = _number(row["delta_top1"])
    low, high = _number(row["ci_top1_low"]), _number(row["ci_top1_high"])
    return f"{row['variant']} {delta:+.2f} [{low:+.2f}, {high:+.2f}]"


def _beyond_top1(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The sentence on the other metrics a study decides: each variant's decided changes
    (its ``changes``), trade-offs first."""
    metrics = decided_metrics(records)
    if not metrics:
        return []
    changed = [f"{r['variant']}: {r['changes']}" for r in records[1:]
               if r.get("changes") not in (None, "no decided change")]
    changed.sort(key=lambda text: not text.endswith("trade-off"))
    names = _join(["top-1", *(m.label for m in metrics)])
    if not changed:
        return [f"Over {names} (each its own Holm family), no variant has a decided change."]
    return [f"Over {names} (each its own Holm family), the decided changes: "
            f"{'; '.join(changed)}."]


def findings(records: Sequence[Mapping[str, Any]]) -> str:
    """One paragraph on what a study's table shows, from its rows of the report's frame
    (baseline first): the variants the report decides better, worse or equivalent (its
    ``verdict``: Holm-adjusted unless turned off, against the margin when one is declared),
    those it leaves undecided with the seeds each would need at 80% power, and those with
    too few paired seeds for an interval. Empty for a models table, which compares no
    variant with a baseline."""
    if not records or records[0]["layout"] != "ablation" or len(records) < 2:
        return ""
    decided: dict[str, list[str]] = {"better": [], "worse": [], "equivalent": []}
    undecided, unpaired = [], []
    for row in records[1:]:
        low, high = _number(row["ci_top1_low"]), _number(row["ci_top1_high"])
        if low is None or high is None or _number(row["delta_top1"]) is None:
            unpaired.append(f"{row['variant']} ({int(row['n_paired'])} paired seed"
                            f"{'' if int(row['n_paired']) == 1 else 's'})")
            continue
        text = _interval(row)
        if row.get("label_holm") is not None and row.get("label") != row["verdict"]:
            text += f" ({row['label']} before the adjustment)"
        if row["verdict"] in decided:
            decided[str(row["verdict"])].append(text)
        else:
            undecided.append((row, text))
    paired = sorted({int(r["n_paired"]) for r in records[1:] if int(r["n_paired"]) >= 2})
    seeds = (f"{paired[0]} paired seeds" if len(paired) == 1
             else f"{paired[0]} to {paired[-1]} paired seeds" if paired else "no paired seeds")
    tested = [r for r in records[1:] if r.get("margin") is not None or r.get("adjusted")]
    how = []
    if any(r.get("adjusted") for r in tested):
        how.append(f"decisions Holm-adjusted across the {len(records) - 1} variants")
    margin = _number(tested[0]["margin"]) if tested else None
    if margin is not None:
        how.append(f"equivalence margin ±{margin:g} points")
    parts = [f"Findings (generated by `ablate report --readme` from the table below: top-1 "
             f"change against the baseline, 95% interval, {seeds}"
             + "".join(f"; {h}" for h in how) + "):"]
    parts.append(f"better than the baseline: {_join(decided['better'])};"
                 if decided["better"] else "no variant is better than the baseline;")
    parts.append(f"worse: {_join(decided['worse'])}." if decided["worse"]
                 else "none is worse.")
    if decided["equivalent"]:
        parts.append(f"Equivalent to it within the margin: {_join(decided['equivalent'])}.")
    if undecided:
        needs = []
        for row, _ in undecided:
            k = _number(row["seeds_for_power"])
            needs.append(f"{row['variant']} {'-' if k is None else int(k)}")
        parts.append(f"Undecided: {_join([t for _, t in undecided])}; {seeds} do not "
                     f"decide {'it' if len(undecided) == 1 else 'them'}. Seeds each would "
                     f"need to detect its observed delta at 80% power: {_join(needs)}.")
    if unpaired:
        parts.append(f"Too few paired seeds for an interval: {_join(unpaired)}.")
    parts += _beyond_top1(records)
    if "different kernels" in str(records[0]["study_notes"] or ""):
        parts.append("Its runs were made on different kernels (see the notes): the "
                     "differences include the kernels', not only the declared changes'.")
    return " ".join(parts)
