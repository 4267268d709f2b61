"""Every fault ends in a true database and a one-line error (issue 14, ablate's side).

Real digits runs on the CPU. Nothing here waits on the clock: each test polls for a state
(a file, a count) under a generous limit, so a loaded machine is slower, never wrong."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.store.db import Store
from tests.conftest import ROOT, processes_on
from tests.test_orchestrator import db_rows, final_results, study_dict, write_study

runner = CliRunner()
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
LIMIT_S = 600  # any poll gives up only after this: a failure, never a slow pass


def poll(check: Callable[[], Any], what: str, limit: float = LIMIT_S) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def small_study(data: Path, epochs: int = 3, **extra: Any) -> dict[str, Any]:
    spec = study_dict(data, seeds=[0], variants=[{"name": "lr 0.05", "set": {"optim.lr": 0.05}}],
                      **extra)
    spec["base"]["epochs"] = epochs
    return spec


def run_args(study: Path, db: Path, runs: Path, *extra: str) -> list[str]:
    # One CPU thread per run in every study of a test: results are bitwise comparable.
    return [sys.executable, "-m", "ablate", "run", str(study), "--db", f"sqlite:///{db}",
            "--runs-dir", str(runs), "--cpu-threads", "1", *extra]


@pytest.fixture(scope="module")
def reference(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small study trained once without a fault: what every faulted study must equal."""
    tmp = tmp_path_factory.mktemp("ref")
    study = write_study(tmp / "s.yaml", small_study(digits_dir))
    db = tmp / "ref.db"
    proc = subprocess.run(run_args(study, db, tmp / "runs"), cwd=tmp, env=ENV,
                          capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return db


def _launched(runs: Path) -> list[Path]:
    return list(runs.glob("*/launch.log"))


def _mid_epoch(runs: Path) -> bool:
    return any(p.read_text().strip() and not (p.parent / "result.json").exists()
               for p in runs.glob("*/metrics.jsonl"))


def _one_done(runs: Path) -> bool:
    return any(runs.glob("*/result.json"))


KILL_POINTS = {"start": _launched, "mid_epoch": _mid_epoch, "between_runs": _one_done}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_of_the_orchestrator_then_a_rerun_equals_an_uninterrupted_study(
    point: str, digits_dir: Path, reference: Path, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "s.yaml", small_study(digits_dir))
    db, runs = tmp_path / "k.db", tmp_path / "runs"
    orch = subprocess.Popen(run_args(study, db, runs), cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    poll(lambda: KILL_POINTS[point](runs) or orch.poll() is not None, f"the {point} point")
    assert orch.poll() is None, "the study ended before the kill point"
    orch.kill()
    orch.wait()
    # Its trainers die with it (PR_SET_PDEATHSIG): nothing trains on without an owner.
    poll(lambda: not processes_on(runs), "the orphaned trainers to exit", limit=120)

    # At once, with the default --lost-after of 60 s: the dead owner is seen by its pid.
    status = json.loads(subprocess.run(
        [sys.executable, "-m", "ablate", "status", "--db", f"sqlite:///{db}", "--json"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=LIMIT_S).stdout)
    assert "running" not in {r["status"] for r in status["digits_three"]}
    rerun = subprocess.run(run_args(study, db, runs), cwd=tmp_path, env=ENV,
                           capture_output=True, text=True, timeout=LIMIT_S)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not processes_on(runs)
    assert db_rows(db, "select status, count(*) from run group by status") == [("succeeded", 2)]
    assert final_results(db) == final_results(reference)  # same hashes, bitwise top-1/top-5
    q = ("select run_hash, epoch, key, value from metric where key not in "
         "('images_per_s', 'seconds', 'train_seconds') order by 1, 2, 3")
    assert db_rows(db, q) == db_rows(reference, q)
    for log in runs.glob("*/train.log"):  # never two trainers on one directory
        assert "another process is training" not in log.read_text()


def test_a_live_trainer_is_waited_for_and_ingested_not_trained_again(
    digits_dir: Path, tmp_path: Path
) -> None:
    """A trainer whose orchestrator is gone (started here by hand) holds its run's lock:
    the next orchestrator waits for it and records its result; it never starts another."""
    from ablate.launch.local import write_run_config
    from ablate.study.spec import load_study

    study = write_study(tmp_path / "s.yaml", small_study(digits_dir))
    db, runs = tmp_path / "a.db", tmp_path / "runs"
    first = load_study(study).run_specs(runs)[0]
    config = write_run_config(first)
    orphan = subprocess.Popen([sys.executable, "-m", "zoo.train", "--config", str(config),
                               "--out", str(config.parent)], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = config.parent / "metrics.jsonl"
    poll(lambda: metrics.exists() and metrics.read_text().strip(), "the orphan's first epoch")
    # Stopped, it keeps its lock but cannot finish before the orchestrator reaches its run
    # (on a loaded machine it otherwise could, and would be ingested as finished instead).
    orphan.send_signal(signal.SIGSTOP)
    out = tmp_path / "run.out"
    with out.open("w") as sink:
        orch = subprocess.Popen(run_args(study, db, runs), cwd=tmp_path,
                                env={**ENV, "PYTHONUNBUFFERED": "1"}, stdout=sink,
                                stderr=subprocess.STDOUT, text=True)
        try:
            poll(lambda: "waiting for the trainer already on it" in out.read_text(),
                 "the orchestrator to wait for the orphan")
        finally:
            orphan.send_signal(signal.SIGCONT)
        assert orch.wait(timeout=LIMIT_S) == 0, out.read_text()
    proc = subprocess.CompletedProcess(orch.args, 0, out.read_text(), "")
    assert orphan.wait(timeout=LIMIT_S) == 0
    assert db_rows(db, "select status, count(*) from run group by status") == [("succeeded", 2)]
    assert not (config.parent / "launch.log").exists()  # the orchestrator launched nothing
    assert "waiting for the trainer already on it" in proc.stdout
    (top1,) = db_rows(db, f"select top1 from result where run_hash = '{first.hash}'")[0]
    assert top1 == json.loads((config.parent / "result.json").read_text())["final"]["top1"]


def test_a_succeeded_run_directory_is_ingested_never_trained_again(
    digits_dir: Path, tmp_path: Path
) -> None:
    """The database says running (its orchestrator died after the trainer wrote
    result.json, before recording it): the next orchestrator takes the result as it is."""
    study = write_study(tmp_path / "s.yaml", small_study(digits_dir, epochs=1))
    db, runs = tmp_path / "d.db", tmp_path / "runs"
    assert subprocess.run(run_args(study, db, runs), cwd=tmp_path, env=ENV,
                          capture_output=True, timeout=LIMIT_S).returncode == 0
    with sqlite3.connect(db) as con:
        con.execute("update run set status = 'running', owner = 'elsewhere:1:x', "
                    "heartbeat_at = '2000-01-01 00:00:00'")
        con.execute("delete from result")
    logs = {p: p.read_text() for p in _launched(runs)}
    proc = subprocess.run(run_args(study, db, runs, "--lost-after", "5"), cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=LIMIT_S)
    # 'elsewhere' is another host: lost by its heartbeat's age, then ingested.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 trained" in proc.stdout
    assert {p: p.read_text() for p in _launched(runs)} == logs  # nothing launched
    assert db_rows(db, "select status, count(*) from run group by status") == [("succeeded", 2)]
    assert db_rows(db, "select count(*) from result") == [(2,)]


def test_a_run_that_always_fails_stops_after_three_attempts(
    digits_dir: Path, tmp_path: Path
) -> None:
    spec = study_dict(digits_dir, seeds=[0], variants=[
        {"name": "diverges", "set": {"optim.lr": 1.0e12, "optim.weight_decay": 0.0,
                                     "schedule.name": "constant", "schedule.warmup_epochs": 0}}])
    spec["base"]["epochs"] = 1
    study = write_study(tmp_path / "s.yaml", spec)
    db, runs = tmp_path / "f.db", tmp_path / "runs"
    proc = subprocess.run(run_args(study, db, runs), cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 trained, 0 reused, 1 failed" in proc.stdout
    assert "--retry-failed" in proc.stdout
    ((h, attempts),) = db_rows(db, "select hash, attempts from run where status = 'failed'")
    assert attempts == 3
    errors = db_rows(db, f"select number, status, error from attempt where run_hash = '{h}' "
                         "order by number")
    assert [(n, s) for n, s, _ in errors] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert all(e.startswith("non-finite loss at epoch 1") for _, _, e in errors)

    # A rerun trains nothing, and says so: exit 1, how many failed, how to retry.
    again = subprocess.run(run_args(study, db, runs), cwd=tmp_path, env=ENV,
                           capture_output=True, text=True, timeout=LIMIT_S)
    assert again.returncode == 1
    assert "0 trained, 1 reused, 0 failed" in again.stdout
    assert "1 run failed" in again.stdout and "--retry-failed" in again.stdout
    assert db_rows(db, "select attempts from run where status = 'failed'") == [(3,)]
    # --retry-failed --max-attempts 1: exactly one more attempt.
    once = subprocess.run(run_args(study, db, runs, "--retry-failed", "--max-attempts", "1"),
                          cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=LIMIT_S)
    assert once.returncode == 1
    assert db_rows(db, "select attempts from run where status = 'failed'") == [(4,)]
    assert db_rows(db, "select count(*) from attempt") == [(5,)]  # 4 failed + 1 succeeded


def test_a_failure_every_attempt_repeats_is_said_once(digits_dir: Path, tmp_path: Path) -> None:
    """A bad image without data.skip_bad fails every start of the run the same way: one
    attempt, the image named, 'not retried', not three trainer starts."""
    data = tmp_path / "digits"
    shutil.copytree(digits_dir, data)
    bad = sorted((data / "train").rglob("*.png"))[5]
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated PNG
    spec = study_dict(data, seeds=[0], variants=[{"name": "lr", "set": {"optim.lr": 0.05}}])
    spec["base"]["epochs"] = 1
    study = write_study(tmp_path / "s.yaml", spec)
    db, runs = tmp_path / "f.db", tmp_path / "runs"
    proc = subprocess.run(run_args(study, db, runs), cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 trained, 0 reused, 2 failed" in proc.stdout
    assert proc.stdout.count("not retried: it fails the same way every time") == 2
    assert db_rows(db, "select attempts from run") == [(1,), (1,)]
    errors = db_rows(db, "select error from attempt")
    assert len(errors) == 2 and all(bad.name in e for e, in errors)
    results = [json.loads(p.read_text()) for p in runs.glob("*/result.json")]
    assert [r["retryable"] for r in results] == [False, False]


@pytest.fixture
def in_process() -> Iterator[None]:
    """The orchestrator in this process: its trainers read the tree through PYTHONPATH."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT)
    yield
    if old is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old


def test_a_write_lock_held_past_the_busy_timeout_does_not_stop_the_study(
    digits_dir: Path, tmp_path: Path, in_process: None
) -> None:
    """Another process holds SQLite's write lock from a run's start until after it ended
    and the orchestrator met the busy database several times (40 s of lock against the
    default 30 s busy timeout, scaled: a 0.2 s busy timeout). The study completes."""
    from ablate.launch.orchestrator import Event, Orchestrator
    from ablate.study.spec import load_study

    study = load_study(write_study(tmp_path / "s.yaml", small_study(digits_dir, epochs=2)))
    db = tmp_path / "b.db"
    store = Store(f"sqlite:///{db}", busy_timeout=0.2)
    orch = Orchestrator(study, store, tmp_path / "runs", cpu_threads=1)
    held, released = threading.Event(), threading.Event()

    def hold(run_dir: Path) -> None:
        con = sqlite3.connect(db, timeout=LIMIT_S, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        held.set()
        poll(lambda: (run_dir / "result.json").exists(), "the run to end under the lock")
        poll(lambda: orch.outcome.busy_retries >= 3, "the orchestrator to meet the lock")
        con.execute("COMMIT")
        con.close()
        released.set()

    def on_event(event: Event, _o: Orchestrator) -> None:
        if event.kind == "start" and not held.is_set():
            threading.Thread(target=hold, args=(Path(event.run.run_dir),)).start()
            poll(held.is_set, "the lock")

    orch.on_event = on_event
    outcome = orch.run()
    assert released.is_set()
    assert outcome.busy_retries >= 3 and outcome.succeeded == 2 and outcome.failed == 0
    assert db_rows(db, "select status, count(*) from run group by status") == [("succeeded", 2)]
    assert db_rows(db, "select count(*) from result") == [(2,)]


def test_a_fault_in_the_loop_stops_the_trainers_and_marks_them_interrupted(
    digits_dir: Path, tmp_path: Path, in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ablate.launch.orchestrator import Orchestrator, OrchestratorFault
    from ablate.store.db import RunRow
    from ablate.study.spec import load_study

    study = load_study(write_study(tmp_path / "s.yaml", small_study(digits_dir, epochs=20)))
    runs = tmp_path / "runs"
    orch = Orchestrator(study, Store(f"sqlite:///{tmp_path / 'e.db'}"), runs, cpu_threads=1)
    mirror = orch._mirror

    def faulty() -> None:
        mirror()
        if orch.epochs_seen and max(orch.epochs_seen.values()) >= 1:
            raise KeyError("[/] a bug")

    monkeypatch.setattr(orch, "_mirror", faulty)
    with pytest.raises(OrchestratorFault) as err:
        orch.run()
    message = str(err.value)
    assert "\n" not in message and "KeyError" in message and "run the same command" in message
    assert not processes_on(runs)  # stopped, not left training
    with orch.store.session() as s:
        statuses = sorted(str(r.status) for r in s.query(RunRow))
    assert statuses == ["interrupted", "queued"]


def test_a_trainer_killed_by_a_signal_is_recorded_with_its_name(
    digits_dir: Path, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "s.yaml", small_study(digits_dir, epochs=50))
    db, runs = tmp_path / "s.db", tmp_path / "runs"
    orch = subprocess.Popen(run_args(study, db, runs, "--max-attempts", "1"), cwd=tmp_path,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def worker() -> int | None:  # zoo.train itself, not torchrun's agent nor the guard
        for pid in processes_on(runs):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"zoo.train" in cmd and b"torch.distributed.run" not in cmd:
                return pid
        return None

    poll(lambda: _mid_epoch(runs), "the first run's first epoch")
    os.kill(poll(worker, "the training process"), signal.SIGKILL)
    orch.wait(timeout=LIMIT_S)  # the second run trains to its end as well: 50 epochs
    error = db_rows(db, "select error from run where status = 'failed'")
    assert error == [("a training process was killed by signal SIGKILL",)], orch.stderr


def _readonly_copy(dir_mode: int) -> tuple[Path, str]:
    """The committed results.db, read-only, in a directory of ``dir_mode``, and the hash
    of one of its runs."""
    where = Path(tempfile.mkdtemp(prefix="ablate-ro-"))
    os.chmod(where, 0o755)
    ro = where / "ro"
    ro.mkdir()
    shutil.copy(ROOT / "results.db", ro / "results.db")
    con = sqlite3.connect(ro / "results.db")
    (h,) = con.execute("select hash from run limit 1").fetchone()
    con.close()  # the last connection removes the -wal and -shm files
    os.chmod(ro / "results.db", 0o444)
    os.chmod(ro, dir_mode)
    return ro / "results.db", h


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
@pytest.mark.parametrize("dir_mode", [0o555, 0o777], ids=["read-only dir", "writable dir"])
def test_reading_commands_read_a_read_only_database_and_run_says_one_line(
    dir_mode: int, digits_dir: Path, tmp_path: Path
) -> None:
    """As an unprivileged user (root would write anyway): a read-only file, in a read-only
    directory or not, reads with status, show, report and --dry-run; ablate run is one
    line."""
    db, h = _readonly_copy(dir_mode)
    try:
        url = f"sqlite:///{db}"
        study = db.parent.parent / "s.yaml"
        data = shutil.copytree(digits_dir, db.parent.parent / "digits")  # theirs to read
        write_study(study, study_dict(data))
        os.chmod(study, 0o444)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

        def ablate(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*nobody, sys.executable, "-m", "ablate", *args],
                                  cwd="/", env={**ENV, "PYTHONDONTWRITEBYTECODE": "1"},
                                  capture_output=True, text=True, timeout=LIMIT_S)

        for args in (["status", "--db", url], ["status", "--db", url, "--json"],
                     ["show", h[:10], "--db", url], ["report", "--db", url],
                     ["run", str(study), "--dry-run", "--db", url]):
            res = ablate(*args)
            assert res.returncode == 0, (args, res.stdout + res.stderr)
        res = ablate("run", str(study), "--db", url, "--runs-dir", str(tmp_path / "r"))
        assert res.returncode == 2
        assert res.stderr.count("\n") == 1 and "read-only" in res.stderr, res.stderr
        if dir_mode == 0o555:
            assert sorted(p.name for p in db.parent.iterdir()) == ["results.db"]
    finally:
        os.chmod(db.parent, 0o755)
        shutil.rmtree(db.parent.parent)


def test_show_takes_the_id_literally(tmp_path: Path) -> None:
    from tests.test_orchestrator import _spec

    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store(url)
    store.register_study("s", "s.yaml", "add_one", {}, [_spec("89edcec3aa"), _spec("8fe1", 1)])
    store.close()
    for pattern in ("8_e", "8%", "_9"):
        res = runner.invoke(app, ["show", pattern, "--db", url])
        assert res.exit_code == 2 and f"no run with id '{pattern}'" in res.output
    assert runner.invoke(app, ["show", "89e", "--db", url, "--json"]).exit_code == 0


def test_a_directory_or_binary_file_as_the_study_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"PK\x03\x04\x00\x00\x08\x00\xff\xfe" * 40)
    for path, says in ((tmp_path, "is a directory"), (binary, "not a text file")):
        res = runner.invoke(app, ["run", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and says in lines[0]
    assert not (tmp_path / "x.db").exists()


def test_a_run_whose_orchestrator_died_on_this_host_reads_lost_at_once(tmp_path: Path) -> None:
    import socket

    from tests.test_orchestrator import _spec

    url = f"sqlite:///{tmp_path / 'o.db'}"
    store = Store(url)
    store.register_study("s", "s.yaml", "add_one", {}, [_spec("aaa"), _spec("bbb", 1)])
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that existed and exists no more
    host = socket.gethostname()
    assert store.claim("aaa", f"{host}:{gone.pid}:dead")
    assert store.claim("bbb", f"{host}:{os.getpid()}:alive")
    res = runner.invoke(app, ["status", "--db", url, "--json"])  # reads: writes nothing
    shown = {r["hash"]: (r["status"], r["error"]) for r in json.loads(res.output)["s"]}
    assert shown["aaa"] == ("lost", f"its orchestrator ({host}:{gone.pid}:dead) is gone")
    assert shown["bbb"][0] == "running"
    assert store.run_status(["aaa"]) == {"aaa": "running"}
    from datetime import timedelta

    assert store.mark_lost(timedelta(hours=1)) == ["aaa"]  # at once, not after an hour
    assert db_rows(tmp_path / "o.db", "select number, status from attempt") == [(1, "lost")]


def test_a_trainer_ends_with_its_torchrun_agent(digits_dir: Path, tmp_path: Path) -> None:
    """torchrun starts its workers in sessions of their own: a SIGKILLed agent (the OOM
    killer, a launcher that crashed in a SLURM job) used to leave its trainer running,
    holding the run's lock. The trainer asks for SIGTERM when its agent ends
    (zoo.lifeline): held stopped, it has the signal pending the moment the agent dies,
    and once continued it ends without a result."""
    from ablate.launch.local import write_run_config
    from ablate.study.spec import load_study
    from tests.conftest import signal_pending, trainers_on

    study = write_study(tmp_path / "s.yaml", small_study(digits_dir, epochs=100))
    config = write_run_config(load_study(study).run_specs(tmp_path / "runs")[0])
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc_per_node", "1", "-m", "zoo.train", "--config",
                              str(config), "--out", str(config.parent)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = config.parent / "metrics.jsonl"
    try:
        poll(lambda: metrics.exists() and metrics.read_text().strip(), "the first epoch")
        (trainer,) = trainers_on(tmp_path)
        os.kill(trainer, signal.SIGSTOP)  # it cannot finish, whatever the machine's load
        assert not signal_pending(trainer, signal.SIGTERM)
        agent.kill()
        agent.wait(timeout=LIMIT_S)
        poll(lambda: signal_pending(trainer, signal.SIGTERM), "SIGTERM for the orphan")
        os.kill(trainer, signal.SIGCONT)
        poll(lambda: trainer not in trainers_on(tmp_path), "the orphan to end")
    finally:
        for pid in trainers_on(tmp_path):
            os.kill(pid, signal.SIGKILL)
    assert not (config.parent / "result.json").exists()
    assert len(metrics.read_text().splitlines()) < 100


def test_a_trainer_started_by_hand_is_not_tied_to_its_shell() -> None:
    """Outside torchrun nothing is armed (a trainer may outlive the shell that started
    it, as under nohup); a parent that is already gone when the signal is armed is said."""
    code = ("import os\nfrom zoo.lifeline import LauncherGone, die_with_launcher, "
            "die_with_parent\nassert die_with_launcher() is False\n"
            "try:\n    die_with_parent(os.getppid() + 1)\nexcept LauncherGone as e:\n"
            "    print('gone:', e)\n")
    env = {k: v for k, v in ENV.items() if k != "TORCHELASTIC_RUN_ID"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=LIMIT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gone: the process that started this one"), done.stdout
