"""ablate run / status / show end to end on real digits: each run trained exactly once,
interruptions resumed, failures recorded, bad study files refused without side effects."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.store.db import Store
from tests.conftest import (
    LIMIT,
    ROOT,
    digits_config,
    read_metrics,
    signal_pending,
    trainers_on,
)
from zoo.contract import METRIC_KEYS

runner = CliRunner()


def study_dict(data: Path, **extra: Any) -> dict[str, Any]:
    base = digits_config(data, epochs=3)
    base.pop("seed")
    study = {
        "name": "digits_three",
        "base": base,
        "launch": {"nproc_per_node": 1},
        "seeds": [0, 1],
        "mode": "add_one",
        "variants": [
            {"name": "label smoothing", "tricks": {"label_smoothing": {"smoothing": 0.1}}},
            {"name": "lr 0.05", "set": {"optim.lr": 0.05}},
        ],
    }
    study.update(extra)
    return study


def write_study(path: Path, study: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def ablate(*args: str, cwd: Path, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "ablate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=LIMIT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def db_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    import sqlite3

    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def final_results(db: Path) -> dict[str, tuple[float, float]]:
    return {h: (t1, t5) for h, t1, t5 in db_rows(db, "select run_hash, top1, top5 from result")}


def test_study_end_to_end_then_nothing_to_do(digits_dir: Path, tmp_path: Path) -> None:
    study = write_study(tmp_path / "s.yaml", study_dict(digits_dir))
    db = tmp_path / "results.db"
    args = ["run", str(study), "--db", f"sqlite:///{db}", "--runs-dir", str(tmp_path / "runs"),
            "--max-parallel", "2"]
    out = ablate(*args, cwd=tmp_path).stdout
    assert "6 trained, 0 reused, 0 failed" in out
    assert db_rows(db, "select status, count(*) from run group by status") == [("succeeded", 6)]
    assert len(final_results(db)) == 6
    # Every epoch of every run is in the database exactly once (10 keys per epoch).
    assert db_rows(db, "select count(*), count(distinct run_hash || '-' || epoch || key) "
                       "from metric") == [(6 * 3 * len(METRIC_KEYS),) * 2]
    again = ablate(*args, cwd=tmp_path).stdout
    assert "0 trained, 6 reused" in again
    # status and show read the same database.
    status = json.loads(ablate("status", "--db", f"sqlite:///{db}", "--json",
                               cwd=tmp_path).stdout)
    runs = status["digits_three"]
    assert [(r["variant"], r["seed"], r["status"]) for r in runs] == [
        ("baseline", 0, "succeeded"), ("baseline", 1, "succeeded"),
        ("label smoothing", 0, "succeeded"), ("label smoothing", 1, "succeeded"),
        ("lr 0.05", 0, "succeeded"), ("lr 0.05", 1, "succeeded")]
    shown = json.loads(ablate("show", runs[2]["hash"][:10], "--db", f"sqlite:///{db}",
                              "--json", cwd=tmp_path).stdout)
    assert shown["config"]["tricks"] == {"label_smoothing": {"smoothing": 0.1}}
    assert [m["epoch"] for m in shown["metrics"]] == [1, 2, 3]
    assert shown["result"]["audit"][0]["trick"] == "label_smoothing"


def test_a_run_shared_with_another_study_is_reused(digits_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    common = ["--db", f"sqlite:///{db}", "--runs-dir", str(tmp_path / "runs")]
    one = study_dict(digits_dir, seeds=[0], variants=[
        {"name": "lr 0.05", "set": {"optim.lr": 0.05}}])
    ablate("run", str(write_study(tmp_path / "a.yaml", one)), *common, cwd=tmp_path)
    two = {**one, "name": "other", "variants": [
        {"name": "smooth", "tricks": {"label_smoothing": {}}}]}
    # ABLATE_CPU_THREADS is --cpu-threads' default: 2 here, where two parallel runs would
    # otherwise split the cores (1 on two cores), and threads are not part of a run's hash.
    out = ablate("run", str(write_study(tmp_path / "b.yaml", two)), *common,
                 "--max-parallel", "2", cwd=tmp_path, env={"ABLATE_CPU_THREADS": "2"}).stdout
    assert "1 trained, 1 reused" in out  # the baseline is the same config: not trained again
    assert db_rows(db, "select count(*) from run") == [(3,)]
    (smooth,) = db_rows(db, "select r.run_dir from run r join study_run sr on "
                            "sr.run_hash = r.hash where sr.variant = 'smooth'")
    config = json.loads((Path(smooth[0]) / "config.json").read_text())
    assert config["env"]["determinism"]["torch_threads"] == 2


def test_interrupted_study_resumes_to_the_uninterrupted_result(
    digits_dir: Path, tmp_path: Path
) -> None:
    spec = study_dict(digits_dir, seeds=[0], variants=[
        {"name": "lr 0.05", "set": {"optim.lr": 0.05}}])
    # 12 epochs: room for the poll below to stop each trainer before it finishes, even
    # when the machine is so busy that the poll itself waits seconds for a core.
    spec["base"]["epochs"] = 12
    study = write_study(tmp_path / "s.yaml", spec)
    ref_db, db = tmp_path / "ref.db", tmp_path / "int.db"
    # The same --max-parallel, hence the same CPU threads per run: bitwise comparable.
    ablate("run", str(study), "--db", f"sqlite:///{ref_db}", "--runs-dir",
           str(tmp_path / "ref_runs"), "--max-parallel", "2", cwd=tmp_path)

    runs_dir = tmp_path / "runs"
    cmd = [sys.executable, "-m", "ablate", "run", str(study), "--db", f"sqlite:///{db}",
           "--runs-dir", str(runs_dir), "--max-parallel", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    # Hold each trainer (SIGSTOP) once its run has two epochs, so that neither can finish
    # however the machine schedules them: a trainer is stopped before its epochs are
    # counted and continued if it has fewer than two.
    held: set[int] = set()
    try:
        deadline = time.monotonic() + LIMIT
        while len(held) < 2 and time.monotonic() < deadline and proc.poll() is None:
            for pid, run_dir in trainers_on(runs_dir).items():
                if pid in held:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    metrics = run_dir / "metrics.jsonl"
                    if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                        held.add(pid)
                    else:
                        os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        assert len(held) == 2, f"held {held}; orchestrator exit {proc.poll()}"
        proc.send_signal(signal.SIGINT)
        # The orchestrator stops each run's torchrun agent, which sends SIGTERM to its
        # trainer; once that is waiting on a held trainer, let it go (it dies of it).
        while held and time.monotonic() < deadline:
            for pid in [p for p in held if signal_pending(p, signal.SIGTERM)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                held.discard(pid)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=LIMIT)
    finally:
        for pid in held:  # a failure above: never leave a stopped trainer behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, out + err
    assert db_rows(db, "select status, count(*) from run group by status") == [
        ("interrupted", 2)]
    done_before = {p.parent.name: len(read_metrics(p.parent)) for p in
                   runs_dir.glob("*/metrics.jsonl")}
    assert all(2 <= n < 12 for n in done_before.values()), done_before

    ablate("run", str(study), "--db", f"sqlite:///{db}", "--runs-dir", str(runs_dir),
           "--max-parallel", "2", cwd=tmp_path)
    assert db_rows(db, "select status, count(*) from run group by status") == [
        ("succeeded", 2)]
    for h in done_before:
        log = (runs_dir / h / "train.log").read_text()
        assert "resumed" in log  # continued from its checkpoint, not from scratch
        assert [r["epoch"] for r in read_metrics(runs_dir / h)] == list(range(1, 13))
    assert final_results(db) == final_results(ref_db)
    # Same rows, no duplicates, no lost epochs; equal values but for the timings.
    q = ("select run_hash, epoch, key, value from metric where key not in "
         "('images_per_s', 'seconds', 'train_seconds') order by 1, 2, 3")
    assert db_rows(db, q) == db_rows(ref_db, q)
    count = "select count(*) from metric"
    assert db_rows(db, count) == db_rows(ref_db, count)


def test_two_orchestrators_train_each_run_exactly_once(digits_dir: Path, tmp_path: Path) -> None:
    study = write_study(tmp_path / "s.yaml", study_dict(digits_dir))
    db = tmp_path / "shared.db"
    # Two orchestrators on one machine: one CPU thread per training process each.
    cmd = [sys.executable, "-m", "ablate", "run", str(study), "--db", f"sqlite:///{db}",
           "--runs-dir", str(tmp_path / "runs"), "--cpu-threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=LIMIT) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert db_rows(db, "select status, count(*) from run group by status") == [("succeeded", 6)]
    assert db_rows(db, "select max(attempts) from run") == [(1,)]
    trained = [int(o.split(" trained")[0].rsplit(" ", 1)[-1]) for o, _ in outs]
    assert sum(trained) == 6, outs
    for log in (tmp_path / "runs").glob("*/launch.log"):
        assert log.read_text().count("$ ") == 1  # launched once


def test_a_failing_run_is_recorded_while_the_others_complete(
    digits_dir: Path, tmp_path: Path
) -> None:
    spec = study_dict(digits_dir, seeds=[0], variants=[
        {"name": "diverges", "set": {"optim.lr": 1.0e12, "optim.weight_decay": 0.0,
                                     "schedule.name": "constant", "schedule.warmup_epochs": 0}},
        {"name": "lr 0.05", "set": {"optim.lr": 0.05}}])
    db = tmp_path / "f.db"
    proc = ablate("run", str(write_study(tmp_path / "s.yaml", spec)), "--db", f"sqlite:///{db}",
                  "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "2 trained, 0 reused, 1 failed" in proc.stdout
    (row,) = db_rows(db, "select error, log_tail from run where status = 'failed'")
    assert row[0].startswith("non-finite loss at epoch 1, step ")
    assert "non-finite loss" in row[1]
    status = ablate("status", "--db", f"sqlite:///{db}", cwd=tmp_path).stdout
    assert "failed" in status and "non-finite loss" in status


BAD_STUDIES = [
    ({"seeds": []}, "seeds: empty"),
    ({"mode": "one_by_one"}, "mode: 'one_by_one' is not one of"),
    ({"variantz": []}, "unknown key 'variantz'; did you mean 'variants'"),
    ({"variants": [{"name": "a", "tricks": {"mixupp": {}}}]}, "unknown trick 'mixupp'"),
    ({"variants": [{"name": "a", "set": {"model": "resnet5"}}]}, "unknown model 'resnet5'"),
    ({"variants": [{"name": "a", "set": {"optim.lr": "high"}}]},
     "variant 'a': optim.lr: expected a number"),
    ({"variants": [{"name": "a", "set": {"optim.lr": 0.2}},
                   {"name": "a", "set": {"optim.lr": 0.3}}]}, "duplicate variant name 'a'"),
    ({"launch": {"nproc": 2}}, "unknown key 'launch.nproc'; did you mean 'launch.nproc_per_node'?"),
]


@pytest.mark.parametrize(("change", "message"), BAD_STUDIES)
def test_bad_study_is_one_line_exit_2_and_database_untouched(
    change: dict[str, Any], message: str, digits_dir: Path, tmp_path: Path
) -> None:
    path = write_study(tmp_path / "bad.yaml", study_dict(digits_dir, **change))
    db = tmp_path / "results.db"
    res = runner.invoke(app, ["run", str(path), "--db", f"sqlite:///{db}", "--runs-dir",
                              str(tmp_path / "runs")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), res.output
    assert message in lines[0]
    assert not db.exists() and not (tmp_path / "runs").exists()


def test_yaml_error_missing_data_and_env_reference(digits_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "syntax.yaml"
    bad.write_text("name: x\nbase: {model: resnet20\nseeds: [0]\n")
    res = runner.invoke(app, ["run", str(bad), "--dry-run"])
    assert res.exit_code == 2 and f"{bad}:3:" in res.output and "YAML syntax error" in res.output
    spec = study_dict(digits_dir)
    spec["base"]["data"]["train"] = "${ABLATE_TEST_DATA}/train"
    path = write_study(tmp_path / "env.yaml", spec)
    monkeypatch.delenv("ABLATE_TEST_DATA", raising=False)
    res = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert res.exit_code == 2 and "${ABLATE_TEST_DATA} is not set" in res.output
    monkeypatch.setenv("ABLATE_TEST_DATA", str(tmp_path / "nowhere"))
    res = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert res.exit_code == 2
    assert "base.data.train" in res.output and "does not exist" in res.output
    monkeypatch.setenv("ABLATE_TEST_DATA", str(digits_dir))
    res = runner.invoke(app, ["run", str(path), "--dry-run", "--db",
                              f"sqlite:///{tmp_path / 'none.db'}"])
    assert res.exit_code == 0, res.output
    assert res.output.count("to do") == 6
    assert not (tmp_path / "none.db").exists()


def test_an_older_database_is_refused_untouched(digits_dir: Path, tmp_path: Path) -> None:
    """A database from before schema versions (no ablate_schema table): the dry run and
    the real run stop with one line naming the rebuild, and the file is left as it was."""
    db = tmp_path / "old.db"
    db.write_bytes((ROOT / "results.db").read_bytes())
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE ablate_schema")
    before = db.read_bytes()
    path = write_study(tmp_path / "s.yaml", study_dict(digits_dir))
    for extra in (["--dry-run"], []):
        res = runner.invoke(app, ["run", str(path), *extra, "--db", f"sqlite:///{db}"])
        assert res.exit_code == 2, res.output
        assert "ablate db rebuild --runs-dir" in res.output
    assert db.read_bytes() == before


def test_modes_expand_as_documented(digits_dir: Path, tmp_path: Path) -> None:
    from ablate.study.spec import load_study

    variants = [{"name": "ls", "tricks": {"label_smoothing": {"smoothing": 0.1}}},
                {"name": "lr", "set": {"optim.lr": 0.05}}]
    def plan(mode: str) -> dict[str, Any]:
        path = write_study(tmp_path / f"{mode}.yaml",
                           study_dict(digits_dir, mode=mode, seeds=[0], variants=variants))
        return {r.variant: r.config for r in load_study(path).plan()}

    add = plan("add_one")
    assert add["lr"].tricks == {} and add["lr"].optim.lr == 0.05
    assert add["ls"].optim.lr == 0.1
    cum = plan("cumulative")
    assert cum["lr"].tricks == {"label_smoothing": {"smoothing": 0.1}}
    assert cum["lr"].optim.lr == 0.05
    loo = plan("leave_one_out")
    assert loo["baseline"].tricks == {"label_smoothing": {"smoothing": 0.1}}
    assert loo["baseline"].optim.lr == 0.05
    assert loo["ls"].tricks == {} and loo["ls"].optim.lr == 0.05
    assert loo["lr"].tricks == {"label_smoothing": {"smoothing": 0.1}} and loo["lr"].optim.lr == 0.1


def test_lost_runs_are_marked_and_claimable(tmp_path: Path) -> None:
    from datetime import timedelta

    from ablate.store.db import RunRow, Status, utcnow

    store = Store(f"sqlite:///{tmp_path / 'l.db'}")
    with store.session() as s:
        s.add(RunRow(hash="abc", config={}, status=Status.running, run_dir="x", epochs=1,
                     heartbeat_at=utcnow() - timedelta(seconds=600)))
        s.add(RunRow(hash="def", config={}, status=Status.running, run_dir="y", epochs=1,
                     heartbeat_at=utcnow()))
    assert store.mark_lost(timedelta(seconds=60)) == ["abc"]
    assert store.run_status(["abc", "def"]) == {"abc": Status.lost, "def": Status.running}
    assert store.claim("abc", "me")
    assert not store.claim("abc", "you")  # already taken
    assert not store.claim("def", "me")


def test_orchestrators_starting_together_register_one_study(tmp_path: Path) -> None:
    """Orchestrators (and a multi-node follower) started at the same moment on a new SQLite
    file: creating the schema and each read-then-write transaction are serialised, so none
    trips on another's tables or rows ("table study already exists", UNIQUE constraint)."""
    import threading

    db = f"sqlite:///{tmp_path / 'race.db'}"
    runs = [_spec(f"h{s}", seed=s) for s in range(50)]
    n = 6
    barrier, errors = threading.Barrier(n), []

    def register() -> None:
        barrier.wait()
        try:
            store = Store(db)
            for _ in range(3):
                store.register_study("raced", "s.yaml", "add_one", {}, runs)
            store.close()
        except Exception as exc:  # the assertion below reports it
            errors.append(repr(exc))

    threads = [threading.Thread(target=register) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db_rows(tmp_path / "race.db", "select count(*) from study") == [(1,)]
    assert db_rows(tmp_path / "race.db", "select count(*) from study_run") == [(50,)]
    assert db_rows(tmp_path / "race.db", "select count(*) from run") == [(50,)]


def test_connections_switching_a_new_file_to_wal_together_all_open_it(tmp_path: Path) -> None:
    """Three connections set up at the same moment on a new SQLite file (orchestrators
    started together): SQLite refuses all but one switch to WAL at once, without waiting
    its busy timeout; each connection must still open the database. Without the retry
    about one round in ten failed here."""
    import sqlite3
    import threading

    from ablate.store.schema import sqlite_setup

    errors: list[str] = []
    for round_ in range(150):
        path = tmp_path / f"new{round_}.db"
        barrier = threading.Barrier(3)

        def connect(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            conn = sqlite3.connect(path, isolation_level=None)
            barrier.wait()
            try:
                sqlite_setup(conn)
            except sqlite3.Error as exc:  # the assertion below reports it
                errors.append(str(exc))
            finally:
                conn.close()

        threads = [threading.Thread(target=connect) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert db_rows(tmp_path / "new0.db", "pragma journal_mode") == [("wal",)]


# --------------------------------------------------------------------------- at scale


def _rendered(table: Any, **console: Any) -> str:
    import io

    from rich.console import Console

    out = Console(file=io.StringIO(), highlight=False, **console)
    out.print(table)
    return out.file.getvalue()  # type: ignore[attr-defined]


#: Consoles a table is printed on: a pipe, terminals of each kind, one narrower than it.
CONSOLES = [
    {"width": 160},  # a pipe: ablate's console
    {"width": 120, "force_terminal": True, "color_system": "truecolor"},
    {"width": 100, "force_terminal": True, "color_system": "standard"},
    {"width": 100, "force_terminal": True, "safe_box": True, "legacy_windows": False},
    {"width": 30},  # narrower than the table: rich shrinks its columns
]


def test_text_tables_align_by_terminal_cells() -> None:
    """ablate status prints plain text (10,000 rows in milliseconds): every line of a
    column starts at the same terminal cell, wide characters counted as two (rich's
    cell_len, checked here against unicodedata's east-asian widths)."""
    import unicodedata

    from ablate.cli.view import text_table

    def cells(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

    names = ["baseline", "lr 0.2 ünïcode", "日本語 variant", "x[red]y", "—"]
    text = text_table(("variant", "n"), [[n, str(i * 100)] for i, n in enumerate(names)],
                      right=("n",))
    lines = text.splitlines()
    assert len(lines) == 2 + len(names)
    assert len({cells(line) for line in lines}) == 1  # right-aligned last column
    for name, line in zip(names, lines[2:], strict=True):
        assert (line.startswith(name) and "[red]" in line) or "[red]" not in name


def test_the_next_run_starts_when_one_ends_not_at_the_next_poll() -> None:
    """A local run's process is watched through a pidfd: the orchestrator's wait wakes the
    moment it exits."""
    import select

    from ablate.launch.local import ProcessJob

    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    with open(os.devnull, "wb") as log:
        job = ProcessJob(run={"hash": "h"}, devices=[0], proc=proc, log=log)
        fd = job.exit_fd()
        if fd is None:
            proc.kill()
            proc.wait()
            pytest.skip("no pidfd_open on this system: runs are polled")
        assert select.select([fd], [], [], 0)[0] == []  # running
        assert proc.stdin is not None
        proc.stdin.close()  # it exits
        assert select.select([fd], [], [], 60)[0] == [fd]
        assert job.poll() == 0
        job.close()
        assert job.exit_fd() is None


def test_reading_the_database_never_imports_torch(tmp_path: Path) -> None:
    """ablate status and ablate report start in a fraction of a second: they import neither
    torch nor the model zoo (a CLI that imported them took 3-5 s to start)."""
    db = tmp_path / "r.db"
    store = Store(f"sqlite:///{db}")
    rows = [_spec("h0", config={"model": {"name": "resnet20"}, "tricks": {"zero_gamma": {}}})]
    store.register_study("s", "s.yaml", "add_one", {}, rows)
    store.close()
    code = ("import sys; from ablate.cli import app\n"
            "for args in (['status', '--db', sys.argv[1]], ['report', '--db', sys.argv[1]]):\n"
            "    try:\n"
            "        app(args, prog_name='ablate')\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'zoo.models', "
            "'zoo.tricks') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, f"sqlite:///{db}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_status_imports_no_statistics(tmp_path: Path) -> None:
    """`ablate status` only reads rows: it imports neither scipy (the report's statistics,
    1.5 s of a loaded machine's start-up when the CLI module imported them) nor pandas."""
    db = tmp_path / "r.db"
    Store(f"sqlite:///{db}").close()
    code = ("import sys; from ablate.cli import app\n"
            "try:\n"
            "    app(['status', '--db', sys.argv[1]], prog_name='ablate')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'pandas', "
            "'statsmodels', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code, f"sqlite:///{db}"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=LIMIT).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def _spec(run_hash: str, seed: int = 0, config: dict[str, Any] | None = None,
          model: str = "resnet20") -> Any:
    """A planned run of one epoch in directory r<seed>."""
    from ablate.study.spec import RunSpec

    return RunSpec(variant="baseline", variant_index=0, change="", seed=seed, hash=run_hash,
                   config=config or {}, run_dir=f"r{seed}", nproc=1, nproc_per_node=1,
                   nnodes=1, epochs=1, model=model)


def test_a_registered_run_records_the_model_it_trains(tmp_path: Path) -> None:
    """The model after model-selecting tricks is stored with the run: the report names it
    without the trick registry."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    store = Store(url)
    store.register_study("new", "s.yaml", "add_one", {}, [_spec("h0", model="resnet50v2")])
    assert db_rows(tmp_path / "m.db", "select model from run") == [("resnet50v2",)]
    store.close()

