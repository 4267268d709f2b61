"""The results database without SQLAlchemy, for the commands that only look at it, and
the SQL of those looks.

``ablate status`` and ``ablate report`` read a few tables and print them; importing
SQLAlchemy (and declaring :mod:`ablate.store`'s models) takes them 0.2-0.3 s, more than
the queries themselves on 10,000 runs. Their reads (``read_*`` below) are written once,
as SQL with named parameters that both drivers take: :class:`ablate.store.Store` runs
them through SQLAlchemy (SQLite or PostgreSQL), :class:`SQLiteReader` through the
standard library's sqlite3 on a SQLite file (the default), with the same connection
settings and the same one-line errors. :func:`open_reader` picks one; any URL but a
plain SQLite file gets a ``Store(url, create=False)``.

The few definitions both need (statuses, timestamps, the default URL) live here, so that
:mod:`ablate.store` imports them from this module and not the other way round.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError

if TYPE_CHECKING:
    from ablate.store import Store


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Status(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"
    lost = "lost"


def default_url() -> str:
    return os.environ.get("ABLATE_DB", "sqlite:///results.db")


#: A SQLite file URL that SQLAlchemy reads as it is written: its path is the file name
#: (no %-escapes, no query string) and its URL prints unchanged in messages.
_PLAIN_SQLITE = re.compile(r"sqlite:///[A-Za-z0-9 +\-./_~]+")


def open_reader(url: str | None = None) -> SQLiteReader | Store:
    """The results database for a command that reads it: a :class:`SQLiteReader` for a
    SQLite file, else ``Store(url, create=False)``."""
    url = url or default_url()
    if _PLAIN_SQLITE.fullmatch(url):
        return SQLiteReader(url)
    from ablate.store import Store

    return Store(url, create=False)


#: The run columns a status reads (:func:`read_studies_runs`), then the job columns.
RUN_FIELDS = ("hash", "status", "run_dir", "epochs", "epochs_done", "top1", "images_per_s",
              "host", "owner", "attempts", "error", "log_tail", "code_commit", "code_dirty",
              "started_at", "finished_at", "heartbeat_at", "nproc")
_DATETIMES = ("started_at", "finished_at", "heartbeat_at")


def _sql_datetime(value: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite (text that sorts as time does)."""
    return value.isoformat(sep=" ", timespec="microseconds")


#: Seconds a connection waits for another to finish writing (SQLite's busy timeout).
BUSY_TIMEOUT_S = 30


def sqlite_setup(conn: sqlite3.Connection) -> None:
    """The settings of every connection to a results database in SQLite (Store's and the
    reader's): wait, don't fail, while another writes; WAL, so that readers never block
    the writer; foreign keys on.

    Switching a new file to WAL is the one step SQLite does not wait for: when two
    connections switch it at the same moment (two orchestrators starting together on a
    new database), one gets "database is locked" at once, busy timeout or not. It is
    retried until the other's switch is done."""
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    deadline = time.monotonic() + BUSY_TIMEOUT_S
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


def _cannot_open(url: str, exc: sqlite3.Error) -> AblateError:
    """Store's error for a database it cannot open, the driver's error as SQLAlchemy
    words it."""
    message = f"({type(exc).__module__}.{type(exc).__name__}) {exc}"
    return AblateError(f"--db {url}: cannot open it: {message.splitlines()[0]}")


# --------------------------------------------------------------------------- the reads
#
# The queries that status and report make, written once as SQL with named parameters,
# which both drivers take: Store runs them through SQLAlchemy (SQLite or PostgreSQL),
# SQLiteReader through sqlite3. An ``Execute`` runs one statement and gives its rows;
# values come back as the driver gives them (SQLite: timestamps as text, booleans as
# integers) and are read here into one form.

#: ``execute(sql, params)``: the rows of one statement with ``:name`` parameters.
Execute = Callable[[str, dict[str, Any]], Iterable[Sequence[Any]]]


def _in(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``:p0, :p1, ...`` and their values, for ``IN (...)``."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return ", ".join(f":{n}" for n in names), dict(zip(names, values, strict=True))


def _datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)  # SQLite's text


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)  # SQLite's 0/1


def read_mark_lost(execute: Execute, older_than: timedelta, now: datetime | None = None
                   ) -> list[str]:
    """Running runs whose owner stopped beating for ``older_than`` before ``now`` (default:
    this machine's clock) become ``lost`` (resumable); their hashes."""
    params = {"running": Status.running.value, "cutoff": (now or utcnow()) - older_than}
    hashes = [h for (h,) in execute(
        "SELECT run.hash FROM run WHERE run.status = :running AND run.heartbeat_at < :cutoff",
        params)]
    if hashes:
        among, which = _in("h", hashes)
        execute(f"UPDATE run SET status = :lost, error = :error WHERE run.hash IN ({among}) "
                f"AND run.status = :running AND run.heartbeat_at < :cutoff",
                {**params, **which, "lost": Status.lost.value,
                 "error": f"no heartbeat for {older_than.total_seconds():.0f}s"})
    return hashes


def read_studies_runs(execute: Execute, names: Sequence[str] | None, has_jobs: bool
                      ) -> dict[str, list[dict[str, Any]]]:
    """One dict per (variant, seed) of each named study (default: every study, by name),
    in one query: columns, not ORM objects, and not the configs (JSON a status never
    shows), so 10,000 runs load in a few dozen milliseconds."""
    ids = {name: i for name, i in execute(
        "SELECT study.name, study.id FROM study ORDER BY study.name", {})}
    wanted = list(dict.fromkeys(names)) if names is not None else list(ids)
    for name in wanted:
        if name not in ids:
            from zoo.errors import did_you_mean

            known = list(ids)
            raise AblateError(f"unknown study '{name}'{did_you_mean(name, known)}"
                              + ("" if known else " (the database has no studies yet)"))
    jobs = ("job_id", "job_state") if has_jobs else ()
    columns = ", ".join(f"run.{c}" for c in (*RUN_FIELDS, *jobs))
    where, params = "", {}
    if names is not None:
        among, params = _in("s", [ids[n] for n in wanted])
        where = f"WHERE study_run.study_id IN ({among}) "
    result = execute(
        f"SELECT study_run.study_id, study_run.variant, study_run.variant_index, "
        f"study_run.change, study_run.seed, {columns} FROM study_run JOIN run "
        f"ON run.hash = study_run.run_hash {where}"
        f"ORDER BY study_run.study_id, study_run.variant_index, study_run.seed", params)
    keys = ["variant", "variant_index", "change", "seed", *RUN_FIELDS, *jobs]
    dirty = keys.index("code_dirty")
    times = [keys.index(k) for k in _DATETIMES]
    by_id: dict[int, list[dict[str, Any]]] = {ids[n]: [] for n in wanted}
    for study_id, *row in result:
        row[dirty] = _bool(row[dirty])
        for i in times:
            row[i] = _datetime(row[i])
        r = dict(zip(keys, row, strict=True))
        if not jobs:  # a database from before them
            r["job_id"] = r["job_state"] = None
        by_id[study_id].append(r)
    return {n: by_id[ids[n]] for n in wanted}


def read_report_runs(execute: Execute, names: Sequence[str] | None, has_model: bool
                     ) -> tuple[dict[str, tuple[int, str, Any]], list[tuple[Any, ...]]]:
    """What a report reads: every study by name as (id, mode, spec), and one row per
    (variant, seed) of the named studies that exist (default: all), by study, variant and
    seed: study id, variant, variant index, change, seed, run hash, status, config, nproc,
    code commit, code dirty, then the result's top1, top5, params, macs, world size and
    device hours (None without a result), its env, and the run's model (None in a
    database from before the column).

    The JSON columns come as the driver gives them: text from SQLite (decoded where
    used, four times faster than SQLAlchemy's JSON type), objects from a driver that
    decodes JSON."""
    studies = {name: (i, mode, spec if spec is None or not isinstance(spec, str)
                      else json.loads(spec))
               for i, name, mode, spec in execute(
                   "SELECT study.id, study.name, study.mode, study.spec FROM study "
                   "ORDER BY study.name", {})}
    ids = [studies[n][0] for n in dict.fromkeys(names or studies) if n in studies]
    if not ids:
        return studies, []
    among, params = _in("s", ids)
    model = "run.model" if has_model else "NULL"
    rows = execute(
        "SELECT study_run.study_id, study_run.variant, study_run.variant_index, "
        "study_run.change, study_run.seed, run.hash, run.status, run.config, "
        "run.nproc, run.code_commit, run.code_dirty, result.top1, result.top5, "
        "result.params, result.macs, result.world_size, result.device_hours, "
        f"result.env, {model} FROM study_run JOIN run ON run.hash = "
        "study_run.run_hash LEFT OUTER JOIN result ON result.run_hash = run.hash "
        f"WHERE study_run.study_id IN ({among}) "
        "ORDER BY study_run.study_id, study_run.variant_index, study_run.seed", params)
    return studies, [(*row[:10], _bool(row[10]), *row[11:]) for row in rows]


def read_metric_values(execute: Execute, hashes: Iterable[str], key: str
                       ) -> list[tuple[str, int, float | None]]:
    """(run hash, epoch, value) of one metric of the runs, by run and epoch."""
    among, params = _in("h", list(hashes))
    if not params:
        return []
    return [tuple(row) for row in execute(  # type: ignore[misc]
        f"SELECT metric.run_hash, metric.epoch, metric.value FROM metric "
        f"WHERE metric.run_hash IN ({among}) AND metric.key = :key "
        f"ORDER BY metric.run_hash, metric.epoch", {**params, "key": key})]


class SQLiteReader:
    """The reading side of :class:`ablate.store.Store` on a SQLite file, without
    SQLAlchemy: the same SQL, the same values (timestamps as datetimes, booleans as bools,
    statuses as text where the Store gives its enum's text), the same errors."""

    def __init__(self, url: str) -> None:
        self.url = url
        db_path = Path(url[len("sqlite:///"):])
        # As Store(url, create=False) checks, in its order and words.
        if not db_path.exists():
            raise AblateError(f"{db_path}: no results database here; run 'ablate run' "
                              f"first or pass --db URL")
        if db_path.parent and not db_path.parent.exists():
            raise AblateError(f"--db {self.url}: directory {db_path.parent} does not exist")
        # SQLAlchemy's sqlite driver opens the absolute path; the transactions are ours
        # (isolation_level=None), as ablate.store's connect hook makes them.
        try:
            self._conn = sqlite3.connect(os.path.abspath(db_path), isolation_level=None)
        except sqlite3.Error as exc:
            raise _cannot_open(url, exc) from None
        try:
            sqlite_setup(self._conn)
            with self._transaction() as c:
                tables = {name for (name,) in c.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' "
                    "AND name NOT LIKE 'sqlite~_%' ESCAPE '~'")}
                if not {"study", "run"} <= tables:
                    raise AblateError(f"--db {self.url}: not an ablate results database "
                                      f"(no study/run tables); check the URL")
                run_columns = {row[1] for row in c.execute('PRAGMA table_info("run")')}
        except AblateError:
            self._conn.close()
            raise
        except sqlite3.Error as exc:
            self._conn.close()
            raise _cannot_open(url, exc) from None
        self.has_jobs = {"job_id", "job_state"} <= run_columns
        self.has_model = "model" in run_columns

    @property
    def display_url(self) -> str:
        """The URL as messages show it."""
        return self.url

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One deferred transaction, as a reader's Store session is on SQLite."""
        self._conn.execute("BEGIN")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def _execute(self, sql: str, params: dict[str, Any]) -> Iterable[Sequence[Any]]:
        """An :data:`Execute` on this connection: timestamps as SQLAlchemy stores them."""
        return self._conn.execute(sql, {k: _sql_datetime(v) if isinstance(v, datetime) else v
                                        for k, v in params.items()})

    def now(self) -> datetime:
        """:meth:`ablate.store.Store.now`: a SQLite file's runs carry this machine's time."""
        return utcnow()

    def mark_lost(self, older_than: timedelta) -> list[str]:
        """:meth:`ablate.store.Store.mark_lost`."""
        with self._transaction():
            return read_mark_lost(self._execute, older_than)

    def study_runs(self, name: str) -> list[dict[str, Any]]:
        """:meth:`ablate.store.Store.study_runs`."""
        return self.studies_runs([name])[name]

    def studies_runs(self, names: Sequence[str] | None = None
                     ) -> dict[str, list[dict[str, Any]]]:
        """:meth:`ablate.store.Store.studies_runs`."""
        with self._transaction():
            return read_studies_runs(self._execute, names, self.has_jobs)

    def report_runs(self, names: Sequence[str] | None = None
                    ) -> tuple[dict[str, tuple[int, str, Any]], list[tuple[Any, ...]]]:
        """:meth:`ablate.store.Store.report_runs`."""
        with self._transaction():
            return read_report_runs(self._execute, names, self.has_model)

    def metric_values(self, hashes: Iterable[str], key: str
                      ) -> list[tuple[str, int, float | None]]:
        """:meth:`ablate.store.Store.metric_values`."""
        with self._transaction():
            return read_metric_values(self._execute, hashes, key)
