"""A results database rebuilt from run directories alone, the source of truth.

The orchestrator writes into each run directory which studies the run belongs to
(``studies.json``: per study its file, mode and study file as written, and the run's
variant, its index, change and seed), the launcher writes ``run.yaml``, the trainer
``config.json``, ``metrics.jsonl`` and ``result.json``. From those a new database gets the
same studies, (variant, seed) links, runs with their status, progress and code, metrics and
results as the one they were recorded in. What only the orchestrating machine knew is left
empty: timestamps, owner, host, attempts, scheduler jobs, errors and log tails.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ablate.errors import AblateError
from ablate.store.db import Store
from ablate.store.schema import Status
from ablate.study.spec import RunSpec
from zoo.contract import RUN_CONFIG, STUDIES, RunDir, atomic_write


@dataclass(frozen=True)
class Membership:
    """One study a run belongs to, as ``studies.json`` records it."""

    study: str
    path: str
    mode: str
    spec: dict[str, Any]
    variant: str
    variant_index: int
    change: str
    seed: int


def record_membership(spec: RunSpec, study: str, path: str, mode: str,
                      raw: dict[str, Any]) -> None:
    """Add (or refresh) ``study`` in the run directory's ``studies.json``, atomically."""
    rd = Path(spec.run_dir)
    rd.mkdir(parents=True, exist_ok=True)
    file = rd / STUDIES
    try:
        known = json.loads(file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        known = {}
    entry = asdict(Membership(study, path, mode, raw, spec.variant, spec.variant_index,
                              spec.change, spec.seed))
    if known.get(study) != entry:
        known[study] = entry
        atomic_write(file, json.dumps(known, indent=2) + "\n")


def _memberships(run_dir: Path) -> list[Membership]:
    try:
        data = json.loads((run_dir / STUDIES).read_text())
    except FileNotFoundError:
        return []
    except json.JSONDecodeError as exc:
        raise AblateError(f"{run_dir / STUDIES}: not valid JSON ({exc}); delete the file to "
                          f"leave the run out of the rebuilt database") from None
    return [Membership(**entry) for entry in data.values()]


def rebuild(runs_dir: Path, url: str) -> tuple[int, int]:
    """Fill a new database at ``url`` from the run directories under ``runs_dir``; the
    number of studies and runs it holds. An existing database is never overwritten."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise AblateError(f"--runs-dir {runs_dir}: no such directory")
    if url.startswith("sqlite:///") and Path(url[len("sqlite:///"):]).exists():
        raise AblateError(f"--db {url}: already exists; rebuild into a new file and "
                          f"replace the old one yourself")
    by_study: dict[str, list[tuple[Membership, RunSpec]]] = {}
    dirs = sorted(p for p in runs_dir.iterdir() if (p / STUDIES).exists())
    for run_dir in dirs:
        spec = _spec(run_dir)
        for m in _memberships(run_dir):
            by_study.setdefault(m.study, []).append((m, spec))
    store = Store(url)
    try:
        if not store.postgres and store.study_names():
            raise AblateError(f"--db {url}: already holds studies; rebuild into a new one")
        for name, members in sorted(by_study.items()):
            members.sort(key=lambda ms: (ms[0].variant_index, ms[0].seed))
            first = members[0][0]
            store.register_study(name, first.path, first.mode, first.spec,
                                 [_linked(spec, m) for m, spec in members])
        hashes = _ingest_all(store, dirs)
    finally:
        store.close()
    return len(by_study), hashes


def _spec(run_dir: Path) -> RunSpec:
    """The run as planned, from ``run.yaml`` (its config) and ``config.json`` (hash)."""
    rd = RunDir(run_dir)
    try:
        config = yaml.safe_load((run_dir / RUN_CONFIG).read_text())
    except FileNotFoundError:
        raise AblateError(f"{run_dir / RUN_CONFIG}: missing; a run directory made by "
                          f"'ablate run' holds it") from None
    from ablate.study.spec import effective_model

    if config.get("imports"):  # the snapshot's paths, written for the trainer; the plan's
        config["imports"] = []  # config has none (the study imports its plugins)
    return RunSpec(variant="", variant_index=0, change="", seed=int(config.get("seed", 0)),
                   hash=run_dir.name, config=config, run_dir=str(run_dir.resolve()),
                   nproc=_world_size(rd), nproc_per_node=1, nnodes=1,
                   epochs=int(config["epochs"]), model=effective_model(config))


def _world_size(rd: RunDir) -> int:
    cfg = rd.config()
    return int((cfg.env if cfg else {}).get("world_size") or 1)


def _linked(spec: RunSpec, m: Membership) -> RunSpec:
    from dataclasses import replace

    return replace(spec, variant=m.variant, variant_index=m.variant_index, change=m.change,
                   seed=m.seed)


def _ingest_all(store: Store, dirs: Iterable[Path]) -> int:
    """Each run's metrics and result, and its status: succeeded or failed as its result
    says, interrupted when it trained epochs without a result, queued when it never began."""
    n = 0
    for run_dir in dirs:
        result = store.ingest(run_dir.name, run_dir)
        epochs = RunDir(run_dir).metrics()
        if result is not None:
            status = Status.succeeded if result.succeeded else Status.failed
            error = result.error
        else:
            status, error = (Status.interrupted if epochs else Status.queued), None
        store.set_status(run_dir.name, status, error)
        n += 1
    return n
