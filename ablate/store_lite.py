"""The results database without SQLAlchemy, for the commands that only look at it.

``ablate status`` and ``ablate report`` read a few tables and print them; importing
SQLAlchemy (and declaring :mod:`ablate.store`'s models) takes them 0.2-0.3 s, more than
the queries themselves on 10,000 runs. On a SQLite file (the default) :func:`open_reader`
gives a :class:`SQLiteReader`: the same queries through the standard library's sqlite3,
the same rows as :class:`ablate.store.Store` gives (``tests/test_report.py`` compares them),
the same connection settings and the same one-line errors. Any other URL gets a
``Store(url, create=False)``, which has the same methods.

The few definitions both need (statuses, timestamps, the default URL) live here, so that
:mod:`ablate.store` imports them from this module and not the other way round.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
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


#: The run columns :meth:`SQLiteReader.studies_runs` gives, in the order of
#: ``ablate.store._RUN_COLUMNS``, then the job columns.
RUN_FIELDS = ("hash", "status", "run_dir", "epochs", "epochs_done", "top1", "images_per_s",
              "host", "owner", "attempts", "error", "log_tail", "code_commit", "code_dirty",
              "started_at", "finished_at", "heartbeat_at", "nproc")
_DATETIMES = ("started_at", "finished_at", "heartbeat_at")


def _sql_datetime(value: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite (text that sorts as time does)."""
    return value.isoformat(sep=" ", timespec="microseconds")


def _cannot_open(url: str, exc: sqlite3.Error) -> AblateError:
    """Store's error for a database it cannot open, the driver's error as SQLAlchemy
    words it."""
    message = f"({type(exc).__module__}.{type(exc).__name__}) {exc}"
    return AblateError(f"--db {url}: cannot open it: {message.splitlines()[0]}")


def _params(n: int) -> str:
    return ", ".join("?" * n)


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
            for pragma in ("busy_timeout=30000", "journal_mode=WAL", "foreign_keys=ON",
                           "synchronous=NORMAL"):  # ablate.store._sqlite_pragmas
                self._conn.execute(f"PRAGMA {pragma}").fetchall()
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

    # ------------------------------------------------------------------ status

    def mark_lost(self, older_than: timedelta) -> list[str]:
        """:meth:`ablate.store.Store.mark_lost`."""
        cutoff = _sql_datetime(utcnow() - older_than)
        with self._transaction() as c:
            hashes = [h for (h,) in c.execute(
                "SELECT run.hash FROM run WHERE run.status = ? AND run.heartbeat_at < ?",
                (Status.running.value, cutoff))]
            if hashes:
                c.execute(f"UPDATE run SET status=?, error=? WHERE run.hash IN "
                          f"({_params(len(hashes))}) AND run.status = ? "
                          f"AND run.heartbeat_at < ?",
                          (Status.lost.value,
                           f"no heartbeat for {older_than.total_seconds():.0f}s",
                           *hashes, Status.running.value, cutoff))
            return hashes

    def study_runs(self, name: str) -> list[dict[str, Any]]:
        """:meth:`ablate.store.Store.study_runs`."""
        return self.studies_runs([name])[name]

    def studies_runs(self, names: Sequence[str] | None = None
                     ) -> dict[str, list[dict[str, Any]]]:
        """:meth:`ablate.store.Store.studies_runs`: one dict per (variant, seed) of each
        named study (default: every study, by name)."""
        with self._transaction() as c:
            ids = dict(c.execute("SELECT study.name, study.id FROM study "
                                 "ORDER BY study.name"))
            wanted = list(dict.fromkeys(names)) if names is not None else list(ids)
            for name in wanted:
                if name not in ids:
                    known = [n for (n,) in c.execute("SELECT study.name FROM study")]
                    from zoo.errors import did_you_mean

                    raise AblateError(f"unknown study '{name}'{did_you_mean(name, known)}"
                                      + ("" if known else " (the database has no studies yet)"))
            jobs = ("job_id", "job_state") if self.has_jobs else ()
            columns = ", ".join(f"run.{c}" for c in (*RUN_FIELDS, *jobs))
            where = ""
            if names is not None:
                where = f"WHERE study_run.study_id IN ({_params(len(wanted))}) "
            result = c.execute(
                f"SELECT study_run.study_id, study_run.variant, study_run.variant_index, "
                f"study_run.change, study_run.seed, {columns} FROM study_run JOIN run "
                f"ON run.hash = study_run.run_hash {where}"
                f"ORDER BY study_run.study_id, study_run.variant_index, study_run.seed",
                [ids[n] for n in wanted] if names is not None else [])
            keys = ["variant", "variant_index", "change", "seed", *RUN_FIELDS, *jobs]
            dirty = keys.index("code_dirty")
            times = [keys.index(k) for k in _DATETIMES]
            parse = datetime.fromisoformat
            by_id: dict[int, list[dict[str, Any]]] = {ids[n]: [] for n in wanted}
            for study_id, *row in result:
                # As SQLAlchemy's Boolean and DateTime types read them from SQLite.
                if row[dirty] is not None:
                    row[dirty] = bool(row[dirty])
                for i in times:
                    if row[i] is not None:
                        row[i] = parse(row[i])
                r = dict(zip(keys, row, strict=True))
                if not jobs:  # a database from before them
                    r["job_id"] = r["job_state"] = None
                by_id[study_id].append(r)
        return {n: by_id[ids[n]] for n in wanted}

    # ------------------------------------------------------------------ report

    def report_runs(self, names: Sequence[str] | None = None
                    ) -> tuple[dict[str, tuple[int, str, Any]], list[tuple[Any, ...]]]:
        """:meth:`ablate.store.Store.report_runs`: every study by name as (id, mode, spec),
        and the rows of the named known ones (default: all)."""
        with self._transaction() as c:
            studies = {name: (i, mode, None if spec is None else json.loads(spec))
                       for i, name, mode, spec in c.execute(
                           "SELECT study.id, study.name, study.mode, study.spec FROM study "
                           "ORDER BY study.name")}
            ids = [studies[n][0] for n in dict.fromkeys(names or studies) if n in studies]
            if not ids:
                return studies, []
            model = "run.model" if self.has_model else "NULL"
            rows = c.execute(
                "SELECT study_run.study_id, study_run.variant, study_run.variant_index, "
                "study_run.change, study_run.seed, run.hash, run.status, run.config, "
                "run.nproc, run.code_commit, run.code_dirty, result.top1, result.top5, "
                "result.params, result.macs, result.world_size, result.device_hours, "
                f"result.env, {model} FROM study_run JOIN run ON run.hash = "
                "study_run.run_hash LEFT OUTER JOIN result ON result.run_hash = run.hash "
                f"WHERE study_run.study_id IN ({_params(len(ids))}) "
                "ORDER BY study_run.study_id, study_run.variant_index, study_run.seed",
                ids).fetchall()
        # code_dirty as SQLAlchemy's Boolean reads it; the JSON columns stay text.
        return studies, [row if row[10] is None else (*row[:10], bool(row[10]), *row[11:])
                         for row in rows]

    def metric_values(self, hashes: Iterable[str], key: str
                      ) -> list[tuple[str, int, float | None]]:
        """:meth:`ablate.store.Store.metric_values`."""
        hashes = list(hashes)
        with self._transaction() as c:
            return c.execute(
                f"SELECT metric.run_hash, metric.epoch, metric.value FROM metric "
                f"WHERE metric.run_hash IN ({_params(len(hashes))}) AND metric.key = ? "
                f"ORDER BY metric.run_hash, metric.epoch", (*hashes, key)).fetchall()
