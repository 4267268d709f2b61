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
import os
import socket
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Text,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    inspect,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ablate.errors import AblateError
from ablate.store.schema import (
    ADDED_TABLES,
    BUSY_TIMEOUT_S,
    SCHEMA_VERSION,
    AttemptRow,
    Base,
    MetricRow,
    ResultRow,
    RunCodeRow,
    RunRow,
    SchemaRow,
    Status,
    StudyRow,
    StudyRunRow,
    default_url,
    sqlite_setup,
    utcnow,
)
from zoo.contract import METRIC_KEYS, RunDir, RunResult
from zoo.errors import did_you_mean

if TYPE_CHECKING:
    from ablate.study.spec import RunSpec

#: Statuses a new orchestrator may claim (failed only with --retry-failed).
CLAIMABLE = (Status.queued, Status.interrupted, Status.lost, Status.cancelled)


def is_transient(exc: BaseException) -> bool:
    """Whether a database error will likely pass if the same operation is tried again:
    SQLite's "database is locked" / "busy" (another process held the write lock past the
    busy timeout), or a PostgreSQL connection that dropped. The orchestrator retries
    these with backoff; any other error is a fault."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | sqlite3.OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text
    return False


def owner_dead(owner: str | None, host: str | None = None) -> bool:
    """Whether ``owner`` (``host:pid:tag``, as an orchestrator names itself) is a process
    of this host that exists no more: its runs are lost at once, not after ``--lost-after``
    seconds without a heartbeat. Owners on other hosts (and unknown ones) are not judged
    here. A pid reused by another process reads as alive: the heartbeat's age still
    catches that orchestrator."""
    if not owner:
        return False
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    if parts[0] != (host or socket.gethostname()):
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


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


def _sqlite_pragmas(readonly: bool, busy_timeout: float) -> Any:
    def setup(dbapi_conn: Any, _record: Any) -> None:
        # Python's sqlite3 opens a transaction only before an INSERT/UPDATE/DELETE, so a
        # session's SELECTs would read outside it and two orchestrators could both see "no
        # such row" and both insert it. Take over: SQLAlchemy's "begin" event emits BEGIN.
        dbapi_conn.isolation_level = None
        sqlite_setup(dbapi_conn, readonly=readonly, busy_timeout=busy_timeout)
    return setup


def _connect_readonly(db_path: Path) -> sqlite3.Connection:
    """A connection that never writes the database (URI ``mode=ro``).

    A WAL database also needs its ``-shm`` index file, which a reader creates when it is
    missing: in a read-only directory it cannot, and SQLite refuses to read. Then, and only
    when no ``-wal`` file exists either, the file is opened ``immutable=1`` (no locking, no
    index): no writer can be using it, since a writer must create that ``-wal`` file in this
    directory first (only root could, and ``ablate run`` as root beside a reader in a
    read-only directory is not a case worth locks)."""
    from urllib.request import pathname2url  # here: http.client and email come with it

    uri = f"file:{pathname2url(str(db_path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if Path(f"{db_path}-wal").exists() or os.access(db_path.parent, os.W_OK):
            raise
    return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)


def _check_writable(db_path: Path) -> None:
    """``ablate run`` writes the database, and SQLite in WAL mode writes files beside it:
    say so in one line before anything starts, rather than as SQLite's error mid-study."""
    where = db_path if db_path.exists() else db_path.parent
    folder = db_path.parent if str(db_path.parent) else Path(".")
    for path in dict.fromkeys((where, folder)):
        if not os.access(path, os.W_OK):
            kind = "directory" if path.is_dir() else "file"
            raise AblateError(f"{path}: read-only {kind}; 'ablate run' records results in "
                              f"{db_path}: make it writable or pass --db a writable URL "
                              f"(status, show and report read it as it is)")


class Store:
    """A connection to the results database and the operations on it: the one database
    layer of ablate, for the orchestrator (writes) and for status, show and report (reads,
    ``create=False``, which never write)."""

    def __init__(self, url: str | None = None, create: bool = True,
                 busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        """``create=False``: a reader, which never writes; on SQLite it opens the file
        read-only (``mode=ro``), so a read-only file in a read-only directory reads.
        ``busy_timeout``: seconds a SQLite statement waits for another writer."""
        self.url = url or default_url()
        db_path = self._sqlite_path(create)
        self.engine: Engine = self._engine(db_path, create, busy_timeout)
        self.postgres = self.engine.dialect.name == "postgresql"
        version = self._open_schema(create)
        if version != SCHEMA_VERSION:
            age = "an older" if version < SCHEMA_VERSION else "a newer"
            raise AblateError(
                f"--db {self.url}: made by {age} ablate (schema version {version}, this one "
                f"reads {SCHEMA_VERSION}); rebuild it from the run directories: "
                f"ablate db rebuild --runs-dir runs --db NEW_URL")
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _sqlite_path(self, create: bool) -> Path | None:
        """The SQLite file of the URL (None for a server), checked before it is opened."""
        if not self.url.startswith("sqlite:///"):
            return None
        db_path = Path(self.url[len("sqlite:///"):].split("?", 1)[0])
        if not create and not db_path.exists():
            raise AblateError(f"{db_path}: no results database here; run 'ablate run' "
                              f"first or pass --db URL")
        if db_path.parent and not db_path.parent.exists():
            raise AblateError(f"--db {self.url}: directory {db_path.parent} does not exist")
        if db_path.is_dir():
            raise AblateError(f"--db {self.url}: {db_path} is a directory; give the "
                              f"database file (e.g. sqlite:///{db_path / 'results.db'})")
        if create:
            _check_writable(db_path)
        return db_path

    def _engine(self, db_path: Path | None, create: bool, busy_timeout: float) -> Engine:
        url = self.url
        if url.startswith(("postgresql://", "postgres://")):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; ablate installs psycopg 3.
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        try:
            kwargs: dict[str, Any] = {}
            if not url.startswith("sqlite"):
                kwargs["pool_pre_ping"] = True  # long studies outlive idle connections
            elif db_path is not None and not create:
                kwargs["creator"] = lambda: _connect_readonly(db_path)
                url = "sqlite://"
            engine = create_engine(url, **kwargs)
        except Exception as exc:  # bad URL or missing driver
            raise AblateError(f"--db {self.url}: {exc}") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect",
                         _sqlite_pragmas(readonly=not create, busy_timeout=busy_timeout))
            # A writer takes SQLite's one write lock when its transaction starts (waiting
            # up to busy_timeout), so read-then-write sessions are serialised whole; a
            # reader (status, report) starts a deferred one and never blocks anybody.
            begin = "BEGIN IMMEDIATE" if create else "BEGIN"
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine

    def _open_schema(self, create: bool) -> int:
        """Create the schema in a new database (a writer), add the tables added to version
        1 since; the schema version found."""
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
                for added in ADDED_TABLES:  # see AttemptRow: tables added to version 1
                    if create and version == SCHEMA_VERSION and added.__tablename__ not in tables:
                        added.__table__.create(conn)
                        tables.add(added.__tablename__)
                self.has_attempts = AttemptRow.__tablename__ in tables
                self.has_code = RunCodeRow.__tablename__ in tables
        except AblateError:
            raise
        except Exception as exc:  # unreachable server, wrong password, no such database
            raise AblateError(f"--db {self.url}: cannot open it: "
                              f"{str(exc).splitlines()[0]}") from None
        return version

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    def close(self) -> None:
        self.engine.dispose()

    @property
    def display_url(self) -> str:
        """The URL as messages show it (a password hidden): the one given, not the engine's,
        which for a read-only SQLite reader is a bare ``sqlite://`` with a creator."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    # ------------------------------------------------------------------ studies

    def register_study(self, name: str, path: str, mode: str, spec: dict[str, Any],
                       runs: Sequence[RunSpec]) -> None:
        """Create or update the study and its (variant, seed) links; add missing runs as queued.

        An existing run (any study) keeps its status and results.
        """
        from zoo.config import config_hash  # here: a report or status needs no yaml

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
            if self.has_code:
                coded = set(s.scalars(select(RunCodeRow.run_hash)
                                      .where(RunCodeRow.run_hash.in_(hashes))))
                for r in {r.hash: r for r in runs if r.code and r.hash not in coded}.values():
                    s.add(RunCodeRow(run_hash=r.hash, config_hash=config_hash(r.config),
                                     code=dict(r.code)))
            s.execute(delete(StudyRunRow).where(StudyRunRow.study_id == study.id))
            for r in runs:
                s.add(StudyRunRow(study_id=study.id, variant=r.variant,
                                  variant_index=r.variant_index, change=r.change,
                                  seed=r.seed, run_hash=r.hash))

    def code_versions(self, hashes: Collection[str]) -> tuple[dict[str, str | None], int]:
        """For runs ``hashes``: each one's training-loop fingerprint (where recorded), and
        how many other runs of the same configs were trained by other code."""
        if not self.has_code or not hashes:
            return {}, 0
        code = RunCodeRow.__table__.c
        with self.session() as s:
            rows = s.execute(select(code.run_hash, code.config_hash, code.core)
                             .where(code.run_hash.in_(list(hashes)))).all()
            configs = {r.config_hash for r in rows}
            others = s.scalar(select(func.count()).select_from(RunCodeRow.__table__)
                              .where(code.config_hash.in_(configs),
                                     code.run_hash.not_in(list(hashes)))) if configs else 0
        return {r.run_hash: r.core for r in rows}, int(others or 0)

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
            if state.status == Status.running and (reason := _lost_reason(
                    state.owner, state.heartbeat_at, cutoff, lost_after)) is not None:
                state = replace(state, status=Status.lost.value, error=reason)
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

    def report_runs(self, names: Sequence[str] | None = None,
                    make: Callable[..., ReportRun] = ReportRun
                    ) -> tuple[dict[str, StudyInfo], list[ReportRun]]:
        """What a report reads, in one transaction: every study by name, and each (variant,
        seed) of the named studies that exist (default: all) with its run's result (None
        fields without one), by study, variant and seed; ``make``: the class of those (a
        subclass of :class:`ReportRun` whose other fields have defaults)."""
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
        return studies, [make(*r[1:6], str(r[6]), *r[7:], study_id=r[0]) for r in rows]

    # ------------------------------------------------------------------ runs

    @staticmethod
    def _claimable(retry_failed: bool | Collection[str]) -> Any:
        """The condition on a run row that a claim may take it: a status of
        :data:`CLAIMABLE`, or ``failed`` with ``retry_failed`` (True: any failed run; a
        collection: those of these hashes)."""
        ok = RunRow.status.in_(CLAIMABLE)
        if retry_failed is True:
            return or_(ok, RunRow.status == Status.failed)
        if retry_failed:
            return or_(ok, and_(RunRow.status == Status.failed,
                                RunRow.hash.in_(list(retry_failed))))
        return ok

    def _claim_values(self, owner: str) -> dict[str, Any]:
        now = self._now()
        return dict(status=Status.running, owner=owner, host=socket.gethostname(),
                    started_at=now, heartbeat_at=now, finished_at=None, error=None,
                    log_tail=None, job_id=None, job_state=None, attempts=RunRow.attempts + 1)

    def claim(self, run_hash: str, owner: str,
              retry_failed: bool | Collection[str] = False) -> bool:
        """Atomically take a claimable run; True if this caller got it."""
        with self.session() as s:
            res = s.execute(update(RunRow)
                            .where(RunRow.hash == run_hash, self._claimable(retry_failed))
                            .values(**self._claim_values(owner)))
            return res.rowcount == 1

    def claim_next(self, hashes: Sequence[str], owner: str,
                   retry_failed: bool | Collection[str] = False) -> str | None:
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
        order = case({h: i for i, h in enumerate(hashes)}, value=RunRow.hash)
        with self.session() as s:
            h = s.scalar(select(RunRow.hash)
                         .where(RunRow.hash.in_(hashes), self._claimable(retry_failed))
                         .order_by(order).limit(1)
                         .with_for_update(skip_locked=True))
            if h is None:
                return None
            s.execute(update(RunRow).where(RunRow.hash == h)
                      .values(**self._claim_values(owner)))
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
        """Record how this owner's attempt at a run ended, on the run and in its attempts."""
        with self.session() as s:
            now = self._read_now(s)
            row = s.execute(select(RunRow.attempts, RunRow.host, RunRow.started_at)
                            .where(RunRow.hash == run_hash, RunRow.owner == owner)).first()
            if row is None:
                return  # another orchestrator took the run over meanwhile
            s.execute(update(RunRow)
                      .where(RunRow.hash == run_hash, RunRow.owner == owner)
                      .values(status=status, error=error, log_tail=log_tail,
                              finished_at=now, heartbeat_at=now))
            if self.has_attempts and row.attempts:
                s.merge(self._attempt(s, run_hash, row.attempts, status=status, error=error,
                                      host=row.host, owner=owner, started_at=row.started_at,
                                      finished_at=now))

    @staticmethod
    def _attempt(s: Session, run_hash: str, number: int, **values: Any) -> AttemptRow:
        """The attempt row (run, number), existing or new, with ``values`` set."""
        row = s.scalar(select(AttemptRow).where(AttemptRow.run_hash == run_hash,
                                                AttemptRow.number == number))
        if row is None:
            row = AttemptRow(run_hash=run_hash, number=number)
        for key, value in values.items():
            setattr(row, key, value)
        return row

    def attempts(self, run_hash: str) -> list[dict[str, Any]]:
        """The ended attempts at a run, first first: number, status, error, host, times."""
        if not self.has_attempts:
            return []
        a = AttemptRow.__table__.c
        with self.session() as s:
            rows = s.execute(select(a.number, a.status, a.error, a.host, a.started_at,
                                    a.finished_at)
                             .where(a.run_hash == run_hash).order_by(a.number)).all()
        return [{**r._asdict(), "status": str(r.status)} for r in rows]

    def set_status(self, run_hash: str, status: Status, error: str | None = None) -> None:
        """Set a run's status outright (a rebuild, which has no owner to match)."""
        with self.session() as s:
            s.execute(update(RunRow).where(RunRow.hash == run_hash)
                      .values(status=status, error=error))

    def mark_lost(self, older_than: timedelta) -> list[str]:
        """Running runs whose owner stopped beating become ``lost`` (resumable), by the
        clock the heartbeats were written with (:meth:`_now`); so do, at once, those whose
        owner was a process of this host that exists no more (:func:`owner_dead`). The
        orchestrator's step; a reading command computes the same (:meth:`studies_runs`)."""
        with self.session() as s:
            cutoff = self._read_now(s) - older_than
            running = list(s.execute(select(RunRow.hash, RunRow.owner, RunRow.heartbeat_at,
                                            RunRow.attempts, RunRow.host, RunRow.started_at)
                                     .where(RunRow.status == Status.running)))
            lost: list[str] = []
            for h, owner, beat, attempts, host, started in running:
                reason = _lost_reason(owner, beat, cutoff, older_than)
                if reason is None:
                    continue
                done = s.execute(update(RunRow).where(RunRow.hash == h,
                                                      RunRow.status == Status.running,
                                                      RunRow.owner.is_(owner) if owner is None
                                                      else RunRow.owner == owner)
                                 .values(status=Status.lost, error=reason))
                if done.rowcount:
                    lost.append(h)
                    if self.has_attempts and attempts:
                        s.merge(self._attempt(s, h, attempts, status=Status.lost,
                                              error=reason, host=host, owner=owner,
                                              started_at=started))
            return lost

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

    def succeeded_top1(self, hashes: Iterable[str]) -> dict[str, float]:
        """Final top-1 of those of the runs that succeeded (what planned seeds read)."""
        with self.session() as s:
            return dict(s.execute(  # type: ignore[arg-type]
                select(ResultRow.run_hash, ResultRow.top1)
                .join(RunRow, RunRow.hash == ResultRow.run_hash)
                .where(ResultRow.run_hash.in_(list(hashes)),
                       RunRow.status == Status.succeeded,
                       ResultRow.top1.is_not(None))).all())

    def find_run(self, prefix: str) -> dict[str, Any]:
        with self.session() as s:
            # autoescape: '_' and '%' in the id are characters, not LIKE's wildcards.
            runs = list(s.scalars(
                select(RunRow).where(RunRow.hash.startswith(prefix, autoescape=True))
                .limit(3)))
            if not runs:
                raise AblateError(f"no run with id '{prefix}' (see 'ablate status')")
            if len(runs) > 1:
                raise AblateError(f"run id '{prefix}' is ambiguous; give more characters")
            run = runs[0]
            links = s.execute(select(StudyRunRow.variant, StudyRunRow.seed, StudyRow.name)
                              .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
                              .where(StudyRunRow.run_hash == run.hash)).all()
            result = s.get(ResultRow, run.hash)
            found = {
                **_run_fields(run),
                "config": run.config,
                "studies": [{"study": n, "variant": v, "seed": sd} for v, sd, n in links],
                "result": None if result is None else {
                    c.key: getattr(result, c.key) for c in ResultRow.__table__.columns},
            }
        # Seen from this host: a run whose orchestrator died here reads as lost at once.
        if found["status"] == Status.running and owner_dead(found["owner"]):
            found.update(status=Status.lost.value, error=_lost_reason(found["owner"], None,
                                                                      None, None))
        return {**found, "attempt_history": self.attempts(found["hash"])}

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

    def final_metric_values(self, hashes: Iterable[str], keys: Sequence[str]
                            ) -> list[tuple[str, str, float | None]]:
        """(run hash, key, value) of each of ``keys`` at the runs' last epoch (the run's
        ``epochs_done``): one indexed lookup per run and key, not every epoch."""
        hashes = list(hashes)
        if not hashes or not keys:
            return []
        m, run = MetricRow.__table__.c, RunRow.__table__.c
        with self.session() as s:
            return [tuple(r) for r in s.execute(  # type: ignore[misc]
                select(m.run_hash, m.key, m.value)
                .join_from(MetricRow.__table__, RunRow.__table__,
                           and_(run.hash == m.run_hash, m.epoch == run.epochs_done))
                .where(m.run_hash.in_(hashes), m.key.in_(list(keys))))]

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
                if config and config.code.components and self.has_code and config.config_hash:
                    s.merge(RunCodeRow(run_hash=run_hash, config_hash=config.config_hash,
                                       code=config.code.fingerprints(), core=config.code.core))
            if result is not None and config and config.code.components \
                    and config.hash != run_hash:
                # The trainer's code is not the code the run was planned with.
                result = replace(result, status="failed", retryable=False, error=(
                    f"the code changed after the run was planned (its hash became "
                    f"{config.hash}); run 'ablate run' again to plan it anew"))
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


def _lost_reason(owner: str | None, heartbeat: datetime | None, cutoff: datetime | None,
                 lost_after: timedelta | None) -> str | None:
    """Why a ``running`` run is lost (None: it is not): its owner is a dead process of
    this host, or its heartbeat is older than ``cutoff``."""
    if owner_dead(owner):
        return f"its orchestrator ({owner}) is gone"
    if cutoff is not None and heartbeat is not None and heartbeat < cutoff:
        assert lost_after is not None
        return f"no heartbeat for {lost_after.total_seconds():.0f}s"
    return None


def _run_fields(run: RunRow) -> dict[str, Any]:
    out = {name: getattr(run, name) for name in RUN_FIELDS}
    out["status"] = str(run.status)
    return out


def _decoded(value: Any) -> Any:
    """A JSON column's value from its text (or as the driver already decoded it)."""
    return json.loads(value) if isinstance(value, str) else value
