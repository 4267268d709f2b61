"""SLURM as a cluster really does it: a real slurmctld and slurmd (``tools/slurm-local.sh``,
a one-node cluster on localhost without accounting, as CI starts it), real sbatch, squeue,
scontrol requeue, scancel and time limits, real digits runs.

Skipped, with the reason, when no cluster answers (``sinfo``). Nothing waits on the clock:
every test holds a trainer (SIGSTOP) at the point it needs, and polls for states under one
generous limit. Each study's results must equal the local backend's, bitwise."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from ablate.launch.slurm import SUBMITIT_DIR, SlurmQueue
from tests.conftest import ROOT, signal_pending, trainers_on
from tests.test_orchestrator import db_rows, write_study
from tests.test_reliability import LIMIT_S, poll, run_args, small_study

# COLUMNS: the live view's lines unwrapped, as the tests read them.
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
#: A one-CPU job per run; the study's time limit in minutes.
LAUNCH = {"backend": "slurm", "nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "time": 10}
#: Every metric but the timings.
METRICS = ("select run_hash, epoch, key, value from metric where key not in "
           "('images_per_s', 'seconds', 'train_seconds') order by 1, 2, 3")
RESULTS = "select run_hash, top1, top5, best_top1, best_top5 from result order by 1"


def _cluster_missing() -> str | None:
    """Why no SLURM cluster can be used here, or None when one answers with a node up."""
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no SLURM cluster reachable ({exc})"
    up = {"idle", "mixed", "allocated", "completing"}
    if out.returncode != 0 or not up & set(out.stdout.split()):
        return (f"no SLURM cluster reachable (sinfo: {(out.stderr or out.stdout).strip()}); "
                f"start one as root with: eval \"$(tools/slurm-local.sh)\"")
    return None


pytestmark = pytest.mark.skipif((reason := _cluster_missing()) is not None,
                                reason=reason or "")


def slurm_study(data: Path, epochs: int = 3, seeds: int = 2, **launch: Any) -> dict[str, Any]:
    """The reliability tests' small study (baseline and one variant, or the baseline alone
    with ``seeds=1``), one SLURM job per run."""
    spec = small_study(data, epochs=epochs)
    if seeds == 1:
        spec["variants"] = []
    spec["launch"] = {**LAUNCH, **launch}
    return spec


@pytest.fixture(scope="module")
def reference(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same study trained by the local backend, without a fault."""
    tmp = tmp_path_factory.mktemp("ref")
    study = write_study(tmp / "s.yaml", small_study(digits_dir))
    db = tmp / "ref.db"
    proc = subprocess.run(run_args(study, db, tmp / "runs"), cwd=tmp, env=ENV,
                          capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return db


@pytest.fixture
def orchestrators(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """``ablate run`` processes a test starts; those left are killed, their jobs cancelled."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    jobs = {j for run in tmp_path.glob("runs/*/") for j in job_ids(run)}
    if jobs:
        subprocess.run(["scancel", *sorted(jobs)], timeout=60, check=False)


def start(study: Path, tmp: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(run_args(study, tmp / "s.db", tmp / "runs", *extra), cwd=tmp,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(proc: subprocess.Popen[str]) -> str:
    return proc.communicate(timeout=LIMIT_S)[0]


def job_ids(run_dir: Path) -> set[str]:
    """Every SLURM job ever submitted for a run (submitit names its files by job id)."""
    return {p.name.split("_")[0] for p in (run_dir / SUBMITIT_DIR).glob("*_submitted.pkl")}


def epochs_done(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def hold_trainer(runs: Path, orchestrator: subprocess.Popen[str], at_epoch: int = 0,
                 skip: Collection[int] = ()) -> tuple[int, Path]:
    """SIGSTOP a trainer (not one of ``skip``) once its run has ``at_epoch`` epochs and
    their checkpoint: it cannot finish while SLURM does what the test asks of it."""
    def stopped() -> tuple[int, Path] | None:
        assert orchestrator.poll() is None, orchestrator.communicate()[0]
        for pid, out in trainers_on(runs).items():
            if pid in skip or epochs_done(out) < at_epoch:
                continue
            os.kill(pid, signal.SIGSTOP)
            if epochs_done(out) == at_epoch and (
                    at_epoch == 0 or (out / "checkpoint.pt").exists()):
                return pid, out
            os.kill(pid, signal.SIGCONT)  # one epoch too far, or between two writes
        return None
    return poll(stopped, f"a trainer with {at_epoch} epochs")


def release_when_signalled(pid: int, sig: int = signal.SIGTERM) -> None:
    """Continue a held trainer once ``sig`` waits on it (from SLURM, or torchrun forwarding
    SLURM's stop), so that it meets the signal as a running trainer would."""
    poll(lambda: signal_pending(pid, sig), f"{signal.Signals(sig).name} for the held trainer")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True,
                          timeout=60).stdout


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """``db_rows``, or none while the orchestrator has not made the database yet."""
    try:
        return db_rows(db, sql)
    except sqlite3.OperationalError:
        return []


def assert_equals_reference(db: Path, reference: Path) -> None:
    assert db_rows(db, RESULTS) == db_rows(reference, RESULTS)  # same hashes, bitwise
    assert db_rows(db, METRICS) == db_rows(reference, METRICS)


def test_study_on_slurm_equals_local_when_a_job_is_requeued_midrun(
    digits_dir: Path, reference: Path, tmp_path: Path, orchestrators: list[Any]
) -> None:
    """scontrol requeue (what an admin, or PreemptMode=REQUEUE, does) of a running job: the
    same job resumes the same attempt; no failed attempt, no second job, no job left."""
    study = write_study(tmp_path / "s.yaml", slurm_study(digits_dir))
    runs, db = tmp_path / "runs", tmp_path / "s.db"
    orchestrators.append(proc := start(study, tmp_path))
    pid, victim = hold_trainer(runs, proc, at_epoch=1)
    (job,) = job_ids(victim)
    slurm("scontrol", "requeue", job)
    release_when_signalled(pid)
    out = finish(proc)
    assert proc.returncode == 0 and "2 trained, 0 reused, 0 failed" in out, out

    assert_equals_reference(db, reference)
    assert job_ids(victim) == {job}  # requeued, never submitted again
    assert db_rows(db, "select count(*) from run where attempts != 1") == [(0,)]
    assert db_rows(db, "select status, count(*) from attempt group by 1") == [("succeeded", 2)]
    launch_log = (victim / "launch.log").read_text()
    assert launch_log.count("$ ") == 2 and "stopped by SLURM (SIGTERM)" in launch_log
    assert "resumed" in (victim / "train.log").read_text()
    # SLURM's own states, without accounting: every job is over, none waits in the queue.
    jobs = db_rows(db, "select job_id, job_state from run")
    queue = SlurmQueue()
    assert {(j, queue.state(j)) for j, _ in jobs} == {(j, "COMPLETED") for j, _ in jobs}
    assert {state for _, state in jobs} == {"COMPLETED"}
    status = subprocess.run([sys.executable, "-m", "ablate", "status", "--db",
                             f"sqlite:///{db}"], env={**ENV, "COLUMNS": "200"},
                            capture_output=True, text=True, check=True).stdout
    assert "COMPLETED" in status and "UNKNOWN" not in status
    assert "sacct" not in out and "Bypassing" not in out


def test_scancel_leaves_the_run_cancelled_and_the_next_run_resumes_it(
    digits_dir: Path, reference: Path, tmp_path: Path, orchestrators: list[Any]
) -> None:
    study = write_study(tmp_path / "s.yaml", slurm_study(digits_dir))
    runs, db = tmp_path / "runs", tmp_path / "s.db"
    orchestrators.append(proc := start(study, tmp_path))
    pid, victim = hold_trainer(runs, proc, at_epoch=1)
    (job,) = job_ids(victim)
    slurm("scancel", job)
    release_when_signalled(pid)
    out = finish(proc)
    assert "1 trained, 0 reused, 0 failed, 1 cancelled" in out, out
    assert proc.returncode == 3, out  # the study is not complete: no `&& ablate report`
    (status, error), = db_rows(db, f"select status, error from run where hash = '{victim.name}'")
    assert status == "cancelled" and f"SLURM job {job} was cancelled (scancel)" in error
    assert db_rows(db, "select count(*) from attempt where status = 'failed'") == [(0,)]
    assert job_ids(victim) == {job}  # not submitted again by the same orchestrator

    orchestrators.append(again := start(study, tmp_path))
    out = finish(again)
    assert again.returncode == 0 and "1 trained, 1 reused, 0 failed" in out, out
    assert "resumed" in (victim / "train.log").read_text()
    assert_equals_reference(db, reference)


def test_a_killed_orchestrator_s_queued_jobs_are_adopted_not_submitted_again(
    digits_dir: Path, reference: Path, tmp_path: Path, orchestrators: list[Any]
) -> None:
    """The orchestrator SIGKILLed while its jobs wait in the queue (held, so they wait for
    as long as the test needs): the next one follows the same jobs to their end."""
    study = write_study(tmp_path / "s.yaml",
                        slurm_study(digits_dir, additional={"hold": True}))
    runs, db = tmp_path / "runs", tmp_path / "s.db"
    orchestrators.append(first := start(study, tmp_path))
    recorded = "select job_id from run where job_id is not null"
    poll(lambda: len(rows(db, recorded)) == 2, "two recorded jobs")
    jobs = sorted(j for (j,) in db_rows(db, recorded))
    first.kill()
    first.communicate()
    queue = SlurmQueue()
    assert {queue.state(j) for j in jobs} == {"PENDING"}

    orchestrators.append(second := start(study, tmp_path))
    mine = f"select count(*) from run where owner like '%:{second.pid}:%' and job_id is not null"
    poll(lambda: db_rows(db, mine) == [(2,)], "the second orchestrator to take both runs")
    slurm("scontrol", "release", ",".join(jobs))
    out = finish(second)
    assert second.returncode == 0 and "2 trained, 0 reused, 0 failed" in out, out
    assert out.count("adopted job") == 2, out
    assert sorted(j for (j,) in db_rows(db, "select job_id from run")) == jobs
    assert sorted(j for run in runs.iterdir() if run.is_dir() for j in job_ids(run)) == jobs
    assert_equals_reference(db, reference)


def test_a_time_limit_reached_more_than_max_timeouts_is_one_line(
    digits_dir: Path, tmp_path: Path, orchestrators: list[Any]
) -> None:
    """launch.time: 1 minute, no requeue after a time-out, a run far longer than that (100
    epochs): SLURM's USR2 (90 s before the limit, so at its first check) ends the run with
    one line that names both settings."""
    study = write_study(tmp_path / "s.yaml", slurm_study(digits_dir, epochs=100, seeds=1,
                                                         time=1, max_timeouts=0))
    orchestrators.append(proc := start(study, tmp_path, "--max-attempts", "1"))
    out = finish(proc)
    assert proc.returncode == 1, out
    expected = ("time limit reached 1 times (launch.time: 1 min; launch.max_timeouts: 0 "
                "requeues): raise either and run again; the run resumes from its checkpoint")
    assert db_rows(tmp_path / "s.db", "select status, error from run") == [("failed", expected)]
    assert " ".join(expected.split()) in " ".join(out.split()), out


def test_a_time_limit_signal_twice_then_the_run_succeeds(
    digits_dir: Path, reference: Path, tmp_path: Path, orchestrators: list[Any]
) -> None:
    """Twice, once the run has one more epoch, the job gets what SLURM sends before a time
    limit (USR2 to the job's step, here by ``scancel --signal``: SLURM's own timing is too
    coarse to place, up to 60 s early): each time submitit checkpoints and requeues the
    same job, which resumes; with launch.max_timeouts 2 the third start trains to the end,
    bitwise equal to the uninterrupted run."""
    study = write_study(tmp_path / "s.yaml", slurm_study(digits_dir, seeds=1, max_timeouts=2))
    runs, db = tmp_path / "runs", tmp_path / "s.db"
    orchestrators.append(proc := start(study, tmp_path, "--max-attempts", "1"))
    held: list[int] = []
    for epoch in (1, 2):
        pid, victim = hold_trainer(runs, proc, at_epoch=epoch, skip=held)
        (job,) = job_ids(victim)
        slurm("scancel", "--signal=USR2", job)  # to every process of the step, as SLURM
        release_when_signalled(pid, signal.SIGUSR2)
        held.append(pid)
    out = finish(proc)
    assert proc.returncode == 0 and "1 trained, 0 reused, 0 failed" in out, out
    logs = "".join(p.read_text() for p in (victim / SUBMITIT_DIR).glob("*_log.out"))
    assert logs.count("this job is timed-out") == 2, logs[-3000:]
    assert "Requeued job" in logs and "(0 remaining timeouts)" in logs, logs[-3000:]
    assert job_ids(victim) == {job}
    assert db_rows(db, "select status, attempts from run") == [("succeeded", 1)]
    assert (victim / "launch.log").read_text().count("$ ") == 3
    for query in (RESULTS, METRICS):
        assert db_rows(db, query) == [row for row in db_rows(reference, query)
                                      if row[0] == victim.name]
