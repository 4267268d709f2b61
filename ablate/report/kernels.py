"""Which kernels a study's runs were computed with, and a note when they differ.

Two runs of one config are bitwise equal on a CPU only when the same kernels computed them:
the instruction set torch dispatched to (``ATEN_CPU_CAPABILITY``: DEFAULT, AVX2,
AVX512...), the BLAS and oneDNN builds and the number of threads; on a GPU, its model,
cuDNN and the deterministic flags. Each run records these in ``config.json``'s
``env.determinism`` (``zoo.rundir.determinism_info``), which the store keeps with the
run's result. Different kernels change the last bits of every step, and after a few
epochs whole points of top-1 (seen here: -2.3 to +1.3 points between two CPUs for one
config): a report says when the runs it compares did not share them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ablate.report.aggregate import NOTE_SEP
from ablate.report.load import RunRecord, StudyRecord, load_studies

if TYPE_CHECKING:
    from ablate.store.db import Store

#: The key of a run's environment that holds the kernel facts.
DETERMINISM = "determinism"


def kernels(run: RunRecord) -> tuple[tuple[str, str], ...] | None:
    """The kernel facts of a run as a hashable, sorted tuple; None when not recorded."""
    facts = run.env.get(DETERMINISM)
    if not isinstance(facts, Mapping) or not facts:
        return None
    return tuple(sorted((str(k), str(v)) for k, v in facts.items()))


def _counts(values: Sequence[str]) -> str:
    return ", ".join(f"{v} in {n} run{'s' if n > 1 else ''}"
                     for v, n in sorted(Counter(values).items()))


def kernel_note(study: StudyRecord) -> str | None:
    """One line when a study's succeeded runs were not all computed with the same recorded
    kernels (or some recorded none), else None."""
    ok = [r for r in study.runs if r.succeeded]
    known = {r.hash: k for r in ok if (k := kernels(r)) is not None}
    notes = []
    unknown = len(ok) - len(known)
    if unknown:
        notes.append(f"the kernels (CPU capability, BLAS/oneDNN, threads; GPU and cuDNN) of "
                     f"{unknown} of {len(ok)} runs were not recorded: whether a rerun "
                     f"reproduces them bitwise cannot be checked")
    if len(set(known.values())) > 1:
        facts = [dict(k) for k in known.values()]
        keys = sorted({key for f in facts for key in f})
        differing = [key for key in keys if len({f.get(key) for f in facts}) > 1]
        detail = "; ".join(f"{key}: {_counts([str(f.get(key)) for f in facts])}"
                           for key in differing)
        by_seed = {r.seed: known.get(r.hash) for r in ok if r.variant_index == 0}
        crossed = sorted({r.variant for r in ok if r.variant_index != 0
                          and r.hash in known and by_seed.get(r.seed) not in (None, known[r.hash])})
        pairs = (f"; the paired deltas of {', '.join(crossed)} compare runs of different "
                 f"kernels" if crossed else "")
        notes.append(f"runs were made on different kernels ({detail}){pairs}: their "
                     f"top-1 differences include the kernels', not only the declared changes'")
    return NOTE_SEP.join(notes) or None


def code_note(study: StudyRecord, cores: Mapping[str, str | None], others: int) -> str | None:
    """One line when runs of the study's configs trained by other code exist (``others``,
    not compared), or when its succeeded runs were trained by different versions of the
    training loop (``cores``: run -> the loop's fingerprint), else None."""
    notes = []
    if others:
        many = others > 1
        notes.append(f"{others} run{'s' if many else ''} of these configs trained by other "
                     f"code exist{'' if many else 's'} and {'are' if many else 'is'} not "
                     f"compared: the table compares the runs of the code the study was last "
                     f"planned with ('ablate show HASH' lists a run's code)")
    versions = Counter(c for r in study.runs if r.succeeded and (c := cores.get(r.hash)))
    if len(versions) > 1:
        notes.append(f"the runs were trained by {len(versions)} versions of the training loop "
                     f"(zoo.train and what it imports: {_counts(list(versions.elements()))}): "
                     f"their differences include the loop's changes")
    return NOTE_SEP.join(notes) or None


def kernel_notes(store: Store, studies: Sequence[str] | None = None) -> dict[str, str]:
    """:func:`kernel_note` and :func:`code_note` of each study that has one, by name."""
    return records_kernel_notes(load_studies(store, studies), store)


def records_kernel_notes(records: Sequence[StudyRecord], store: Store) -> dict[str, str]:
    """:func:`kernel_notes` of studies already loaded (``store``: their runs' code)."""
    out = {}
    for rec in records:
        cores, others = store.code_versions([r.hash for r in rec.runs])
        notes = [n for n in (kernel_note(rec), code_note(rec, cores, others)) if n]
        if notes:
            out[rec.name] = NOTE_SEP.join(notes)
    return out


def with_kernel_notes(rows: Sequence[Mapping[str, Any]], notes: Mapping[str, str]
                      ) -> list[dict[str, Any]]:
    """The report's rows (:func:`ablate.report.aggregate.build_rows`) with each study's
    kernel note added to its ``study_notes`` (the column every renderer prints once under
    a study's table)."""
    return [{**row, "study_notes": NOTE_SEP.join(
                x for x in (str(row["study_notes"] or ""), notes.get(row["study"], "")) if x)}
            if row["study"] in notes else dict(row) for row in rows]
