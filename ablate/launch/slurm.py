"""SLURM through submitit: each run of a study is one SLURM job.

The orchestrator (``ablate run`` on a login node, or in a small CPU job) submits one job per
run with :class:`SlurmLauncher`, keeps claiming, mirroring and recording runs exactly as it
does for local runs, and stores each job's id and state with its run (``ablate status``).

Inside the allocation the job runs :class:`TrainJob`: one submitit task per node, each
starting that node's torchrun agent. One node: ``torchrun --standalone``. Several nodes:
the agents meet by c10d rendezvous on the allocation's first node (``launch.rdzv_port``)
under the run's hash. Near its time limit, or when pre-empted, SLURM signals the job;
submitit then calls :meth:`TrainJob.checkpoint`, which stops the trainer (its last epoch's
checkpoint stays in RUN_DIR) and hands submitit the same callable to requeue: the requeued
job starts the trainer on the same RUN_DIR, and the trainer resumes from the checkpoint.

``launch.executor: local`` uses submitit's LocalExecutor instead: the same callable, the
same files, run as local processes (no SLURM needed), to try a study before the cluster.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import DelayedSubmission

from ablate.errors import AblateError
from ablate.launch.local import (
    Job,
    Launcher,
    torchrun_command,
    write_run_config,
)
from ablate.study.spec import Launch, RunSpec
from zoo.contract import RUN_CONFIG, launch_log

#: submitit's files (pickled job, its stdout/stderr) live in RUN_DIR/SUBMITIT_DIR.
SUBMITIT_DIR = "submitit"
#: Seconds to wait for a lost attempt's job to end after scancel (SLURM sends SIGTERM,
#: then SIGKILL after its KillWait, 30 s by default).
STALE_GRACE_S = 60.0

#: Wall-clock limit for jobs of ``executor: local`` when the study gives none (submitit's
#: own default, two minutes, would stop most runs).
LOCAL_TIME_MIN = 7 * 24 * 60

# The torchrun agent this job process started (one per process): checkpoint() stops it.
_CHILD: subprocess.Popen[bytes] | None = None


def _stop_child(grace: float) -> None:
    """SIGTERM the agent's process group (torchrun forwards it to the trainers, which keep
    their last checkpoint), SIGKILL after ``grace`` seconds."""
    global _CHILD
    child, _CHILD = _CHILD, None
    if child is None or _reaped(child, 0.0):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    if not _reaped(child, grace):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        _reaped(child, 30.0)


def _reaped(child: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether ``child`` exited within ``timeout`` seconds (reaping it).

    Not ``Popen.wait``: this runs in submitit's signal handler, which may have interrupted
    a ``Popen.poll`` of the same child that holds Popen's internal lock."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            return True
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@dataclass
class TrainJob:
    """What one job runs on each of its nodes: this node's torchrun agent of one run.

    Picklable (submitit stores it with the job) and idempotent: started again on the same
    RUN_DIR, the trainer resumes from its checkpoint, or returns at once if the run is done.
    """

    run_hash: str
    run_dir: str
    nnodes: int = 1
    nproc_per_node: int = 1
    rdzv_port: int = 29500
    #: OMP_NUM_THREADS per training process (None: leave torchrun's default).
    threads: int | None = None

    def command(self, first_host: str | None) -> list[str]:
        """torchrun for this node; ``first_host`` is the allocation's first node."""
        out = Path(self.run_dir)
        endpoint = None if self.nnodes == 1 else f"{first_host}:{self.rdzv_port}"
        return torchrun_command(out / RUN_CONFIG, out, self.nproc_per_node, self.nnodes,
                                endpoint, run_id=self.run_hash)

    def __call__(self) -> int:
        """Run this node's agent to the end; raise if it fails (the job then fails)."""
        global _CHILD
        job_env = submitit.JobEnvironment()
        node = job_env.node
        cmd = self.command(job_env.hostnames[0] if self.nnodes > 1 else None)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = str(self.threads)
        log_path = Path(self.run_dir) / launch_log(node)
        with open(log_path, "ab") as log:
            log.write(f"$ {' '.join(cmd)}  # job {job_env.job_id}, node {node}\n".encode())
            log.flush()
            child = _CHILD = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                              env=env, start_new_session=True)
            try:
                # Sleep, not Popen.wait(): submitit's signal handler (checkpoint) must be
                # able to run, and to reap the child, at any moment.
                while not _reaped(child, 1.0):
                    pass
                rc = child.returncode
            finally:  # cancelled (SIGINT, SIGTERM) or requeued: never leave the agent behind
                _stop_child(grace=20.0)
        if rc != 0:
            raise RuntimeError(f"torchrun exited with code {rc} (see {log_path})")
        return rc

    def checkpoint(self) -> DelayedSubmission:
        """submitit calls this on time-out or pre-emption, before it requeues the job.

        The state to keep is already on disk: the trainer checkpoints atomically after every
        epoch. So stop the trainer and requeue the same callable; it resumes from RUN_DIR.
        """
        _stop_child(grace=60.0)
        return DelayedSubmission(TrainJob(**self.__dict__))


@dataclass(kw_only=True)
class SlurmJob(Job):
    """A submitted run, as the orchestrator sees it."""

    job: Any  # submitit.Job
    _outcome: tuple[int, str | None] | None = None

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def state(self) -> str:
        """submitit's view of the job: PENDING, RUNNING, COMPLETED, TIMEOUT, ... (SLURM),
        RUNNING, FINISHED, INTERRUPTED (local)."""
        try:
            return str(self.job.state)
        except Exception:  # sacct unreachable for a moment: not a reason to stop
            return "UNKNOWN"

    def poll(self) -> int | None:
        if self._outcome is None:
            if not self.job.done():
                return None
            exc = self.job.exception()
            self._outcome = (0, None) if exc is None else (1, _reason(exc))
        return self._outcome[0]

    def error(self) -> str | None:
        return None if self._outcome is None else self._outcome[1]

    def stop(self, grace: float = 30.0) -> None:
        """Cancel the job (scancel); the trainer keeps its last checkpoint."""
        with contextlib.suppress(Exception):
            self.job.cancel(check=False)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if self.job.done(force_check=True):
                    return
            time.sleep(0.5)


def _reason(exc: BaseException) -> str:
    """One line from submitit's error: the exception the job raised, or why it never ended."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    raised = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", ln)]
    return (raised[-1] if raised else lines[0] if lines else type(exc).__name__)[:500]


@dataclass
class SlurmLauncher(Launcher):
    """Submits each run as one SLURM job (or one LocalExecutor job, ``executor: local``)."""

    launch: Launch
    #: OMP_NUM_THREADS per process; default: the job's CPUs split between its processes.
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.launch.executor == "slurm":
            if shutil.which("sbatch") is None:
                raise AblateError("backend: slurm: no sbatch here; run 'ablate run' where "
                                  "SLURM's commands are (a login node), or set "
                                  "launch.executor: local to try the study on this machine")
            if self.launch.time is None:
                raise AblateError("launch.time: required with backend: slurm (minutes or "
                                  "D-HH:MM:SS); submitit would ask for 5 minutes")

    def parameters(self, run: RunSpec) -> dict[str, Any]:
        """submitit's AutoExecutor parameters for one run's job."""
        lc = self.launch
        gpus = lc.gpus_per_node or None
        return {
            "name": f"ablate-{run.hash[:8]}",
            "timeout_min": lc.time or LOCAL_TIME_MIN,
            "nodes": lc.nnodes,
            "tasks_per_node": 1,  # one torchrun agent per node; it starts the processes
            "gpus_per_node": gpus,
            "cpus_per_task": lc.cpus_per_task,
            "mem_gb": lc.mem_gb,
            "slurm_partition": lc.partition,
            "slurm_account": lc.account,
            "slurm_qos": lc.qos,
            "slurm_constraint": lc.constraint,
            "slurm_setup": list(lc.setup) or None,
            "slurm_additional_parameters": dict(lc.additional) or None,
            "local_setup": list(lc.setup) or None,
        }

    def train_job(self, run: RunSpec) -> TrainJob:
        lc = self.launch
        threads = self.threads
        if threads is None and lc.cpus_per_task:
            threads = max(1, lc.cpus_per_task // lc.nproc_per_node)
        return TrainJob(run_hash=run.hash, run_dir=run.run_dir, nnodes=lc.nnodes,
                        nproc_per_node=lc.nproc_per_node, rdzv_port=lc.rdzv_port,
                        threads=threads)

    def cancel_stale(self, run: RunSpec, job_id: str) -> None:
        """scancel the job of a lost attempt at ``run`` and wait (up to a minute) for it to
        end, so that its trainer releases the run directory before the new job's starts.
        LocalExecutor jobs have no id another process can cancel; they are left alone."""
        if self.launch.executor != "slurm":
            return
        folder = Path(run.run_dir) / SUBMITIT_DIR
        stale = SlurmJob(run=run, devices=[], job=submitit.SlurmJob(folder, job_id))
        stale.stop(grace=STALE_GRACE_S)

    def start(self, run: RunSpec, devices: list[int]) -> SlurmJob:
        write_run_config(run)
        folder = Path(run.run_dir) / SUBMITIT_DIR
        executor = submitit.AutoExecutor(
            folder=folder, cluster=self.launch.executor,
            slurm_max_num_timeout=self.launch.max_timeouts,
            local_max_num_timeout=self.launch.max_timeouts,
        )
        executor.update_parameters(**self.parameters(run))
        job = executor.submit(self.train_job(run))
        return SlurmJob(run=run, devices=devices, job=job)
