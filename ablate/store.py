"""The results database: SQLAlchemy 2.0 models and the operations the orchestrator needs.

``sqlite:///results.db`` by default; any SQLAlchemy URL works. Runs are keyed by the
content hash of their resolved config and shared between studies (a config trained for
one study is reused by every other). The run directory stays the source of truth: the
database is an index over run directories and can be rebuilt from them (``ingest``).

Claiming a run is atomic, so orchestrators on many machines sharing one database never
train the same run: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` picks the next
claimable run no other transaction holds; on SQLite (one writer at a time) a conditional
``UPDATE ... WHERE status IN (claimable)`` decides. The schema is created on first use;
nullable columns added by later versions are added to an older database when a writer
(``ablate run``) opens it; readers leave it as it is and do without them. The commands
that only read a SQLite file (``ablate status``, ``ablate report``) read it without
SQLAlchemy, through :mod:`ablate.store_lite`: the same rows, without its start-up.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    sessionmaker,
    undefer,
)

from ablate.errors import AblateError
from ablate.store_lite import (  # defined without SQLAlchemy
    RUN_FIELDS,
    Execute,
    Status,
    default_url,
    read_mark_lost,
    read_metric_values,
    read_report_runs,
    read_studies_runs,
    sqlite_setup,
    utcnow,
)

#: Statuses a new orchestrator may claim (failed only with --retry-failed).
CLAIMABLE = (Status.queued, Status.interrupted, Status.lost)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class StudyRow(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    path: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(20))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class StudyRunRow(Base):
    """One (variant, seed) of a study, pointing at the run that trains its config."""

    __tablename__ = "study_run"
    __table_args__ = (UniqueConstraint("study_id", "variant", "seed"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    variant: Mapped[str] = mapped_column(String(200))
    variant_index: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(Integer)
    run_hash: Mapped[str] = mapped_column(ForeignKey("run.hash"), index=True)


class RunRow(Base):
    __tablename__ = "run"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[Status] = mapped_column(Enum(Status, native_enum=False, length=20),
                                           index=True)
    run_dir: Mapped[str] = mapped_column(Text)
    nproc: Mapped[int] = mapped_column(Integer, default=1)
    epochs: Mapped[int] = mapped_column(Integer)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    top1: Mapped[float | None] = mapped_column(Float, nullable=True)
    images_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    code_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_dirty: Mapped[bool | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_tail: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: The scheduler's job id and its last known state (SLURM backend; None locally).
    #: Deferred: readers of a database from before them load runs without them.
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True, deferred=True)
    job_state: Mapped[str | None] = mapped_column(String(32), nullable=True, deferred=True)
    #: The model the run really trains (its config's model after model-selecting tricks),
    #: recorded when it is registered, so a report needs no trick registry (torch) to name
    #: it. Deferred, as the job columns; None in a database from before it.
    model: Mapped[str | None] = mapped_column(String(200), nullable=True, deferred=True)


class MetricRow(Base):
    __tablename__ = "metric"
    __table_args__ = (UniqueConstraint("run_hash", "epoch", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_hash: Mapped[str] = mapped_column(ForeignKey("run.hash", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


Index("ix_metric_run_epoch", MetricRow.run_hash, MetricRow.epoch)


class ResultRow(Base):
    __tablename__ = "result"

    run_hash: Mapped[str] = mapped_column(ForeignKey("run.hash", ondelete="CASCADE"),
                                          primary_key=True)
    top1: Mapped[float | None] = mapped_column(Float, nullable=True)
    top5: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_top1: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_top5: Mapped[float | None] = mapped_column(Float, nullable=True)
    params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    macs: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # > 2**31 at 224 px
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    device_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    images_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    world_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    audit: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    env: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


METRIC_KEYS = ("train_loss", "lr", "val_loss", "top1", "top5", "eval_images", "images_per_s",
               "train_seconds", "seconds", "grad_scale")


# --------------------------------------------------------------------------- connection


#: Key of the PostgreSQL advisory lock that serialises schema changes and study
#: registration between orchestrators starting at the same moment.
_PG_LOCK = 0x61626C61


def _pg_lock(conn: Connection | Session) -> None:
    """Hold PostgreSQL's advisory lock until the current transaction ends."""
    conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK)))


def _add_missing_columns(conn: Connection) -> None:
    """Add nullable columns that a newer version defines to an older database's tables."""
    insp = inspect(conn)
    tables = set(insp.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in tables:
            continue
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have and col.nullable:
                kind = col.type.compile(dialect=conn.dialect)
                conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{col.name}" {kind}'))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Python's sqlite3 opens a transaction only before an INSERT/UPDATE/DELETE, so a
    # session's SELECTs would read outside it and two orchestrators could both see "no
    # such row" and both insert it. Take over: SQLAlchemy's "begin" event emits BEGIN.
    dbapi_conn.isolation_level = None
    sqlite_setup(dbapi_conn)


class Store:
    """A connection to the results database and the operations on it."""

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
            self.engine: Engine = create_engine(url, future=True, **kwargs)
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
                if self.postgres:
                    _pg_lock(conn)  # orchestrators starting together create it once
                tables = set(inspect(conn).get_table_names())
                if create:
                    Base.metadata.create_all(conn)
                    _add_missing_columns(conn)
                elif not {"study", "run"} <= tables:  # readers never write the schema
                    raise AblateError(f"--db {self.url}: not an ablate results database "
                                      f"(no study/run tables); check the URL")
                run_columns = {c["name"] for c in inspect(conn).get_columns("run")}
        except AblateError:
            raise
        except Exception as exc:  # unreachable server, wrong password, no such database
            raise AblateError(f"--db {self.url}: cannot open it: "
                              f"{str(exc).splitlines()[0]}") from None
        #: Whether the run table has the job columns (a reader of an older one: no).
        self.has_jobs = {"job_id", "job_state"} <= run_columns
        #: Whether the run table has the model column (a reader of an older one: no).
        self.has_model = "model" in run_columns
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _with_jobs(self, query: Any) -> Any:
        """``query`` loading the deferred job columns too, where the table has them."""
        if not self.has_jobs:
            return query
        return query.options(undefer(RunRow.job_id), undefer(RunRow.job_state))

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
                       runs: Sequence[dict[str, Any]]) -> None:
        """Create or update the study and its (variant, seed) links; add missing runs as queued.

        ``runs``: dicts with variant, variant_index, change, seed, hash, config, run_dir,
        nproc, epochs and optionally model. An existing run (any study) keeps its status and
        results, and gets its model if it had none (a database from before the column).
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
            hashes = {r["hash"] for r in runs}
            existing = set(s.scalars(select(RunRow.hash).where(RunRow.hash.in_(hashes))))
            models = {r["hash"]: r["model"] for r in runs if r.get("model")}
            for r in runs:
                if r["hash"] not in existing:
                    s.add(RunRow(hash=r["hash"], config=r["config"], status=Status.queued,
                                 run_dir=r["run_dir"], nproc=r["nproc"], epochs=r["epochs"],
                                 model=r.get("model")))
                    existing.add(r["hash"])
            s.flush()
            if models and self.has_model:
                run = RunRow.__table__.c
                s.execute(update(RunRow.__table__)
                          .where(run.hash == bindparam("h"), run.model.is_(None))
                          .values(model=bindparam("m")),
                          [{"h": h, "m": m} for h, m in models.items()])
            s.execute(delete(StudyRunRow).where(StudyRunRow.study_id == study.id))
            for r in runs:
                s.add(StudyRunRow(study_id=study.id, variant=r["variant"],
                                  variant_index=r["variant_index"], change=r["change"],
                                  seed=r["seed"], run_hash=r["hash"]))

    def study_names(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(StudyRow.name).order_by(StudyRow.name)))

    def study_runs(self, name: str) -> list[dict[str, Any]]:
        """One plain dict per (variant, seed) with its run's state; ORM objects stay here."""
        return self.studies_runs([name])[name]

    def studies_runs(self, names: Sequence[str] | None = None
                     ) -> dict[str, list[dict[str, Any]]]:
        """:meth:`study_runs` of each named study (default: every study, by name), in one
        query (:func:`ablate.store_lite.read_studies_runs`)."""
        with self.session() as s:
            return read_studies_runs(_execute_in(s), names, self.has_jobs)

    @staticmethod
    def study_names_in(s: Session) -> list[str]:
        return list(s.scalars(select(StudyRow.name)))

    def report_runs(self, names: Sequence[str] | None = None
                    ) -> tuple[dict[str, tuple[int, str, Any]], list[tuple[Any, ...]]]:
        """What a report reads, in one transaction
        (:func:`ablate.store_lite.read_report_runs`)."""
        with self.session() as s:
            return read_report_runs(_execute_in(s), names, self.has_model)

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
        if not hashes or not self.has_jobs:
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

    def mark_lost(self, older_than: timedelta) -> list[str]:
        """Running runs whose owner stopped beating become ``lost`` (resumable), by the
        clock the heartbeats were written with (:meth:`_now`)."""
        with self.session() as s:
            now = s.scalar(select(self._now())) if self.postgres else None
            return read_mark_lost(_execute_in(s), older_than, now)

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
            runs = list(s.scalars(self._with_jobs(
                select(RunRow).where(RunRow.hash.startswith(prefix)).limit(3))))
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
        with self.session() as s:
            return read_metric_values(_execute_in(s), hashes, key)

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

    def ingest(self, run_hash: str, run_dir: Path) -> dict[str, Any] | None:
        """Mirror a run directory into the database: its metrics (exactly the epochs the
        file holds, so a resume that truncated them leaves no stale rows), progress, and,
        once written, its result. Returns the result.json contents, if any."""
        run_dir = Path(run_dir)
        rows = _read_jsonl(run_dir / "metrics.jsonl")
        result = _read_json(run_dir / "result.json")
        config = _read_json(run_dir / "config.json")
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
                    run.code_commit = (config.get("code") or {}).get("commit")
                    run.code_dirty = (config.get("code") or {}).get("dirty")
            if result is not None and result.get("status") == "succeeded":
                s.merge(ResultRow(
                    run_hash=run_hash,
                    top1=result["final"]["top1"], top5=result["final"]["top5"],
                    best_top1=result["best"]["top1"], best_top5=result["best"]["top5"],
                    params=result["params"], macs=result["macs"],
                    seconds=result["wall_seconds"], device_hours=result["device_hours"],
                    images_per_s=result["images_per_s"], world_size=result["world_size"],
                    audit=result.get("audit"), env=(config or {}).get("env"),
                ))
        return result


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: a line being written (no newline yet) is left for next time."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.split("\n")[:-1]:
        if line.strip():
            rows.append(json.loads(line))
    return rows


#: A run's fields for a person or a program, in this order (then job_id and job_state,
#: deferred: absent from an older database).
_RUN_COLUMNS = tuple(getattr(RunRow, name) for name in RUN_FIELDS)


def _run_fields(run: RunRow) -> dict[str, Any]:
    out = {c.key: getattr(run, c.key) for c in _RUN_COLUMNS}
    out["status"] = str(run.status)
    # Read without loading: absent (None) where the query did not undefer them.
    out["job_id"] = inspect(run).dict.get("job_id")
    out["job_state"] = inspect(run).dict.get("job_state")
    return out


def _execute_in(s: Session) -> Execute:
    """An :data:`ablate.store_lite.Execute` in session ``s``: the shared SQL of the reads,
    its timestamp parameters bound as SQLAlchemy's DateTime (stored as the ORM stores
    them)."""
    def execute(sql: str, params: dict[str, Any]) -> Any:
        stmt = text(sql).bindparams(*(bindparam(k, type_=DateTime()) for k, v in params.items()
                                      if isinstance(v, datetime)))
        return s.execute(stmt, params)

    return execute
