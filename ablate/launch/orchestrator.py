"""The orchestrator: trains every run of a study exactly once, and keeps the database true.

One loop: claim the next queued run that fits the free devices (atomically, in the
database), start it, mirror its run directory into the database while it trains (so
``ablate status`` elsewhere is live), record how it ended, until nothing is left. Ctrl-C
or SIGTERM stops the runs, marks them interrupted and leaves their checkpoints; the same
command later resumes them.

Where a run trains is the launcher's business: torchrun here (:class:`LocalLauncher`), one
SLURM job per run (:mod:`ablate.launch.slurm`). Several orchestrators, on one machine or many,
may share a study through one database; each run is claimed by exactly one of them. A
multi-node run without SLURM has one orchestrator (node 0) that claims and records it and a
:class:`Follower` on every other node that starts that node's torchrun agent.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TypeVar

from ablate.errors import AblateError
from ablate.launch import local as launch
from ablate.store.db import CLAIMABLE, Store, is_transient
from ablate.store.rebuild import record_membership
from ablate.store.schema import Status
from ablate.study.spec import RunSpec, Study
from zoo.contract import LAUNCH_LOG, METRICS, RESULT, MetricsRow, RunDir, read_metrics
from zoo.plugins import snapshot

T = TypeVar("T")

HEARTBEAT_S = 5.0
POLL_S = 0.5
#: Attempts at a run before it stays failed (``ablate run --max-attempts``).
MAX_ATTEMPTS = 3
#: Longest pause between tries of a busy database (doubling from POLL_S up to it).
MAX_BACKOFF_S = 10.0


@dataclass(frozen=True)
class Event:
    """What happened to a run, as the live view learns it (it reads nothing else)."""

    kind: str  # start | epoch | done | failed | interrupted | cancelled | planned (stage 2)
    run: RunSpec
    detail: str = ""
    #: With ``epoch``: the epoch's numbers as the run wrote them.
    metrics: MetricsRow | None = None


@dataclass
class Outcome:
    succeeded: int = 0
    failed: int = 0
    interrupted: int = 0
    #: Runs whose scheduler job a person cancelled (scancel) during this invocation.
    cancelled: int = 0
    reused: int = 0
    elsewhere: int = 0
    #: Runs of the study that are failed when it ends (this time's or an earlier one's).
    failed_left: int = 0
    #: Times a database operation met a busy database and was tried again.
    busy_retries: int = 0
    trained: list[str] = field(default_factory=list)


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; children were stopped and marked interrupted."""


class OrchestratorFault(AblateError):
    """The orchestrator's own loop failed (not a run): its trainers were stopped and their
    runs marked interrupted; one line says what failed."""


def default_max_parallel(study: Study, gpus: list[int] | None, n_runs: int) -> int:
    """Runs at once when ``--max-parallel`` is not given: every run at once on SLURM (the
    scheduler queues them), as many as the GPUs hold on a GPU node, one on a CPU."""
    if study.launch.backend == "slurm":
        return max(1, n_runs)
    if gpus is not None:
        return max(1, len(gpus))
    return 1


class Orchestrator:
    def __init__(self, study: Study, store: Store, runs_dir: Path,
                 max_parallel: int | None = None, gpus: list[int] | None = None,
                 retry_failed: bool = False, lost_after: float = 60.0,
                 cpu_threads: int | None = None,
                 on_event: Callable[[Event, Orchestrator], None] | None = None,
                 launcher: launch.Launcher | None = None,
                 specs: Sequence[RunSpec] | None = None,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        if max_attempts < 1:
            raise AblateError(f"--max-attempts {max_attempts}: expected 1 or more")
        self.study, self.store, self.runs_dir = study, store, runs_dir
        self.max_attempts = max_attempts
        #: Failed attempts at each run in this invocation: a failed run is tried again
        #: until it has failed ``max_attempts`` times (``--retry-failed``: runs that had
        #: failed before start over at zero).
        self.failures: dict[str, int] = {}
        #: Runs whose job a person cancelled while this orchestrator ran: left for the next.
        self.cancelled: set[str] = set()
        self.outcome = Outcome()
        self.rows = tuple(specs) if specs is not None else study.run_specs(runs_dir)
        #: Planned seeds: a run succeeded since the stage 2 was last planned.
        self._replan = study.planned is not None
        lc = study.launch
        if max_parallel is None:
            max_parallel = default_max_parallel(study, gpus, len({r.hash for r in self.rows}))
        if lc.backend == "local" and lc.nnodes > 1 and max_parallel > 1:
            raise AblateError("a multi-node run uses every node: one run at a time "
                              "(--max-parallel 1)")
        self.max_parallel, self.retry_failed = max_parallel, retry_failed
        if lc.backend == "local" and lc.nnodes > 1:
            # The other nodes' followers move on when a run ends, failed or not: a second
            # attempt here would wait at the rendezvous for agents that never come.
            self.max_attempts = 1
        self.lost_after = timedelta(seconds=lost_after)
        self.on_event = on_event or (lambda e, o: None)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # SLURM places jobs on its own GPUs: here a job only takes a slot.
        self.use_gpus = gpus is not None and lc.backend == "local"
        self.pool = launch.DevicePool(gpus if self.use_gpus else None, max_parallel)
        self.threads = cpu_threads or launch.cpu_threads(max_parallel, lc.nproc_per_node)
        if launcher is None:
            if lc.backend == "slurm":
                from ablate.launch.slurm import SlurmLauncher, log_submitit_to

                launcher = SlurmLauncher(lc, threads=cpu_threads)
                log_submitit_to(runs_dir / "submitit.log")
            else:
                launcher = launch.LocalLauncher(self.use_gpus, self.threads, lc.nnodes,
                                                lc.rdzv_endpoint)
        self.launcher = launcher
        self.active: dict[str, launch.Job] = {}
        self.epochs_seen: dict[str, int] = {}
        #: (size, mtime) of each active run's metrics.jsonl when last copied to the database.
        self._mirrored: dict[str, tuple[int, int]] = {}
        self._stop_signal: int | None = None
        self.started_at = time.monotonic()

    # ------------------------------------------------------------------ main loop

    def run(self) -> Outcome:
        """Train everything left to train; raises Interrupted on SIGINT/SIGTERM and
        :class:`OrchestratorFault` when its own loop fails (after stopping its trainers)."""
        outcome = self.outcome = Outcome()
        if self.study.planned is not None:  # stage 2 as far as the database's pilot fixes it
            self.rows = self.study.planned_specs(self.runs_dir, self.store.succeeded_top1)
            self._replan = False
        self.store.register_study(self.study.name, str(self.study.path), self.study.mode,
                                  self.study.raw, self.rows)
        for spec in self.rows:  # what a rebuild of the database reads back
            record_membership(spec, self.study.name, str(self.study.path), self.study.mode,
                              self.study.raw)
            # The plugins' code as planned, now: an edit while the study trains does not
            # reach runs planned before it. A finished run's directory is left as it is.
            if spec.plugins and not _succeeded(spec.run_dir):
                snapshot(spec.plugins, Path(spec.run_dir))
        self.store.mark_lost(self.lost_after)
        too_big = [r for r in self.rows if not self.pool.fits_ever(r.nproc_per_node)]
        if too_big:
            raise AblateError(f"launch.nproc_per_node={too_big[0].nproc_per_node} needs "
                              f"more GPUs than --gpus gives ({len(self.pool.free)})")
        statuses = self.store.run_status(r.hash for r in self.rows)
        outcome.reused = sum(1 for r in self.rows if statuses[r.hash] == Status.succeeded)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop(outcome)
        except Interrupted:
            raise
        except Exception as exc:
            # Whatever broke, no trainer outlives this loop unrecorded: stop them, mark
            # their runs interrupted (they resume next time), and say what broke.
            self._interrupt(outcome, best_effort=True)
            what = str(exc) if isinstance(exc, AblateError) else f"{type(exc).__name__}: {exc}"
            raise OrchestratorFault(
                f"the orchestrator stopped: {(what.strip().splitlines() or [what])[0]}"
                f"; its runs were stopped and marked interrupted; run the same command to "
                f"resume") from exc
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        statuses = self._retrying(outcome, lambda: self.store.run_status(
            r.hash for r in self.rows))
        outcome.elsewhere = sum(1 for s in statuses.values() if s == Status.running)
        outcome.failed_left = sum(1 for s in statuses.values() if s == Status.failed)
        return outcome

    def _loop(self, outcome: Outcome) -> None:
        last_beat = 0.0
        busy = 0  # consecutive steps that met a busy database
        while True:
            if self._stop_signal is not None:
                self._interrupt(outcome)
                raise Interrupted(signal.Signals(self._stop_signal).name)
            try:
                self._reap(outcome)
                if self._replan:
                    self._plan_stage_two()
                self._fill()
                now = time.monotonic()
                if now - last_beat >= HEARTBEAT_S:
                    self.store.heartbeat(self.active, self.owner)
                    self.store.mark_lost(self.lost_after)
                    self._record_jobs()
                    last_beat = now
                self._mirror()
                if not self.active and not self._claimable():
                    return
                busy = 0
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # Another process holds the database (a long write, a backup): the
                # trainers go on; this step is tried again, each pause twice the last.
                busy += 1
                outcome.busy_retries += 1
                launch.wait(self.active.values(), min(MAX_BACKOFF_S, POLL_S * 2 ** busy))
                continue
            launch.wait(self.active.values(), POLL_S)  # wakes when a run ends

    def _plan_stage_two(self) -> None:
        """Planned seeds: add the stage-2 runs that the pilot results now fix (a variant's
        once its pilot and the baseline's are in), so this invocation trains them too. The
        plan is a function of the pilot's stored results alone: a rerun adds the same."""
        rows = self.study.planned_specs(self.runs_dir, self.store.succeeded_top1)
        known = {r.hash for r in self.rows}
        new = [r for r in rows if r.hash not in known]
        if not new:
            self._replan = False
            return
        self.store.register_study(self.study.name, str(self.study.path), self.study.mode,
                                  self.study.raw, rows)
        self.rows = rows
        self._replan = False  # only now: a busy database above tries the whole step again
        for spec in new:
            record_membership(spec, self.study.name, str(self.study.path), self.study.mode,
                              self.study.raw)
            self.on_event(Event("planned", spec, "stage 2"), self)

    def _retrying(self, outcome: Outcome, op: Callable[[], T]) -> T:
        """``op()``, tried again with backoff while the database is busy."""
        busy = 0
        while True:
            try:
                return op()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                busy += 1
                outcome.busy_retries += 1
                time.sleep(min(MAX_BACKOFF_S, POLL_S * 2 ** busy))

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _claimable(self) -> list[RunSpec]:
        statuses = self.store.run_status(r.hash for r in self.rows)
        seen: set[str] = set()
        out = []
        for r in self.rows:
            h = r.hash
            if h in seen or h in self.active or h in self.cancelled:
                continue
            seen.add(h)
            status = statuses.get(h)
            if status in CLAIMABLE or (status == Status.failed and self._may_retry(h)):
                out.append(r)
        return out

    def _may_retry(self, run_hash: str) -> bool:
        """Whether a failed run gets another attempt now: one that failed here fewer than
        ``max_attempts`` times, or one that failed before, with ``--retry-failed``."""
        if run_hash not in self.failures and not self.retry_failed:
            return False
        return self.failures.get(run_hash, 0) < self.max_attempts

    def _fill(self) -> None:
        """Start runs while slots and devices last: in plan order, a run that does not fit
        the free GPUs now waits and later runs that fit go first (packing)."""
        while len(self.active) < self.max_parallel:
            fits = [r for r in self._claimable() if self.pool.can_take(r.nproc_per_node)]
            # Read before the claim, which clears them: a run claimed while lost may still
            # have its job queued or running, from an orchestrator that died (not one that
            # stopped: that one cancels its jobs).
            stale = self.store.stale_jobs(r.hash for r in fits)
            retry = [r.hash for r in fits if self._may_retry(r.hash)]
            h = self.store.claim_next([r.hash for r in fits], self.owner, retry)
            if h is None:
                return  # nothing fits, or other orchestrators took what did
            row = next(r for r in fits if r.hash == h)
            devices = self.pool.take(row.nproc_per_node)
            assert devices is not None  # fits, and nothing else took devices meanwhile
            adopted = self.launcher.adopt(row, stale[h]) if h in stale else None
            if adopted is None:
                self._begin(row, devices)
                continue
            adopted.devices = devices
            self.active[h] = adopted
            self.epochs_seen[h] = 0
            self.store.set_job(h, self.owner, adopted.job_id, adopted.state())
            self.on_event(Event("start", row, f"adopted job {adopted.job_id}"), self)

    def _begin(self, row: RunSpec, devices: list[int]) -> None:
        """Train a run this orchestrator has claimed, on ``devices`` — unless its run
        directory says that is not needed: a trainer still holds the run's lock (its
        orchestrator died; it is waited for, see :class:`launch.AdoptedJob`), or the run
        already succeeded (its result is ingested, never trained again)."""
        h, run_dir = row.hash, Path(row.run_dir)
        if launch.trainer_alive(run_dir):
            self.active[h] = launch.AdoptedJob(run=row, devices=devices)
            self.on_event(Event("start", row, "waiting for the trainer already on it"), self)
            return
        done = RunDir(run_dir).result()
        if done is not None and done.succeeded:
            self.pool.give(devices)
            done = self.store.ingest(h, run_dir)  # which checks the code it trained with
            if done is not None and done.succeeded:
                self.store.finish(h, self.owner, Status.succeeded)
                self.outcome.reused += 1
                self._replan = self.study.planned is not None
            else:
                error = done.error if done is not None else "unreadable result"
                self.store.finish(h, self.owner, Status.failed, error=error)
                self._failed(row, error, retryable=False)
            return
        try:
            job = self.launcher.start(row, devices)
        except Exception as exc:  # e.g. sbatch refused the job: this run fails
            self.pool.give(devices)
            error = f"could not start: {exc}".splitlines()[0]
            self.store.finish(h, self.owner, Status.failed, error=error)
            self.failures[h] = self.max_attempts  # a launcher's refusal is not retried
            self.outcome.failed += 1
            self.on_event(Event("failed", row, error), self)
            return
        self.active[h] = job
        self.epochs_seen[h] = 0
        if job.job_id is not None:
            self.store.set_job(h, self.owner, job.job_id, job.state())
        self.on_event(Event("start", row), self)

    def _record_jobs(self) -> None:
        """Mirror each scheduler job's state (e.g. PENDING, RUNNING) into the database."""
        for h, job in self.active.items():
            if job.job_id is not None:
                self.store.set_job(h, self.owner, job.job_id, job.state())

    def _mirror(self) -> None:
        """Copy each active run's new epochs into the database. Polled every POLL_S, so it
        touches the database only when the run's metrics file changed (size, mtime)."""
        for h, job in self.active.items():
            metrics = Path(job.run.run_dir) / METRICS
            try:
                st = metrics.stat()
            except FileNotFoundError:
                continue
            signature = (st.st_size, st.st_mtime_ns)
            if self._mirrored.get(h) == signature:
                continue
            self._mirrored[h] = signature
            self.store.ingest(h, Path(job.run.run_dir))
            rows = read_metrics(metrics)
            if len(rows) > self.epochs_seen.get(h, 0):
                self.epochs_seen[h] = len(rows)
                self.on_event(Event("epoch", job.run, str(len(rows)), rows[-1]), self)

    def _reap(self, outcome: Outcome) -> None:
        """Record each run that ended. The database is written before the job is let go,
        so a busy database (the step is tried again) never loses an ending."""
        for h, job in list(self.active.items()):
            rc = job.poll()
            if rc is None:
                continue
            if job.job_id is not None:
                self.store.set_job(h, self.owner, job.job_id, job.state())
            run_dir = Path(job.run.run_dir)
            result = self.store.ingest(h, run_dir)
            succeeded = rc == 0 and result is not None and result.succeeded
            if job.cancelled():
                self._cancel(h, job, outcome)
                continue
            if isinstance(job, launch.AdoptedJob) and not succeeded:
                # The trainer we waited for stopped short (its orchestrator died): this
                # orchestrator resumes the run from its checkpoint, on the same devices.
                del self.active[h]
                self._begin(job.run, job.devices)
                continue
            if succeeded:
                self.store.finish(h, self.owner, Status.succeeded)
            else:
                error = ((result.error if result is not None else None) or job.error()
                         or _exit_reason(rc, run_dir))
                self.store.finish(h, self.owner, Status.failed, error=error,
                                  log_tail=launch.log_tail(run_dir))
            job.close()
            del self.active[h]
            self.pool.give(job.devices)
            if succeeded:
                self._replan = self.study.planned is not None
                outcome.succeeded += 1
                outcome.trained.append(h)
                self.on_event(Event("done", job.run), self)
                continue
            self._failed(job.run, error, result is None or result.retryable)

    def _failed(self, run: RunSpec, error: str, retryable: bool) -> None:
        """Count a failed attempt; the run fails for good after ``max_attempts``, or at
        once when the trainer says the same run fails the same way each time (a config or
        data error, an unreadable checkpoint): said once, not retried."""
        h, outcome = run.hash, self.outcome
        self.failures[h] = self.failures.get(h, 0) + 1
        if not retryable:
            self.failures[h] = max(self.failures[h], self.max_attempts)
            outcome.failed += 1
            self.on_event(Event("failed", run, f"{error} (not retried: it fails the same "
                                               f"way every time)"), self)
        elif self.failures[h] >= self.max_attempts:
            outcome.failed += 1
            self.on_event(Event("failed", run,
                                f"{error} (attempt {self.failures[h]} of "
                                f"{self.max_attempts})"), self)
        # else it is claimable again (see _may_retry) and starts at the next _fill

    def _cancel(self, h: str, job: launch.Job, outcome: Outcome) -> None:
        """Record a run whose job a person cancelled (``scancel``): ``cancelled``, not
        failed, and not started again by this orchestrator; the next ``ablate run``
        resumes it from its checkpoint."""
        error = f"{job.error()}; the next 'ablate run' resumes it"
        self.store.finish(h, self.owner, Status.cancelled, error=error,
                          log_tail=launch.log_tail(Path(job.run.run_dir)))
        job.close()
        del self.active[h]
        self.pool.give(job.devices)
        self.cancelled.add(h)
        outcome.cancelled += 1
        self.on_event(Event("cancelled", job.run, error), self)

    def _interrupt(self, outcome: Outcome, best_effort: bool = False) -> None:
        """Stop every trainer and mark its run interrupted. ``best_effort``: the loop
        failed, so the database may be what failed: every trainer is stopped anyway."""
        for h, job in list(self.active.items()):
            job.stop()
            del self.active[h]
            self.pool.give(job.devices)
            try:
                self.store.ingest(h, Path(job.run.run_dir))
                self.store.finish(h, self.owner, Status.interrupted,
                                  error="interrupted by the orchestrator; resumes on the next "
                                        "run", log_tail=launch.log_tail(Path(job.run.run_dir)))
            except Exception:
                if not best_effort:
                    raise
                # Left running in the database: its owner (this process) is gone in a
                # moment, so the next orchestrator on this host takes it as lost at once.
            outcome.interrupted += 1
            self.on_event(Event("interrupted", job.run), self)


class Follower:
    """Node ``node_rank`` > 0 of a study whose runs span several machines (local backend).

    Node 0's orchestrator claims each run, starts its own torchrun agent and records the
    run. A follower walks the same plan in the same order: for each run it waits until
    node 0 has claimed it, starts this node's agent of it (same ``--rdzv-id``, the run's
    hash, at ``launch.rdzv_endpoint``) and waits for it to end; runs that are already done
    or failed are skipped. It writes nothing to the database. The run directory must be on
    a file system every node shares (rank 0 writes it; every rank resumes from it)."""

    def __init__(self, study: Study, store: Store, runs_dir: Path, node_rank: int,
                 gpus: list[int] | None = None, cpu_threads: int | None = None,
                 retry_failed: bool = False,
                 on_event: Callable[[Event, Follower], None] | None = None) -> None:
        lc = study.launch
        if lc.backend != "local" or lc.nnodes < 2:
            raise AblateError("--node-rank: only for a study with backend: local and "
                              "launch.nnodes > 1 (SLURM starts every node's agent itself)")
        if not 0 < node_rank < lc.nnodes:
            raise AblateError(f"--node-rank {node_rank}: expected 1 to {lc.nnodes - 1} "
                              f"(node 0 runs plain 'ablate run')")
        self.study, self.store, self.retry_failed = study, store, retry_failed
        self.rows = list({r.hash: r for r in study.run_specs(runs_dir)}.values())
        self.gpus = gpus
        if gpus is not None and len(gpus) < lc.nproc_per_node:
            raise AblateError(f"launch.nproc_per_node={lc.nproc_per_node} needs more GPUs "
                              f"than --gpus gives ({len(gpus)})")
        threads = cpu_threads or launch.cpu_threads(1, lc.nproc_per_node)
        self.launcher = launch.LocalLauncher(gpus is not None, threads, lc.nnodes,
                                             lc.rdzv_endpoint, node_rank)
        self.on_event = on_event or (lambda e, f: None)
        self.job: launch.Job | None = None
        self._stop_signal: int | None = None

    def run(self) -> Outcome:
        """Join every run node 0 trains, in plan order; raises Interrupted on a signal."""
        outcome = Outcome()
        # None: node 0 has not registered the study yet.
        pending = {None, *CLAIMABLE, *([Status.failed] if self.retry_failed else [])}
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for row in self.rows:
                while True:
                    self._check_signal()
                    status = self.store.run_status([row.hash]).get(row.hash)
                    if status == Status.running:
                        self._join(row, outcome)
                        break
                    if status not in pending:
                        outcome.reused += status == Status.succeeded
                        break
                    time.sleep(POLL_S)  # node 0 has not claimed it yet
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        return outcome

    def _join(self, row: RunSpec, outcome: Outcome) -> None:
        devices = list(self.gpus[:row.nproc_per_node]) if self.gpus is not None else [0]
        self.job = self.launcher.start(row, devices)
        self.on_event(Event("start", row), self)
        while (rc := self.job.poll()) is None:
            self._check_signal()
            launch.wait([self.job], POLL_S)
        self.job.close()
        self.job = None
        if rc == 0:
            outcome.succeeded += 1
            outcome.trained.append(row.hash)
            self.on_event(Event("done", row), self)
        else:  # node 0 records the run's failure; this node goes on with the next run
            outcome.failed += 1
            log = Path(row.run_dir) / self.launcher.log_name()
            self.on_event(Event("failed", row, f"exit code {rc} (see {log})"), self)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _check_signal(self) -> None:
        if self._stop_signal is None:
            return
        if self.job is not None:
            self.job.stop()
            self.job = None
        raise Interrupted(signal.Signals(self._stop_signal).name)


#: torchrun's report of a worker that a signal ended ("exitcode  : -9 (pid: 123)").
_TORCHRUN_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)", re.MULTILINE)


def _succeeded(run_dir: str) -> bool:
    done = RunDir(Path(run_dir)).result()
    return done is not None and done.succeeded


def _exit_reason(rc: int, run_dir: Path) -> str:
    """Why a trainer ended without a successful result, in one line: the trainer's own
    ``error:`` line, the signal that killed it (torchrun itself, or a worker as torchrun
    reports it: torchrun then exits 1), or the exit code and the log to read."""
    if rc == 0:
        return f"the trainer exited without writing a successful {RESULT}"
    if rc < 0:
        return f"killed by signal {_signal_name(-rc)}"
    try:
        tail = (run_dir / LAUNCH_LOG).read_text(errors="replace")
    except FileNotFoundError:
        tail = ""
    for line in reversed(tail.splitlines()):
        if line.startswith("error: "):
            return line[len("error: "):]
    codes = [int(c) for c in _TORCHRUN_EXIT.findall(tail)]
    if codes and codes[-1] < 0:
        return f"a training process was killed by signal {_signal_name(-codes[-1])}"
    if 128 < rc < 128 + signal.NSIG:  # a shell's or the guard's way to report a signal
        return f"killed by signal {_signal_name(rc - 128)} (exit code {rc})"
    return f"exit code {rc} (see {run_dir / LAUNCH_LOG})"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"{number}"
