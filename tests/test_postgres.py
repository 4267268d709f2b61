"""Many machines, one study, one PostgreSQL database: orchestrators claim runs with
``SELECT ... FOR UPDATE SKIP LOCKED``, so every run is trained exactly once, and the schema
is created on first use by whichever orchestrator comes first.

Needs a real server: ``ABLATE_TEST_PG_URL`` (``.ci/run`` starts Debian's PostgreSQL and sets
it). Each test works in a fresh schema of that database and drops it afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from ablate.errors import AblateError
from ablate.store.db import RunRow, Status, Store
from tests.conftest import LIMIT, ROOT
from tests.test_orchestrator import study_dict, write_study

PG_URL = os.environ.get("ABLATE_TEST_PG_URL")
needs_pg = pytest.mark.skipif(
    not PG_URL, reason="ABLATE_TEST_PG_URL is not set: no PostgreSQL server to test against "
                       "(.ci/run starts one; see docs/clusters.md)")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose tables land in a new, empty schema (dropped after the test)."""
    assert PG_URL is not None
    schema = f"ablate_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@needs_pg
def test_concurrent_claims_take_each_run_once_in_plan_order(pg_url: str) -> None:
    store = Store(pg_url)  # first use: creates the schema
    assert store.postgres
    hashes = [f"run{i:03d}" for i in range(40)]
    with store.session() as s:
        for h in hashes:
            s.add(RunRow(hash=h, config={}, status=Status.queued, run_dir=h, epochs=1))
    first = store.claim_next(hashes, "probe")
    assert first == "run000"  # the plan's order, not the table's
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def worker(name: str) -> None:
        mine = claimed.setdefault(name, [])
        own = Store(pg_url)  # its own engine and connections, like another machine
        start.wait()
        while (h := own.claim_next(hashes, name)) is not None:
            mine.append(h)
        own.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=LIMIT)
    taken = [h for hs in claimed.values() for h in hs]
    assert sorted(taken) == hashes[1:]  # every run once, none twice
    assert all(hs == sorted(hs) for hs in claimed.values())  # each took them in order
    assert set(store.run_status(hashes).values()) == {Status.running}
    with store.session() as s:
        assert {r.attempts for r in s.query(RunRow)} == {1}
    store.close()


@needs_pg
def test_heartbeats_are_judged_by_the_servers_clock(pg_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Orchestrators on machines whose clocks disagree: one running five minutes ahead
    must not take another's live run for lost (and train it a second time), nor miss a
    run that really stopped beating."""
    from ablate.store import db as store_db

    store = Store(pg_url)
    with store.session() as s:
        s.add(RunRow(hash="live", config={}, status=Status.queued, run_dir="live", epochs=1))
    assert store.claim_next(["live"], "machine-a") == "live"
    store.heartbeat(["live"], "machine-a")
    ahead = store_db.utcnow() + timedelta(minutes=5)
    monkeypatch.setattr(store_db, "utcnow", lambda: ahead)  # machine B's clock
    assert store.mark_lost(timedelta(seconds=60)) == []
    assert store.run_status(["live"]) == {"live": Status.running}
    # Its status shows the run's elapsed time by the server's clock too (store.now()),
    # where machine B's own clock would add five minutes.
    from ablate.cli import view

    monkeypatch.setattr(view, "utcnow", lambda: ahead)
    run = _running(store, "live")
    assert 0 <= view._elapsed(run, store.now()) < 60
    assert view._elapsed(run) >= 240
    with store.session() as s:  # the owner died two minutes ago, by the server's clock
        s.execute(text("UPDATE run SET heartbeat_at = timezone('UTC', now()) "
                       "- interval '2 minutes'"))
    assert store.mark_lost(timedelta(seconds=60)) == ["live"]
    store.close()


def _running(store: Store, run_hash: str) -> Any:
    """A status row of a running run that belongs to no study, for the view's clocks."""
    from ablate.store.db import RunState

    found = store.find_run(run_hash)
    return RunState(variant="v", variant_index=0, change="", seed=0, hash=run_hash,
                    status="running", run_dir="", epochs=1, epochs_done=0, top1=None,
                    images_per_s=None, host=None, owner=None, attempts=1, error=None,
                    log_tail=None, code_commit=None, code_dirty=None,
                    started_at=found["started_at"], finished_at=None, heartbeat_at=None,
                    nproc=1, job_id=None, job_state=None)


@needs_pg
def test_two_orchestrators_share_a_study_on_postgres(digits_dir: Path, tmp_path: Path,
                                                    pg_url: str) -> None:
    spec = study_dict(digits_dir, seeds=[0, 1, 2], variants=[])  # 3 runs, 2 orchestrators
    spec["base"]["epochs"] = 1
    study = write_study(tmp_path / "s.yaml", spec)
    cmd = [sys.executable, "-m", "ablate", "run", str(study), "--db", pg_url,
           "--runs-dir", str(tmp_path / "runs"), "--cpu-threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Both start on an empty schema at the same moment, as two machines would.
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=LIMIT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [int(o.split(" trained")[0].rsplit(" ", 1)[-1]) for o in outs]
    assert sum(trained) == 3, outs
    store = Store(pg_url, create=False)
    runs = store.study_runs("digits_three")
    assert [(r.status, r.attempts) for r in runs] == [("succeeded", 1)] * 3
    for r in runs:
        log = (Path(r.run_dir) / "launch.log").read_text()
        assert log.count("$ ") == 1  # launched once
        assert [m["epoch"] for m in store.metrics(r.hash)] == [1]
    with store.engine.connect() as conn:
        assert conn.execute(text("select count(*) from result")).scalar() == 3
    # The reads of status and report on
    # PostgreSQL's driver: its timestamps, booleans and decoded JSON.
    assert store.mark_lost(timedelta(seconds=60)) == []
    status = store.studies_runs()["digits_three"]
    assert all(isinstance(r.finished_at, datetime) for r in status)
    studies, rows = store.report_runs(["digits_three"])
    assert studies["digits_three"].mode == "add_one" and len(rows) == 3
    assert {row.status for row in rows} == {"succeeded"} and all(row.top1 > 0 for row in rows)
    assert [len(store.metric_values([row.hash], "top1")) for row in rows] == [1, 1, 1]
    store.close()
    report = subprocess.run([sys.executable, "-m", "ablate", "report", "digits_three",
                             "--db", pg_url], cwd=tmp_path, capture_output=True, text=True,
                            env=env, timeout=LIMIT)
    assert report.returncode == 0, report.stderr
    assert "baseline" in report.stdout and "resnet20" in report.stdout


def test_an_unreachable_database_is_one_line() -> None:
    with pytest.raises(AblateError, match=r"--db postgresql://u:p@127\.0\.0\.1:1/x: cannot open"):
        Store("postgresql://u:p@127.0.0.1:1/x")
