"""Loading: the database's rows of the studies a report covers, as plain records.

One query for the runs of every study (:meth:`ablate.store.Store.report_runs`): a database
of 10,000 runs loads in a fraction of a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError
from ablate.store.db import ReportRun

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from ablate.store.db import Store

#: Environment facts whose difference between compared runs is worth a note.
ENV_KEYS = ("torch", "torchvision", "cuda", "cudnn", "device", "world_size")


@dataclass(frozen=True)
class RunRecord(ReportRun):
    """One (variant, seed) of a study as the report reads it: the store's row, its
    environment decoded (``env``), and its config decoded on first use (:attr:`config`)."""

    env: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.env and self.env_json:  # as the store read it: decoded here, shared
            text = self.env_json
            object.__setattr__(self, "env", _env(text) if isinstance(text, str)
                               else dict(text))

    @property
    def succeeded(self) -> bool:
        """Only succeeded runs with a final result count in a report."""
        return self.status == "succeeded" and self.top1 is not None

    @cached_property
    def config(self) -> dict[str, Any]:
        """The run's resolved config (10,000 decoded take a fifth of a second: only the
        ones a report reads are)."""
        return dict(_json(self.config_json) or {})

    @cached_property
    def provenance(self) -> tuple[Any, ...] | None:
        """Its code commit and environment facts (ENV_KEYS), to compare runs in one step
        (None where one is NaN, which equals nothing: compared fact by fact)."""
        if isinstance(self.env_json, str) and self.env is _env(self.env_json):
            # Runs of one commit and environment share one answer (10,000 runs: a tenth
            # of a second otherwise).
            return _provenance(self.code_commit, self.code_dirty, self.world_size,
                               self.env_json)
        return _facts(self)


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored: its mode, its study file (unexpanded) and all its runs."""

    name: str
    mode: str
    spec: dict[str, Any]
    runs: tuple[RunRecord, ...]
    #: Run hash -> metrics key -> its last epoch's value, for the metrics a report reads
    #: beyond the result's top-1/top-5 (:func:`with_final_metrics`).
    finals: dict[str, dict[str, float | None]] = field(default_factory=dict)


def load_studies(store: Store, names: Sequence[str] | None = None
                 ) -> list[StudyRecord]:
    """The named studies (default: all, by name) as plain records.

    An empty database or an unknown name is an :class:`AblateError` (one line, with the
    closest known names). One query for the runs of all of them (``report_runs``): a
    database of 10,000 runs loads in a fraction of a second.
    """
    studies, rows = store.report_runs(names, make=RunRecord)
    known = list(studies)
    if not known:
        raise AblateError(f"{store.display_url}: the database has no studies yet; run "
                          f"'ablate run STUDY.yaml' first")
    wanted = list(dict.fromkeys(names)) if names else known
    for name in wanted:
        if name not in known:
            from zoo.errors import did_you_mean

            raise AblateError(f"unknown study '{name}'{did_you_mean(name, known)} "
                              f"(known: {', '.join(known)})")
    by_study: dict[int, list[RunRecord]] = {studies[n].id: [] for n in wanted}
    for r in rows:
        by_study[r.study_id].append(r)
    return [StudyRecord(name=n, mode=studies[n].mode, spec=dict(studies[n].spec or {}),
                        runs=tuple(by_study[studies[n].id])) for n in wanted]


def with_final_metrics(store: Store, records: Sequence[StudyRecord], keys: Sequence[str]
                       ) -> list[StudyRecord]:
    """``records`` with the last epoch's value of each metrics key in ``keys`` of their
    succeeded runs (one query; a run without that key has no entry for it)."""
    if not keys:
        return list(records)
    from dataclasses import replace

    hashes = [r.hash for rec in records for r in rec.runs if r.succeeded]
    finals: dict[str, dict[str, float | None]] = {}
    for h, key, value in store.final_metric_values(hashes, keys):
        finals.setdefault(h, {})[key] = value
    return [replace(rec, finals={r.hash: finals[r.hash] for r in rec.runs
                                 if r.hash in finals}) for rec in records]


def _json(value: Any) -> Any:
    """A JSON column's value from its text (or as the driver already decoded it)."""
    return json.loads(value) if isinstance(value, str) else value


def curves_frame(store: Store, names: Sequence[str] | None = None
                 ) -> pd.DataFrame:
    """Validation top-1 per epoch of every succeeded run of the studies: one row per
    (study, variant, seed, epoch)."""
    import pandas as pd

    records = load_studies(store, names)
    rows: list[dict[str, Any]] = []
    for rec in records:
        runs = {r.hash: r for r in rec.runs if r.succeeded}
        if not runs:
            continue
        by_hash: dict[str, list[tuple[int, float | None]]] = {}
        for h, epoch, value in store.metric_values(runs, "top1"):
            by_hash.setdefault(h, []).append((epoch, value))
        for r in rec.runs:
            if not r.succeeded:
                continue
            for epoch, value in by_hash.get(r.hash, []):
                if value is not None:
                    rows.append({"study": rec.name, "variant": r.variant,
                                 "variant_index": r.variant_index, "seed": r.seed,
                                 "epoch": epoch, "top1": value})
    return pd.DataFrame(rows, columns=["study", "variant", "variant_index", "seed", "epoch",
                                       "top1"])



@lru_cache(maxsize=4096)
def _env(text: Any) -> dict[str, Any]:
    """A run's environment from its JSON column, decoded once for the many runs that
    share it (read only: one dict for them all)."""
    return dict(_json(text) or {})


@lru_cache(maxsize=4096)
def _provenance(commit: str | None, dirty: bool | None, world_size: int | None,
                env_json: str) -> tuple[Any, ...] | None:
    """:attr:`RunRecord.provenance` of every run with these columns."""
    return _facts(SimpleNamespace(code_commit=commit, code_dirty=dirty,
                                  world_size=world_size, env=_env(env_json)))


def _facts(r: Any) -> tuple[Any, ...] | None:
    facts = (_commit(r), *(_env_value(r, key) for key in ENV_KEYS))
    return facts if all(v == v for v in facts) else None


def _commit(r: RunRecord) -> str:
    if r.code_commit is None:
        return "unknown"
    return r.code_commit[:10] + ("+dirty" if r.code_dirty else "")


def _env_value(r: RunRecord, key: str) -> Any:
    if key == "world_size":
        return r.world_size if r.world_size is not None else r.env.get("world_size")
    return r.env.get(key)
