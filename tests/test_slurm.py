"""SLURM through submitit, tested with submitit's LocalExecutor (no SLURM here): a study runs
end to end as one job per run, a pre-empted job is requeued and resumes from its
checkpoint, and the database ends with the same rows as the local backend gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from submitit.helpers import DelayedSubmission

from ablate.errors import AblateError, StudyError
from ablate.launch.slurm import SUBMITIT_DIR, SlurmLauncher, TrainJob
from ablate.study.spec import Launch, RunSpec, parse_launch, parse_slurm_time
from tests.conftest import LIMIT, ROOT
from tests.test_orchestrator import db_rows, study_dict, write_study

SLURM = {"backend": "slurm", "nodes": 2, "gpus_per_node": 8, "partition": "gpu",
         "time": "1-12:00:00", "account": "vision", "cpus_per_task": 32, "mem_gb": 480,
         "setup": ["module load cuda/12.4"], "additional": {"exclusive": True}}


def test_slurm_launch_is_typed_and_validated() -> None:
    launch = parse_launch(SLURM)
    assert (launch.nnodes, launch.nproc_per_node, launch.world_size) == (2, 8, 16)
    assert launch.time == 36 * 60 and launch.setup == ("module load cuda/12.4",)
    assert [parse_slurm_time(t) for t in (90, "90", "1:30:00", "2-00:00:00", "0:30")] == [
        90, 90, 90, 2 * 24 * 60, 1]
    assert parse_launch({"backend": "slurm"}).nproc_per_node == 1  # a CPU job
    bad = [
        ({**SLURM, "partion": "gpu"}, "unknown key 'launch.partion'; did you mean "
                                      "'launch.partition'?"),
        ({**SLURM, "nproc_per_node": 4}, "must equal launch.gpus_per_node (8)"),
        ({**SLURM, "nnodes": 4}, "launch.nodes (2) and launch.nnodes (4) disagree"),
        ({**SLURM, "rdzv_endpoint": "a:1"}, "launch.rdzv_endpoint: not with backend: slurm"),
        ({**SLURM, "time": "soon"}, "launch.time: expected minutes or a SLURM time"),
        ({**SLURM, "gpus_per_node": "8"}, "launch.gpus_per_node: expected"),
        ({**SLURM, "backend": "pbs"}, "launch.backend"),
        ({**SLURM, "executor": "local"}, "launch.executor: local runs one node only"),
        ({"account": "vision"}, "launch.account: only with backend: slurm"),
    ]
    for raw, message in bad:
        with pytest.raises(StudyError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_launch(raw)


def _spec(run_hash: str, run_dir: str) -> RunSpec:
    return RunSpec(variant="baseline", variant_index=0, change="", seed=0, hash=run_hash,
                   config={}, run_dir=run_dir, nproc=8, nproc_per_node=8, nnodes=1,
                   epochs=1, model="resnet20")


def test_each_run_becomes_one_job_with_the_study_resources() -> None:
    launcher = SlurmLauncher(parse_launch({**SLURM, "executor": "local", "nodes": 1}))
    run = _spec("0123456789abcdef", "/shared/runs/0123456789abcdef")
    params = launcher.parameters(run)
    assert params["nodes"] == 1 and params["tasks_per_node"] == 1  # one agent per node
    assert params["gpus_per_node"] == 8 and params["timeout_min"] == 36 * 60
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "vision"
    assert params["slurm_setup"] == ["module load cuda/12.4"]
    assert params["slurm_additional_parameters"] == {"exclusive": True}
    assert launcher.train_job(run).threads == 4  # 32 CPUs over 8 processes
    # Several nodes: every node's agent meets on the allocation's first node.
    job = TrainJob(run_hash="0123456789abcdef", run_dir="/r", nnodes=2, nproc_per_node=8,
                   rdzv_port=29411)
    cmd = " ".join(job.command("gpu-node-17"))
    assert cmd.endswith("--rdzv-backend c10d --rdzv-endpoint gpu-node-17:29411 --rdzv-id "
                        "0123456789abcdef --nnodes 2 --nproc-per-node 8 -m zoo.train "
                        "--config /r/run.yaml --out /r")
    # Pre-empted or timed out: requeue the same callable; it resumes from RUN_DIR.
    again = job.checkpoint()
    assert isinstance(again, DelayedSubmission) and again.function == job
    assert again.function is not job and not again.args and not again.kwargs


def test_without_sbatch_a_slurm_study_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AblateError, match=r"no sbatch here.*executor: local"):
        SlurmLauncher(Launch(backend="slurm", time=60))


def _task_pid(folder: Path) -> int | None:
    """The pid of the submitit task (``python -m submitit.core._submit FOLDER``)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in argv and str(folder).encode() in argv:
            return int(proc.name)
    return None


def _ablate(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ablate", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_study_through_submitit_equals_local_even_when_preempted(
    digits_dir: Path, tmp_path: Path
) -> None:
    variants = [{"name": "lr 0.05", "set": {"optim.lr": 0.05}}]
    local = study_dict(digits_dir, seeds=[0], variants=variants)
    slurm = {**local, "launch": {"backend": "slurm", "executor": "local", "nodes": 1,
                                 "gpus_per_node": 0, "time": 30}}
    db, ref_db = tmp_path / "slurm.db", tmp_path / "local.db"
    runs = tmp_path / "runs"
    common = ["--max-parallel", "2", "--cpu-threads", "1"]
    procs = [
        _ablate("run", str(write_study(tmp_path / "slurm.yaml", slurm)), "--db",
                f"sqlite:///{db}", "--runs-dir", str(runs), *common, cwd=tmp_path),
        _ablate("run", str(write_study(tmp_path / "local.yaml", local)), "--db",
                f"sqlite:///{ref_db}", "--runs-dir", str(tmp_path / "ref_runs"), *common,
                cwd=tmp_path),
    ]
    try:
        # Pre-empt one job as SLURM would (USR2 to the job's task) once it has checkpointed.
        deadline = time.monotonic() + LIMIT
        victim: Path | None = None
        while victim is None and time.monotonic() < deadline:
            for metrics in runs.glob("*/metrics.jsonl"):
                pid = _task_pid(metrics.parent / SUBMITIT_DIR)
                if pid and (metrics.parent / "checkpoint.pt").exists() and \
                        len(metrics.read_text().splitlines()) < 3:
                    os.kill(pid, signal.SIGUSR2)
                    victim = metrics.parent
                    break
            time.sleep(0.1)
        outs = [p.communicate(timeout=LIMIT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert victim is not None, "no job reached its first checkpoint in time"
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(outs)
    assert "2 trained, 0 reused, 0 failed" in outs[0] and "2 trained" in outs[1]

    # Requeued by submitit, resumed by the trainer.
    logs = "".join(p.read_text() for p in (victim / SUBMITIT_DIR).glob("*_log.*"))
    assert "Calling checkpoint method" in logs and "Requeued job" in logs, logs[-3000:]
    assert "resumed" in (victim / "train.log").read_text()
    assert (victim / "launch.log").read_text().count("$ ") == 2  # started, then requeued

    # The same rows as the local backend: results, every metric but the timings, statuses.
    for q in ("select hash, status, attempts, epochs_done, top1 from run order by 1",
              "select run_hash, top1, top5, best_top1, best_top5, params, macs, world_size, "
              "audit from result order by 1",
              "select run_hash, epoch, key, value from metric where key not in "
              "('images_per_s', 'seconds', 'train_seconds') order by 1, 2, 3",
              "select count(*) from metric"):
        assert db_rows(db, q) == db_rows(ref_db, q), q
    jobs = db_rows(db, "select job_id, job_state from run")
    assert all(job_id and job_id.isdigit() for job_id, _ in jobs)
    assert {state for _, state in jobs} == {"FINISHED"}
    assert db_rows(ref_db, "select job_id, job_state from run") == [(None, None)] * 2

    # ablate status shows the scheduler's side.
    status = subprocess.run([sys.executable, "-m", "ablate", "status", "--db",
                             f"sqlite:///{db}", "--json"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    runs_json: list[dict[str, Any]] = json.loads(status.stdout)["digits_three"]
    assert {(r["job_id"], r["job_state"]) for r in runs_json} == set(jobs)
    table = subprocess.run([sys.executable, "-m", "ablate", "status", "--db",
                            f"sqlite:///{db}"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
                           check=True).stdout
    assert "scheduler jobs" in table and jobs[0][0] in table and "FINISHED" in table


def test_a_lost_runs_job_still_held_is_adopted_not_submitted_again(
    digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which runs the orchestrator asks its launcher to adopt, and what it does with the
    answer: a lost run's recorded job that the scheduler still holds is followed to its
    end (never a second job); one it no longer holds is started again. A real cluster
    does the rest (tests/test_slurm_cluster.py: SIGKILL of the orchestrator, held jobs)."""
    from sqlalchemy import update

    from ablate.launch import orchestrator as orchestrate
    from ablate.launch.orchestrator import Orchestrator
    from ablate.store.db import RunRow, Status, Store
    from ablate.study.spec import load_study
    from tests.test_packing import RecordingLauncher

    monkeypatch.setattr(orchestrate, "POLL_S", 0.001)
    study = load_study(write_study(tmp_path / "s.yaml", study_dict(digits_dir, seeds=[0])))
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    events: list[tuple[str, str]] = []

    class Recording(RecordingLauncher):
        def adopt(self, run: RunSpec, job_id: str) -> Any:
            events.append(("adopt", f"{run.hash}:{job_id}"))
            if job_id != "4242":
                return None  # over: the run starts again
            return super().start(run, [0])  # stands in for the job SLURM still holds

        def start(self, run: RunSpec, devices: list[int]) -> Any:
            events.append(("start", run.hash))
            return super().start(run, devices)

    launcher = Recording({})
    orch = Orchestrator(study, store, tmp_path / "runs", gpus=[0], launcher=launcher)
    for row in orch.rows:
        launcher.ticks[row.hash] = 1
    store.register_study(study.name, str(study.path), study.mode, study.raw, orch.rows)
    held, gone, queued_with_job = (r.hash for r in orch.rows)
    with store.session() as s:
        for h, job in ((held, "4242"), (gone, "4343")):
            s.execute(update(RunRow).where(RunRow.hash == h)
                      .values(status=Status.lost, job_id=job, owner="dead-orchestrator"))
        s.execute(update(RunRow).where(RunRow.hash == queued_with_job).values(job_id="77"))
    assert orch.run().succeeded == 3
    assert sorted(e for e in events if e[0] == "adopt") == sorted(
        [("adopt", f"{held}:4242"), ("adopt", f"{gone}:4343")])  # only lost runs' jobs
    assert ("start", held) not in events  # adopted: never submitted again
    assert ("start", gone) in events and ("start", queued_with_job) in events


def test_trainers_spin_briefly_unless_the_caller_says_otherwise(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """GOMP_SPINCOUNT=30000 for every trainer, local or in a SLURM job (bench/threads.py:
    libgomp's longer default spin slows beside other work, PASSIVE idle); a caller's own
    spin count or wait policy wins."""
    import ablate.launch.local
    from ablate.launch.local import LocalLauncher, trainer_env

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setattr(ablate.launch.local, "cores_taken", lambda threads: False)  # idle
    env = trainer_env({"PATH": "/bin"}, 2)
    assert (env["OMP_NUM_THREADS"], env["GOMP_SPINCOUNT"]) == ("2", "30000")
    assert "OMP_WAIT_POLICY" not in env
    assert "OMP_NUM_THREADS" not in trainer_env({}, None)
    assert trainer_env({"GOMP_SPINCOUNT": "5"}, 1)["GOMP_SPINCOUNT"] == "5"
    passive = trainer_env({"OMP_WAIT_POLICY": "PASSIVE"}, 1)
    assert passive["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in passive
    local = LocalLauncher(use_gpus=False, threads=3).env([0])
    assert (local["OMP_NUM_THREADS"], local["GOMP_SPINCOUNT"]) == ("3", "30000")
    assert local["CUDA_VISIBLE_DEVICES"] == ""
    gpu = LocalLauncher(use_gpus=True, threads=3).env([1])
    assert gpu["CUDA_VISIBLE_DEVICES"] == "1" and gpu["GOMP_SPINCOUNT"] == "30000"


def test_a_cpu_trainer_sleeps_when_it_waits_only_where_other_work_wants_its_cores(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local launcher looks at the idle cores as it starts a CPU trainer: PASSIVE where
    they cannot hold its threads, the short spin where they can; a caller's own policy is
    taken without looking; GPU runs keep the spin."""
    import ablate.launch.local as local

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    asked: list[int] = []

    def taken(threads: int) -> bool:
        asked.append(threads)
        return verdict

    monkeypatch.setattr(local, "cores_taken", taken)
    verdict = True
    env = local.LocalLauncher(use_gpus=False, threads=2).env([])
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in env
    verdict = False
    env = local.LocalLauncher(use_gpus=False, threads=2).env([])
    assert env["GOMP_SPINCOUNT"] == local.SPIN_COUNT and "OMP_WAIT_POLICY" not in env
    assert asked == [2, 2]
    assert local.LocalLauncher(use_gpus=True, threads=2).env([0])["GOMP_SPINCOUNT"] == "30000"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert local.LocalLauncher(use_gpus=False, threads=2).env([])["OMP_WAIT_POLICY"] == "ACTIVE"
    assert asked == [2, 2]  # neither the GPU run nor the caller's policy looked


def test_idle_cores_sees_processes_that_keep_the_cores_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the kernel's own view: with one busy loop per core running, fewer than one
    core is idle, so a two-thread trainer would share its cores; unreadable counters say
    nothing (None, and the spin stays)."""
    from ablate.launch import cpuload

    cores = len(os.sched_getaffinity(0))
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(cores)]
    try:
        idle = cpuload.idle_cores(1.0)
        assert idle is not None and 0 <= idle < 1.0, idle
        assert cpuload.cores_taken(max(2, cores))
    finally:
        for p in loops:
            p.kill()
            p.wait()
    assert not cpuload.cores_taken(1)  # one thread waits for no sibling
    monkeypatch.setattr(cpuload, "PROC_STAT", tmp_path / "missing")
    assert cpuload.idle_cores(0.01) is None and not cpuload.cores_taken(2)
