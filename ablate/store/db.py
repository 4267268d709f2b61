"""The results database: the operations of the orchestrator (writes) and of status, show
and report (reads), through SQLAlchemy; the schema is :mod:`ablate.store.schema`.

``sqlite:///results.db`` by default; any SQLAlchemy URL works. Runs are keyed by the
content hash of their resolved config and shared between studies (a config trained for
one study is reused by every other). The run directory stays the source of truth: the
database is an index over run directories, mirrored from them (:meth:`Store.ingest`) and
rebuilt from them (:mod:`ablate.store.rebuild`).

Claiming a run is atomic, so orchestrators on many machines sharing one database never
train the same run: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` picks the next
claimable run no other transaction holds; on SQLite (one writer at a time) a conditional
``UPDATE ... WHERE status IN (claimable)`` decides. The schema is created on first use; a
database of another schema version is an error naming ``ablate db rebuild``. Reads are
SQLAlchemy Core selects of columns (ORM objects cost ten times more on 10,000 runs) into
frozen dataclasses (:class:`RunState`, :class:`ReportRun`).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Text,
    case,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from ablate.errors import AblateError
from ablate.store.schema import (
    SCHEMA_VERSION,
    Base,
    MetricRow,
    ResultRow,
    RunRow,
    SchemaRow,
    Status,
    StudyRow,
    StudyRunRow,
    default_url,
    sqlite_setup,
    utcnow,
)
from ablate.study.spec import RunSpec
from zoo.contract import METRIC_KEYS, RunDir, RunResult
from zoo.errors import did_you_mean

#: Statuses a new orchestrator may claim (failed only with --retry-failed).
CLAIMABLE = (Status.queued, Status.interrupted, Status.lost)


# --------------------------------------------------------------------------- connection


#: Key of the PostgreSQL advisory lock that serialises schema changes and study
#: registration between orchestrators starting at the same moment.
_PG_LOCK = 0x61626C61


def _pg_lock(conn: Connection | Session) -> None:
    """Hold PostgreSQL's advisory lock until the current transaction ends."""
    conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK)))


def _schema_version(conn: Connection, tables: set[str]) -> int:
    """The schema version a database records (0: one from before versions)."""
    if SchemaRow.__tablename__ not in tables:
        return 0
    return conn.scalar(select(func.max(SchemaRow.version))) or 0


#: The run columns a status reads, in this order (:class:`RunState`).
RUN_FIELDS = ("hash", "status", "run_dir", "epochs", "epochs_done", "top1", "images_per_s",
              "host", "owner", "attempts", "error", "log_tail", "code_commit", "code_dirty",
              "started_at", "finished_at", "heartbeat_at", "nproc", "job_id", "job_state")


@dataclass(frozen=True)
class StudyRun:
    """One (variant, seed) of a study: the run that trains it and where that run stands."""

    variant: str
    variant_index: int
    change: str
    seed: int
    hash: str
    status: str


@dataclass(frozen=True)
class RunState(StudyRun):
    """A :class:`StudyRun` with its progress and bookkeeping: what a status shows."""

    run_dir: str
    epochs: int
    epochs_done: int
    top1: float | None
    images_per_s: float | None
    host: str | None
    owner: str | None
    attempts: int
    error: str | None
    log_tail: str | None
    code_commit: str | None
    code_dirty: bool | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    nproc: int
    job_id: str | None
    job_state: str | None


@dataclass(frozen=True)
class StudyInfo:
    """A study as registered: its id, mode and study file (as written, unexpanded)."""

    id: int
    mode: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class ReportRun(StudyRun):
    """A :class:`StudyRun` with its run's config and result: what a report reads. The
    JSON columns come as the driver gives them: text from SQLite, decoded where used (a
    report decodes one config per variant, not 10,000)."""

    config_json: Any = field(repr=False)
    nproc: int
    code_commit: str | None
    code_dirty: bool | None
    top1: float | None
    top5: float | None
    params: int | None
    macs: int | None
    world_size: int | None
    device_hours: float | None
    env_json: Any
    model: str | None
    study_id: int


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Python's sqlite3 opens a transaction only before an INSERT/UPDATE/DELETE, so a
    # session's SELECTs would read outside it and two orchestrators could both see "no
    # such row" and both insert it. Take over: SQLAlchemy's "begin" event emits BEGIN.
    dbapi_conn.isolation_level = None
    sqlite_setup(dbapi_conn)


class Store:
    """A connection to the results database and the operations on it: the one database
    layer of ablate, for the orchestrator (writes) and for status, show and report (reads,
    ``create=False``, which never write)."""

    def __init__(self, url: str | None = None, create: bool = True) -> None:
        self.url = url or default_url()
        if self.url.startswith("sqlite:///"):
            db_path = Path(self.url[len("sqlite:///"):])
            if not create and not db_path.exists():
                raise AblateError(f"{db_path}: no results database here; run 'ablate run' "
                                  f"first or pass --db URL")
            if db_path.parent and not db_path.parent.exists():
                raise AblateError(f"--db {self.url}: directory {db_path.parent} does not exist")
        url = self.url
        if url.startswith(("postgresql://", "postgres://")):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; ablate installs psycopg 3.
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        try:
            kwargs: dict[str, Any] = {}
            if not url.startswith("sqlite"):
                kwargs["pool_pre_ping"] = True  # long studies outlive idle connections
            self.engine: Engine = create_engine(url, **kwargs)
        except Exception as exc:  # bad URL or missing driver
            raise AblateError(f"--db {self.url}: {exc}") from None
        self.postgres = self.engine.dialect.name == "postgresql"
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # A writer takes SQLite's one write lock when its transaction starts (waiting
            # up to busy_timeout), so read-then-write sessions are serialised whole; a
            # reader (status, report) starts a deferred one and never blocks anybody.
            begin = "BEGIN IMMEDIATE" if create else "BEGIN"
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        try:
            with self.engine.begin() as conn:
                if self.postgres and create:
                    _pg_lock(conn)  # orchestrators starting together create it once
                tables = set(inspect(conn).get_table_names())
                if not {"study", "run"} <= tables:
                    if not create:  # readers never write the schema
                        raise AblateError(f"--db {self.url}: not an ablate results database "
                                          f"(no study/run tables); check the URL")
                    if tables & {t.name for t in Base.metadata.sorted_tables}:
                        raise AblateError(f"--db {self.url}: holds some of ablate's tables "
                                          f"but not all; check the URL")
                    Base.metadata.create_all(conn)
                    conn.execute(SchemaRow.__table__.insert().values(version=SCHEMA_VERSION))
                    tables = set(inspect(conn).get_table_names())
                version = _schema_version(conn, tables)
        except AblateError:
            raise
        except Exception as exc:  # unreachable server, wrong password, no such database
            raise AblateError(f"--db {self.url}: cannot open it: "
                              f"{str(exc).splitlines()[0]}") from None
        if version != SCHEMA_VERSION:
            age = "an older" if version < SCHEMA_VERSION else "a newer"
            raise AblateError(
                f"--db {self.url}: made by {age} ablate (schema version {version}, this one "
                f"reads {SCHEMA_VERSION}); rebuild it from the run directories: "
                f"ablate db rebuild --runs-dir runs --db NEW_URL")
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    def close(self) -> None:
        self.engine.dispose()

    @property
    def display_url(self) -> str:
        """The URL as messages show it (a password hidden)."""
        return str(self.engine.url)

    # ------------------------------------------------------------------ studies

    def register_study(self, name: str, path: str, mode: str, spec: dict[str, Any],
                       runs: Sequence[RunSpec]) -> None:
        """Create or update the study and its (variant, seed) links; add missing runs as queued.

        An existing run (any study) keeps its status and results.
        """
        with self.session() as s:
            if self.postgres:
                _pg_lock(s)  # two orchestrators registering one study at once
            study = s.scalar(select(StudyRow).where(StudyRow.name == name))
            if study is None:
                study = StudyRow(name=name, path=path, mode=mode, spec=spec)
                s.add(study)
                s.flush()
            else:
                study.path, study.mode, study.spec = path, mode, spec
            hashes = {r.hash for r in runs}
            existing = set(s.scalars(select(RunRow.hash).where(RunRow.hash.in_(hashes))))
            for r in runs:
                if r.hash not in existing:
                    s.add(RunRow(hash=r.hash, config=r.config, status=Status.queued,
                                 run_dir=r.run_dir, nproc=r.nproc, epochs=r.epochs,
                                 model=r.model))
                    existing.add(r.hash)
            s.flush()
            s.execute(delete(StudyRunRow).where(StudyRunRow.study_id == study.id))
            for r in runs:
                s.add(StudyRunRow(study_id=study.id, variant=r.variant,
                                  variant_index=r.variant_index, change=r.change,
                                  seed=r.seed, run_hash=r.hash))

    def study_names(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(StudyRow.name).order_by(StudyRow.name)))

    def study_runs(self, name: str, lost_after: timedelta | None = None) -> list[RunState]:
        """Each (variant, seed) of a study with its run's state (see :meth:`studies_runs`)."""
        return self.studies_runs([name], lost_after)[name]

    def studies_runs(self, names: Sequence[str] | None = None,
                     lost_after: timedelta | None = None) -> dict[str, list[RunState]]:
        """Each named study's (variant, seed)s with their runs' state (default: every study,
        by name), in one query of columns, not ORM objects, and not the configs (JSON a
        status never shows). With ``lost_after``, a running run whose heartbeat is older
        reads as ``lost``, as the next orchestrator will mark it: computed here, written
        by nobody (a reading command never writes)."""
        run, link = RunRow.__table__.c, StudyRunRow.__table__.c
        with self.session() as s:
            ids = self._study_ids(s, names)
            now = self._read_now(s) if lost_after is not None else None
            query = (select(link.study_id, link.variant, link.variant_index, link.change,
                            link.seed, *(run[c] for c in RUN_FIELDS))
                     .join_from(StudyRunRow.__table__, RunRow.__table__,
                                run.hash == link.run_hash)
                     .order_by(link.study_id, link.variant_index, link.seed))
            if names is not None:
                query = query.where(link.study_id.in_(list(ids.values())))
            rows = s.execute(query).all()
        by_id: dict[int, list[RunState]] = {i: [] for i in ids.values()}
        cutoff = None if now is None or lost_after is None else now - lost_after
        for study_id, *row in rows:
            state = RunState(*row[:5], str(row[5]), *row[6:])
            if (cutoff is not None and state.status == Status.running
                    and state.heartbeat_at is not None and state.heartbeat_at < cutoff):
                assert lost_after is not None
                state = replace(state, status=Status.lost.value,
                                error=f"no heartbeat for {lost_after.total_seconds():.0f}s")
            by_id[study_id].append(state)
        return {n: by_id[i] for n, i in ids.items()}

    @staticmethod
    def _study_ids(s: Session, names: Sequence[str] | None) -> dict[str, int]:
        """The ids of the named studies (default: all, by name); an unknown name is an
        error with the closest known ones."""
        ids = dict(s.execute(select(StudyRow.name, StudyRow.id).order_by(StudyRow.name)).all())
        if names is None:
            return ids
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            if name not in ids:
                known = list(ids)
                raise AblateError(f"unknown study '{name}'{did_you_mean(name, known)}"
                                  + ("" if known else " (the database has no studies yet)"))
        return {n: ids[n] for n in wanted}

    @staticmethod
    def study_names_in(s: Session) -> list[str]:
        return list(s.scalars(select(StudyRow.name)))

    def report_runs(self, names: Sequence[str] | None = None
                    ) -> tuple[dict[str, StudyInfo], list[ReportRun]]:
        """What a report reads, in one transaction: every study by name, and each (variant,
        seed) of the named studies that exist (default: all) with its run's result (None
        fields without one), by study, variant and seed."""
        run, link = RunRow.__table__.c, StudyRunRow.__table__.c
        result, study = ResultRow.__table__.c, StudyRow.__table__.c
        with self.session() as s:
            studies = {name: StudyInfo(i, mode, _decoded(spec)) for i, name, mode, spec in
                       s.execute(select(study.id, study.name, study.mode,
                                        type_coerce(study.spec, Text))
                                 .order_by(study.name))}
            ids = [studies[n].id for n in dict.fromkeys(names or studies) if n in studies]
            if not ids:
                return studies, []
            rows = s.execute(
                select(link.study_id, link.variant, link.variant_index, link.change,
                       link.seed, run.hash, run.status, type_coerce(run.config, Text),
                       run.nproc, run.code_commit, run.code_dirty, result.top1, result.top5,
                       result.params, result.macs, result.world_size, result.device_hours,
                       type_coerce(result.env, Text), run.model)
                .join_from(StudyRunRow.__table__, RunRow.__table__, run.hash == link.run_hash)
                .outerjoin(ResultRow.__table__, result.run_hash == run.hash)
                .where(link.study_id.in_(ids))
                .order_by(link.study_id, link.variant_index, link.seed)).all()
        return studies, [ReportRun(*r[1:6], str(r[6]), *r[7:], study_id=r[0]) for r in rows]

    # ------------------------------------------------------------------ runs

    def claim(self, run_hash: str, owner: str, retry_failed: bool = False) -> bool:
        """Atomically take a claimable run; True if this caller got it."""
        claimable = [*CLAIMABLE, *( [Status.failed] if retry_failed else [])]
        now = self._now()
        with self.session() as s:
            res = s.execute(
                update(RunRow)
                .where(RunRow.hash == run_hash, RunRow.status.in_(claimable))
                .values(status=Status.running, owner=owner, host=socket.gethostname(),
                        started_at=now, heartbeat_at=now, error=None, log_tail=None,
                        job_id=None, job_state=None, attempts=RunRow.attempts + 1)
            )
            return res.rowcount == 1

    def claim_next(self, hashes: Sequence[str], owner: str,
                   retry_failed: bool = False) -> str | None:
        """Atomically take the first claimable run of ``hashes`` (in that order); its hash,
        or None when every one is taken or done.

        PostgreSQL: ``SELECT ... ORDER BY plan order LIMIT 1 FOR UPDATE SKIP LOCKED`` locks
        the first claimable row no other orchestrator is claiming, and skips those being
        claimed instead of waiting for them. SQLite: try each in turn with the conditional
        UPDATE of :meth:`claim` (SQLite has one writer at a time)."""
        hashes = list(dict.fromkeys(hashes))
        if not hashes:
            return None
        if not self.postgres:
            return next((h for h in hashes if self.claim(h, owner, retry_failed)), None)
        claimable = [*CLAIMABLE, *([Status.failed] if retry_failed else [])]
        order = case({h: i for i, h in enumerate(hashes)}, value=RunRow.hash)
        now = self._now()
        with self.session() as s:
            h = s.scalar(select(RunRow.hash)
                         .where(RunRow.hash.in_(hashes), RunRow.status.in_(claimable))
                         .order_by(order).limit(1)
                         .with_for_update(skip_locked=True))
            if h is None:
                return None
            s.execute(update(RunRow).where(RunRow.hash == h)
                      .values(status=Status.running, owner=owner, host=socket.gethostname(),
                              started_at=now, heartbeat_at=now, error=None, log_tail=None,
                              job_id=None, job_state=None, attempts=RunRow.attempts + 1))
            return h

    def stale_jobs(self, hashes: Iterable[str]) -> dict[str, str]:
        """The scheduler job ids recorded for those of ``hashes`` that are ``lost``: jobs an
        orchestrator submitted before it stopped beating, which may still run."""
        hashes = list(hashes)
        if not hashes:
            return {}
        with self.session() as s:
            return dict(s.execute(
                select(RunRow.hash, RunRow.job_id)
                .where(RunRow.hash.in_(hashes), RunRow.status == Status.lost,
                       RunRow.job_id.is_not(None))).all())

    def set_job(self, run_hash: str, owner: str, job_id: str | None,
                job_state: str | None) -> None:
        """Record the scheduler's job id and state of a run this owner holds."""
        with self.session() as s:
            s.execute(update(RunRow).where(RunRow.hash == run_hash, RunRow.owner == owner)
                      .values(job_id=job_id, job_state=job_state))

    def heartbeat(self, hashes: Iterable[str], owner: str) -> None:
        hashes = list(hashes)
        if not hashes:
            return
        with self.session() as s:
            s.execute(update(RunRow)
                      .where(RunRow.hash.in_(hashes), RunRow.owner == owner,
                             RunRow.status == Status.running)
                      .values(heartbeat_at=self._now()))

    def finish(self, run_hash: str, owner: str, status: Status, error: str | None = None,
               log_tail: str | None = None) -> None:
        with self.session() as s:
            s.execute(update(RunRow)
                      .where(RunRow.hash == run_hash, RunRow.owner == owner)
                      .values(status=status, error=error, log_tail=log_tail,
                              finished_at=self._now(), heartbeat_at=self._now()))

    def set_status(self, run_hash: str, status: Status, error: str | None = None) -> None:
        """Set a run's status outright (a rebuild, which has no owner to match)."""
        with self.session() as s:
            s.execute(update(RunRow).where(RunRow.hash == run_hash)
                      .values(status=status, error=error))

    def mark_lost(self, older_than: timedelta) -> list[str]:
        """Running runs whose owner stopped beating become ``lost`` (resumable), by the
        clock the heartbeats were written with (:meth:`_now`). The orchestrator's step; a
        reading command computes the same from the heartbeat's age (:meth:`studies_runs`)."""
        with self.session() as s:
            cutoff = self._read_now(s) - older_than
            which = (RunRow.status == Status.running, RunRow.heartbeat_at < cutoff)
            hashes = list(s.scalars(select(RunRow.hash).where(*which)))
            if hashes:
                s.execute(update(RunRow).where(RunRow.hash.in_(hashes), *which)
                          .values(status=Status.lost,
                                  error=f"no heartbeat for {older_than.total_seconds():.0f}s"))
            return hashes

    def _read_now(self, s: Session) -> datetime:
        """:meth:`now` inside session ``s``."""
        return s.scalar(select(self._now())) if self.postgres else utcnow()  # type: ignore[return-value]

    def now(self) -> datetime:
        """The current time by the clock runs' times are written with (:meth:`_now`)."""
        if not self.postgres:
            return utcnow()
        with self.session() as s:
            return s.scalar(select(self._now()))  # type: ignore[no-any-return]

    def _now(self) -> Any:
        """The time a run's start, heartbeats and end are written in (UTC): the database
        server's clock on PostgreSQL, where orchestrators on several machines judge each
        other's heartbeats and their own clocks may disagree by minutes (one running ahead
        would take the others' live runs for lost and train them again); this machine's
        clock on SQLite, a file on one machine."""
        return func.timezone("UTC", func.now()) if self.postgres else utcnow()

    def run_status(self, hashes: Iterable[str]) -> dict[str, Status]:
        with self.session() as s:
            return dict(s.execute(select(RunRow.hash, RunRow.status)
                                  .where(RunRow.hash.in_(list(hashes)))).all())  # type: ignore[arg-type]

    def find_run(self, prefix: str) -> dict[str, Any]:
        with self.session() as s:
            runs = list(s.scalars(
                select(RunRow).where(RunRow.hash.startswith(prefix)).limit(3)))
            if not runs:
                raise AblateError(f"no run with id '{prefix}' (see 'ablate status')")
            if len(runs) > 1:
                raise AblateError(f"run id '{prefix}' is ambiguous; give more characters")
            run = runs[0]
            links = s.execute(select(StudyRunRow.variant, StudyRunRow.seed, StudyRow.name)
                              .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
                              .where(StudyRunRow.run_hash == run.hash)).all()
            result = s.get(ResultRow, run.hash)
            return {
                **_run_fields(run),
                "config": run.config,
                "studies": [{"study": n, "variant": v, "seed": sd} for v, sd, n in links],
                "result": None if result is None else {
                    c.key: getattr(result, c.key) for c in ResultRow.__table__.columns},
            }

    def metric_values(self, hashes: Iterable[str], key: str
                      ) -> list[tuple[str, int, float | None]]:
        """(run hash, epoch, value) of one metric of the runs, by run and epoch."""
        hashes = list(hashes)
        if not hashes:
            return []
        m = MetricRow.__table__.c
        with self.session() as s:
            return [tuple(r) for r in s.execute(  # type: ignore[misc]
                select(m.run_hash, m.epoch, m.value)
                .where(m.run_hash.in_(hashes), m.key == key)
                .order_by(m.run_hash, m.epoch))]

    def metrics(self, run_hash: str) -> list[dict[str, Any]]:
        """Per-epoch metrics of a run, one dict per epoch."""
        with self.session() as s:
            rows = s.execute(select(MetricRow.epoch, MetricRow.key, MetricRow.value)
                             .where(MetricRow.run_hash == run_hash)
                             .order_by(MetricRow.epoch)).all()
        by_epoch: dict[int, dict[str, Any]] = {}
        for epoch, key, value in rows:
            by_epoch.setdefault(epoch, {"epoch": epoch})[key] = value
        return list(by_epoch.values())

    # ------------------------------------------------------------------ ingest

    def ingest(self, run_hash: str, run_dir: Path) -> RunResult | None:
        """Mirror a run directory into the database: its metrics (exactly the epochs the
        file holds, so a resume that truncated them leaves no stale rows), progress, and,
        once written, its result. Returns the run's result, if it wrote one."""
        rd = RunDir(Path(run_dir))
        rows = [r.to_dict() for r in rd.metrics()]
        result, config = rd.result(), rd.config()
        with self.session() as s:
            have = {(e, k): v for e, k, v in s.execute(
                select(MetricRow.epoch, MetricRow.key, MetricRow.value)
                .where(MetricRow.run_hash == run_hash))}
            want = {(r["epoch"], k): r.get(k) for r in rows for k in METRIC_KEYS if k in r}
            stale = [key for key in have if key not in want]
            if stale:
                epochs = sorted({e for e, _ in stale})
                s.execute(delete(MetricRow).where(MetricRow.run_hash == run_hash,
                                                  MetricRow.epoch.in_(epochs)))
                have = {k: v for k, v in have.items() if k[0] not in epochs}
            for (epoch, key), value in want.items():
                if (epoch, key) not in have:
                    s.add(MetricRow(run_hash=run_hash, epoch=epoch, key=key,
                                    value=None if value is None else float(value)))
                elif have[(epoch, key)] != value:
                    s.execute(update(MetricRow)
                              .where(MetricRow.run_hash == run_hash, MetricRow.epoch == epoch,
                                     MetricRow.key == key).values(value=value))
            run = s.get(RunRow, run_hash)
            if run is not None:
                run.epochs_done = rows[-1]["epoch"] if rows else 0
                run.top1 = rows[-1]["top1"] if rows else None
                run.images_per_s = rows[-1].get("images_per_s") if rows else None
                if config:
                    run.code_commit, run.code_dirty = config.code.commit, config.code.dirty
            if result is not None and result.succeeded:
                s.merge(ResultRow(
                    run_hash=run_hash,
                    top1=result.final.top1, top5=result.final.top5,
                    best_top1=result.best.top1, best_top5=result.best.top5,
                    params=result.params, macs=result.macs,
                    seconds=result.wall_seconds, device_hours=result.device_hours,
                    images_per_s=result.images_per_s, world_size=result.world_size,
                    audit=[a.to_dict() for a in result.audit],
                    env=config.env if config else None,
                ))
        return result


def _run_fields(run: RunRow) -> dict[str, Any]:
    out = {name: getattr(run, name) for name in RUN_FIELDS}
    out["status"] = str(run.status)
    return out


def _decoded(value: Any) -> Any:
    """A JSON column's value from its text (or as the driver already decoded it)."""
    return json.loads(value) if isinstance(value, str) else value
