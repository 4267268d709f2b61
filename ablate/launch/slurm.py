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
job starts the trainer on the same RUN_DIR, and the trainer resumes from the checkpoint. A
job SLURM stops with SIGTERM (``scontrol requeue``, ``PreemptMode=REQUEUE``, ``scancel``)
ends without a result: it is the same attempt, requeued and resumed, or cancelled.

The orchestrator reads job states from ``squeue`` (:class:`SlurmQueue`), not ``sacct``, so
clusters without accounting show real states; a job it finds still held by SLURM after a
restart is adopted (:meth:`SlurmLauncher.adopt`), never submitted twice.

``launch.executor: local`` uses submitit's LocalExecutor instead: the same callable, the
same files, run as local processes (no SLURM needed), to try a study before the cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import submitit
from submitit.helpers import DelayedSubmission

from ablate.errors import AblateError
from ablate.launch.local import (
    Job,
    Launcher,
    torchrun_command,
    trainer_env,
    write_run_config,
)
from ablate.study.spec import Launch, RunSpec
from zoo.contract import RUN_CONFIG, launch_log

#: submitit's files (pickled job, its stdout/stderr) live in RUN_DIR/SUBMITIT_DIR.
SUBMITIT_DIR = "submitit"

#: Wall-clock limit for jobs of ``executor: local`` when the study gives none (submitit's
#: own default, two minutes, would stop most runs).
LOCAL_TIME_MIN = 7 * 24 * 60

# The torchrun agent this job process started (one per process): checkpoint() stops it.
_CHILD: subprocess.Popen[bytes] | None = None
# The signal that SLURM stopped this job with (SIGTERM: requeue, scancel, pre-emption
# without a signal of its own), or None.
_STOPPED_BY: int | None = None


def _on_stop(signum: int, _frame: FrameType | None) -> None:
    """Remember that SLURM is stopping the job (it signals every process of the job: the
    torchrun agent and its trainers stop by themselves)."""
    global _STOPPED_BY
    _STOPPED_BY = signum


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
        env = trainer_env(os.environ, self.threads)
        log_path = Path(self.run_dir) / launch_log(node)
        # In place of submitit's handler, which only logs it: SIGTERM is SLURM stopping
        # the job (requeue, scancel), which is not the trainer failing.
        signal.signal(signal.SIGTERM, _on_stop)
        with open(log_path, "ab") as log:
            log.write(f"$ {' '.join(cmd)}  # job {job_env.job_id}, node {node}\n".encode())
            log.flush()
            child = _CHILD = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                              env=env, start_new_session=True)
            try:
                # Sleep, not Popen.wait(): submitit's signal handler (checkpoint) must be
                # able to run, and to reap the child, at any moment.
                while not _reaped(child, 1.0) and _STOPPED_BY is None:
                    pass
            finally:  # cancelled (SIGINT, SIGTERM) or requeued: never leave the agent behind
                _stop_child(grace=20.0)
            rc = child.returncode
            if rc != 0 and _STOPPED_BY is not None:
                # No result for submitit to record: SLURM either requeues the job, which
                # resumes the run from its checkpoint, or ends it (CANCELLED).
                log.write(f"# job {job_env.job_id}: stopped by SLURM "
                          f"({signal.Signals(_STOPPED_BY).name}), not by the trainer\n"
                          .encode())
                sys.exit(f"stopped by {signal.Signals(_STOPPED_BY).name}: requeued or "
                         f"cancelled by SLURM")
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


#: SLURM job states in which SLURM still holds the job: it runs, or runs again later
#: (requeued, pre-empted with PreemptMode=REQUEUE, suspended). No second job is submitted
#: for a run while its job is in one of them.
HELD_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "SUSPENDED",
    "PREEMPTED", "SPECIAL_EXIT", "RESV_DEL_HOLD"})
#: What :class:`SlurmQueue` answers for a job slurmctld no longer knows (it forgets ended
#: jobs after MinJobAge, 300 s by default).
GONE = "GONE"
#: Seconds between two ``squeue`` calls (one call answers for every job).
QUEUE_REFRESH_S = 5.0
#: Seconds a job may have ended before its result file shows (a network file system).
RESULT_GRACE_S = 10.0


class SlurmQueue:
    """Job states as slurmctld has them, from ``squeue``: pending, running, and ended jobs
    for MinJobAge seconds. It works without SLURM's accounting database, which ``sacct``
    (submitit's source of states) needs; small clusters often have none. One call answers
    for every job asked about, at most every ``refresh`` seconds."""

    def __init__(self, refresh: float = QUEUE_REFRESH_S) -> None:
        self.refresh = refresh
        self.states: dict[str, str] = {}
        self._asked_at = -float("inf")

    def state(self, job_id: str, fresh: bool = False) -> str | None:
        """``job_id``'s state (PENDING, RUNNING, COMPLETED, CANCELLED, ..., or :data:`GONE`);
        None while squeue cannot answer (slurmctld restarting) and nothing is known."""
        if job_id not in self.states or fresh or \
                time.monotonic() - self._asked_at >= self.refresh:
            self.states.setdefault(job_id, "")
            self._ask()
        return self.states[job_id] or None

    def forget(self, job_id: str) -> None:
        self.states.pop(job_id, None)

    def _ask(self) -> None:
        ids = sorted(self.states)
        try:
            out = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T",
                                  f"--jobs={','.join(ids)}"], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return  # keep what is known; asked again at the next refresh
        if out.returncode != 0 and "Invalid job id" not in out.stderr:
            return
        self._asked_at = time.monotonic()
        seen = dict(line.split("|", 1) for line in out.stdout.splitlines() if "|" in line)
        for job_id in ids:
            self.states[job_id] = seen.get(job_id, GONE).split()[0]


@dataclass(kw_only=True)
class SlurmJob(Job):
    """A submitted run, as the orchestrator sees it. Its end is its result file (submitit
    writes it when the job returns or raises); its state is SLURM's (``queue``), so a job
    that SLURM requeues, or a person cancels, is told apart from one that failed."""

    job: Any  # submitit.Job
    #: None for a LocalExecutor job (submitit knows its processes).
    queue: SlurmQueue | None = None
    #: The study's launch.time and launch.max_timeouts, for the message of the last timeout.
    time_min: int | None = None
    max_timeouts: int = 3
    _outcome: tuple[int, str | None] | None = None
    _cancelled: bool = False
    _ended_at: float | None = None

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def state(self) -> str:
        """SLURM's state of the job (PENDING, RUNNING, COMPLETED, CANCELLED, ...), or
        submitit's of a LocalExecutor job (RUNNING, FINISHED, INTERRUPTED)."""
        if self.queue is not None:
            return self.queue.state(self.job_id) or "UNKNOWN"
        try:
            return str(self.job.state)
        except Exception:  # not a reason to stop
            return "UNKNOWN"

    def poll(self) -> int | None:
        if self._outcome is None:
            self._outcome = self._ending()
        return None if self._outcome is None else self._outcome[0]

    def cancelled(self) -> bool:
        return self._cancelled

    def _ending(self) -> tuple[int, str | None] | None:
        """(exit code, reason) once the job is over; None while SLURM holds it."""
        if self.queue is None:
            return self._result() if self.job.done() else None
        state = self.queue.state(self.job_id)  # before the file: it may end in between
        now = time.monotonic()
        if self.job.paths.result_pickle.exists():
            # Recorded once SLURM has let the job go too (a study never says it is done
            # while one of its jobs is still in the queue), or after a grace.
            self._ended_at = self._ended_at or now
            if state in HELD_STATES and now - self._ended_at < 6 * RESULT_GRACE_S:
                return None
            return self._result()
        if state is None or state in HELD_STATES:
            return None
        self._ended_at = self._ended_at or now
        if now - self._ended_at < RESULT_GRACE_S:
            return None
        if state == "CANCELLED":
            self._cancelled = True
            return 1, f"SLURM job {self.job_id} was cancelled (scancel)"
        if state == GONE:
            return 1, (f"SLURM job {self.job_id} ended without a result, and SLURM no "
                       f"longer says how (see {self.job.paths.stderr})")
        return 1, f"SLURM job {self.job_id} ended {state} (see {self.job.paths.stderr})"

    def _result(self) -> tuple[int, str | None]:
        exc = self.job.exception()
        if exc is None:
            return 0, None
        if "timed-out too many times" in str(exc):
            return 1, (f"time limit reached {self.max_timeouts + 1} times (launch.time: "
                       f"{self.time_min} min; launch.max_timeouts: {self.max_timeouts} "
                       f"requeues): raise either and run again; the run resumes from its "
                       f"checkpoint")
        return 1, _reason(exc)

    def error(self) -> str | None:
        return None if self._outcome is None else self._outcome[1]

    def stop(self, grace: float = 30.0) -> None:
        """Cancel the job (scancel); the trainer keeps its last checkpoint."""
        with contextlib.suppress(Exception):
            self.job.cancel(check=False)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.queue is None:
                with contextlib.suppress(Exception):
                    if self.job.done(force_check=True):
                        return
            elif (state := self.queue.state(self.job_id, fresh=True)) is not None and \
                    state not in HELD_STATES:
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
    queue: SlurmQueue = field(default_factory=SlurmQueue)

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

    def adopt(self, run: RunSpec, job_id: str) -> SlurmJob | None:
        """The job ``job_id`` of an earlier attempt at ``run`` (its orchestrator stopped
        beating), if SLURM still holds it (pending, running, requeued): this orchestrator
        follows it to its end instead of submitting a second job. None when it is over, or
        is a LocalExecutor job (no id another process can follow)."""
        if self.launch.executor != "slurm":
            return None
        folder = Path(run.run_dir) / SUBMITIT_DIR
        job = self._job(run, [], submitit.SlurmJob(folder, job_id))
        if job.queue is not None and job.queue.state(job_id, fresh=True) in HELD_STATES:
            return job
        if job.queue is not None:
            job.queue.forget(job_id)
        return None

    def _job(self, run: RunSpec, devices: list[int], job: Any) -> SlurmJob:
        queue = self.queue if self.launch.executor == "slurm" else None
        return SlurmJob(run=run, devices=devices, job=job, queue=queue,
                        time_min=self.launch.time, max_timeouts=self.launch.max_timeouts)

    def start(self, run: RunSpec, devices: list[int]) -> SlurmJob:
        write_run_config(run)
        folder = Path(run.run_dir) / SUBMITIT_DIR
        executor = submitit.AutoExecutor(
            folder=folder, cluster=self.launch.executor,
            slurm_max_num_timeout=self.launch.max_timeouts,
            local_max_num_timeout=self.launch.max_timeouts,
        )
        executor.update_parameters(**self.parameters(run))
        return self._job(run, devices, executor.submit(self.train_job(run)))


class _Once(logging.Filter):
    """Lets each message through once (its numbers aside: "Call #12 - ...")."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = re.sub(r"\d+", "#", record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def log_submitit_to(path: Path) -> None:
    """Send the orchestrator's submitit log (its warnings, e.g. "Bypassing sacct error" on
    a cluster without accounting) to ``path``, each message once, instead of the terminal,
    where it would break the live view."""
    logger = logging.getLogger("submitit")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(_Once())
    logger.addHandler(handler)
    logger.propagate = False
