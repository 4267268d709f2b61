"""The orchestrator: trains every run of a study exactly once, and keeps the database true.

One loop: claim the next queued run (atomically, in the database), start it on free
devices, mirror its run directory into the database while it trains (so ``ablate
status`` elsewhere is live), record how it ended, until nothing is left. Ctrl-C or
SIGTERM stops the children, marks their runs interrupted and leaves their checkpoints;
the same command later resumes them.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from ablate import launch
from ablate.spec import PlannedRun, Study
from ablate.store import CLAIMABLE, Status, Store

HEARTBEAT_S = 5.0
POLL_S = 0.5


def planned_rows(study: Study, runs_dir: Path) -> list[dict[str, Any]]:
    """The plan as plain dicts for the store and the launcher."""
    out = []
    for r in study.plan():
        out.append(_row(r, study, runs_dir))
    return out


def _row(r: PlannedRun, study: Study, runs_dir: Path) -> dict[str, Any]:
    return {
        "variant": r.variant, "variant_index": r.variant_index, "change": r.change,
        "seed": r.seed, "hash": r.hash, "config": r.config.to_dict(),
        "run_dir": str((runs_dir / r.hash).resolve()),
        "nproc": study.launch.nproc_per_node * study.launch.nnodes,
        "epochs": r.config.epochs,
    }


@dataclass
class Event:
    kind: str  # start | epoch | done | failed | interrupted | reused
    run: dict[str, Any]
    detail: str = ""


@dataclass
class Outcome:
    succeeded: int = 0
    failed: int = 0
    interrupted: int = 0
    reused: int = 0
    elsewhere: int = 0
    trained: list[str] = field(default_factory=list)


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; children were stopped and marked interrupted."""


class Orchestrator:
    def __init__(self, study: Study, store: Store, runs_dir: Path, max_parallel: int = 1,
                 gpus: list[int] | None = None, retry_failed: bool = False,
                 lost_after: float = 60.0, cpu_threads: int | None = None,
                 on_event: Callable[[Event, Orchestrator], None] | None = None) -> None:
        self.study, self.store, self.runs_dir = study, store, runs_dir
        self.max_parallel, self.retry_failed = max_parallel, retry_failed
        self.lost_after = timedelta(seconds=lost_after)
        self.on_event = on_event or (lambda e, o: None)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        nproc = study.launch.nproc_per_node * study.launch.nnodes
        self.pool = launch.DevicePool(gpus, max_parallel)
        self.use_gpus = gpus is not None
        self.threads = cpu_threads or launch.cpu_threads(max_parallel, nproc)
        self.rows = planned_rows(study, runs_dir)
        self.active: dict[str, launch.Job] = {}
        self.epochs_seen: dict[str, int] = {}
        self._stop_signal: int | None = None
        self.started_at = time.monotonic()

    # ------------------------------------------------------------------ main loop

    def run(self) -> Outcome:
        """Train everything left to train; raises Interrupted on SIGINT/SIGTERM."""
        outcome = Outcome()
        self.store.register_study(self.study.name, str(self.study.path), self.study.mode,
                                  self.study.raw, self.rows)
        self.store.mark_lost(self.lost_after)
        if self.use_gpus and not self.pool.fits_ever(self.rows[0]["nproc"]):
            from ablate.errors import AblateError

            raise AblateError(f"launch.nproc_per_node={self.rows[0]['nproc']} needs more GPUs "
                              f"than --gpus gives ({len(self.pool.free)})")
        statuses = self.store.run_status(r["hash"] for r in self.rows)
        outcome.reused = sum(1 for r in self.rows if statuses[r["hash"]] == Status.succeeded)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        last_beat = 0.0
        try:
            while True:
                if self._stop_signal is not None:
                    self._interrupt(outcome)
                    raise Interrupted(signal.Signals(self._stop_signal).name)
                self._reap(outcome)
                self._fill()
                now = time.monotonic()
                if now - last_beat >= HEARTBEAT_S:
                    self.store.heartbeat(self.active, self.owner)
                    self.store.mark_lost(self.lost_after)
                    last_beat = now
                self._mirror()
                if not self.active and not self._claimable():
                    break
                time.sleep(POLL_S)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        statuses = self.store.run_status(r["hash"] for r in self.rows)
        outcome.elsewhere = sum(1 for s in statuses.values() if s == Status.running)
        return outcome

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _claimable(self) -> list[dict[str, Any]]:
        statuses = self.store.run_status(r["hash"] for r in self.rows)
        ok = {*CLAIMABLE, *([Status.failed] if self.retry_failed else [])}
        seen: set[str] = set()
        out = []
        for r in self.rows:
            h = r["hash"]
            if h in seen or h in self.active:
                continue
            seen.add(h)
            if statuses.get(h) in ok:
                out.append(r)
        return out

    def _fill(self) -> None:
        for row in self._claimable():
            if len(self.active) >= self.max_parallel:
                return
            devices = self.pool.take(row["nproc"])
            if devices is None:
                return
            if not self.store.claim(row["hash"], self.owner, self.retry_failed):
                self.pool.give(devices)  # another orchestrator took it first
                continue
            job = launch.start(row, devices, self.use_gpus, self.threads,
                               self.study.launch.nnodes, self.study.launch.rdzv_endpoint)
            self.active[row["hash"]] = job
            self.epochs_seen[row["hash"]] = 0
            self.on_event(Event("start", row), self)

    def _mirror(self) -> None:
        """Copy each active run's new epochs into the database."""
        for h, job in self.active.items():
            self.store.ingest(h, Path(job.run["run_dir"]))
            done = self._epochs_done(job)
            if done > self.epochs_seen.get(h, 0):
                self.epochs_seen[h] = done
                self.on_event(Event("epoch", job.run, str(done)), self)

    def _epochs_done(self, job: launch.Job) -> int:
        metrics = Path(job.run["run_dir"]) / "metrics.jsonl"
        try:
            return metrics.read_text().count("\n")
        except FileNotFoundError:
            return 0

    def _reap(self, outcome: Outcome) -> None:
        for h, job in list(self.active.items()):
            rc = job.proc.poll()
            if rc is None:
                continue
            job.log.close()
            del self.active[h]
            self.pool.give(job.devices)
            run_dir = Path(job.run["run_dir"])
            result = self.store.ingest(h, run_dir)
            status = (result or {}).get("status")
            if rc == 0 and status == "succeeded":
                self.store.finish(h, self.owner, Status.succeeded)
                outcome.succeeded += 1
                outcome.trained.append(h)
                self.on_event(Event("done", job.run), self)
            else:
                error = (result or {}).get("error") or _exit_reason(rc, run_dir)
                self.store.finish(h, self.owner, Status.failed, error=error,
                                  log_tail=launch.log_tail(run_dir))
                outcome.failed += 1
                self.on_event(Event("failed", job.run, error), self)

    def _interrupt(self, outcome: Outcome) -> None:
        for h, job in list(self.active.items()):
            launch.stop(job)
            self.store.ingest(h, Path(job.run["run_dir"]))
            self.store.finish(h, self.owner, Status.interrupted,
                              error="interrupted by the orchestrator; resumes on the next run",
                              log_tail=launch.log_tail(Path(job.run["run_dir"])))
            outcome.interrupted += 1
            self.on_event(Event("interrupted", job.run), self)
            del self.active[h]
            self.pool.give(job.devices)


def _exit_reason(rc: int, run_dir: Path) -> str:
    if rc == 0:
        return "the trainer exited without writing a successful result.json"
    if rc < 0:
        return f"killed by signal {signal.Signals(-rc).name}"
    try:
        tail = (run_dir / launch.LAUNCH_LOG).read_text(errors="replace")
    except FileNotFoundError:
        tail = ""
    for line in reversed(tail.splitlines()):
        if line.startswith("error: "):
            return line[len("error: "):]
    return f"exit code {rc} (see {run_dir / launch.LAUNCH_LOG})"
