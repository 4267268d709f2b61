"""The results database's schema: SQLAlchemy 2.0 declarative models, its version, and the
settings of every SQLite connection.

A database records the version of the schema that made it (:data:`SCHEMA_VERSION`, table
``ablate_schema``). A database of another version is not migrated by hand-written code:
it is rebuilt from the run directories, the source of truth (``ablate db rebuild``).
"""

from __future__ import annotations

import enum
import os
import sqlite3
import time
from datetime import UTC, datetime
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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: The schema this code reads and writes. 1: the first versioned schema (study, study_run,
#: run with job and model columns, metric, result).
SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Status(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"
    lost = "lost"
    #: Its scheduler job was cancelled by a person (scancel); resumed by the next run.
    cancelled = "cancelled"


def default_url() -> str:
    return os.environ.get("ABLATE_DB", "sqlite:///results.db")


#: Seconds a connection waits for another to finish writing (SQLite's busy timeout).
BUSY_TIMEOUT_S = 30


def sqlite_setup(conn: sqlite3.Connection, readonly: bool = False,
                 busy_timeout: float = BUSY_TIMEOUT_S) -> None:
    """The settings of every connection to a results database in SQLite (Store's and the
    reader's): wait, don't fail, while another writes; WAL, so that readers never block
    the writer; foreign keys on. A ``readonly`` connection (status, show, report, a dry
    run) only waits: switching the journal mode is a write, which a read-only file or
    directory refuses, and a database made by ``ablate run`` is in WAL mode already.

    Switching a new file to WAL is the one step SQLite does not wait for: when two
    connections switch it at the same moment (two orchestrators starting together on a
    new database), one gets "database is locked" at once, busy timeout or not. It is
    retried until the other's switch is done."""
    conn.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
    if readonly:
        return
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")


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
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: The model the run really trains (its config's model after model-selecting tricks),
    #: recorded when it is registered, so a report needs no trick registry (torch) to name it.
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)


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


class AttemptRow(Base):
    """One ended attempt at a run: how it ended and why (the run row keeps the last one).

    Added to schema version 1 without a new version: a writer creates the table in a
    database that lacks it, and readers of such a database see no attempts. Nothing else
    of version 1 changed, so older databases stay readable as they are."""

    __tablename__ = "attempt"
    __table_args__ = (UniqueConstraint("run_hash", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_hash: Mapped[str] = mapped_column(ForeignKey("run.hash", ondelete="CASCADE"),
                                          index=True)
    #: 1 for the first claim of the run, as ``run.attempts`` counts them.
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[Status] = mapped_column(Enum(Status, native_enum=False, length=20))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RunCodeRow(Base):
    """The code part of a run's identity: the config's hash and the fingerprint of each
    component's code (``zoo.fingerprint``), so that runs of one config trained by other
    code can be found (a report says when they exist).

    Added to schema version 1 without a new version, as :class:`AttemptRow` was: a writer
    creates the table in a database that lacks it; readers of such a database see none."""

    __tablename__ = "run_code"

    run_hash: Mapped[str] = mapped_column(ForeignKey("run.hash", ondelete="CASCADE"),
                                          primary_key=True)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    #: Component -> fingerprint.
    code: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The training loop's fingerprint, once the trainer recorded it (not in the hash).
    core: Mapped[str | None] = mapped_column(String(64), nullable=True)


#: Tables added to schema version 1 after it was first written (see AttemptRow).
ADDED_TABLES = (AttemptRow, RunCodeRow)


class SchemaRow(Base):
    """The version of the schema that made the database (one row)."""

    __tablename__ = "ablate_schema"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
