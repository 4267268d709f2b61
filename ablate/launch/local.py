"""Launching one run: ``torchrun ... -m zoo.train --config ... --out RUN_DIR`` as a
subprocess with an argument list (never a shell string), in its own process group so the
orchestrator decides when it stops, with its own devices or CPU threads.

A :class:`Launcher` starts runs and returns :class:`Job` handles the orchestrator polls and
stops: :class:`LocalLauncher` here (one node, or this node's agent of a multi-node run),
:class:`ablate.launch.slurm.SlurmLauncher` on a SLURM cluster. :class:`DevicePool` packs runs of
different sizes onto the free GPUs of one node."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from ablate.errors import AblateError
from ablate.launch.cpuload import cores_taken
from ablate.study.spec import RunSpec
from zoo.contract import LAUNCH_LOG, LOCK, LOG, RUN_CONFIG, atomic_write, launch_log
from zoo.plugins import snapshot
from zoo.tensorboard import RUN_NAME_ENV, run_name

#: The wrapper that makes a trainer die with its orchestrator (run by path: see its docstring).
GUARD = Path(__file__).with_name("guard.py")

#: Where a GPU driver shows itself: NVIDIA's kernel module, AMD's ROCm compute device.
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/kfd")


def _visible_entries(env: Mapping[str, str] | None = None) -> list[str] | None:
    """The entries of ``CUDA_VISIBLE_DEVICES`` (None when unset), cut at the first invalid
    one as CUDA does: ``-1`` or an empty variable hides every GPU."""
    value = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    out: list[str] = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry or not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        out.append(entry)
    return out


def gpu_count() -> int:
    """How many GPUs a training process started from here would see. A machine without
    a GPU driver, or a ``CUDA_VISIBLE_DEVICES`` hiding every GPU, answers without importing
    torch (``ablate`` knows nothing about tensors, and importing torch costs seconds of
    ``ablate run``'s start-up); otherwise torch counts them."""
    entries = _visible_entries()
    if entries == [] or not any(os.path.exists(p) for p in GPU_DRIVER_PATHS):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def child_visible_devices(devices: Sequence[int], env: Mapping[str, str] | None = None
                          ) -> str:
    """``CUDA_VISIBLE_DEVICES`` for a run on ``devices``, which number the GPUs this
    process sees (as torch does): under ``CUDA_VISIBLE_DEVICES=2,3`` device 0 is GPU 2."""
    entries = _visible_entries(env)
    if entries is None:
        return ",".join(str(d) for d in devices)
    return ",".join(entries[d] for d in devices)  # parse_gpus checked they are visible


def parse_gpus(spec: str | None) -> list[int] | None:
    """``0-3,6`` -> [0, 1, 2, 3, 6]; None -> autodetect (all GPUs, or none on CPU).
    The numbers are those of the GPUs this process sees (see ``child_visible_devices``)."""
    if spec is None:
        return list(range(gpu_count())) or None
    if spec.strip().lower() in ("", "none", "cpu"):
        return None
    out: list[int] = []
    try:
        for part in spec.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise AblateError(f"--gpus '{spec}': expected a list like 0-3,6") from None
    if len(set(out)) != len(out):
        raise AblateError(f"--gpus '{spec}': a GPU is listed twice")
    entries = _visible_entries()
    if entries is not None and (hidden := [d for d in out if d >= len(entries)]):
        raise AblateError(f"--gpus '{spec}': GPU {hidden[0]} is not visible "
                          f"(CUDA_VISIBLE_DEVICES={','.join(entries)} shows {len(entries)}; "
                          f"number them from 0)")
    return out


@dataclass
class DevicePool:
    """Free GPUs, handed out to runs as they start and returned as they finish.

    A run of N processes waits until N GPUs are free; smaller runs fill the gaps. With no
    GPUs the pool hands out CPU slots (``--max-parallel`` of them)."""

    gpus: list[int] | None
    slots: int
    free: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.free = list(self.gpus) if self.gpus is not None else list(range(self.slots))

    def can_take(self, n: int) -> bool:
        """Whether a run of ``n`` processes per node could start now."""
        return len(self.free) >= (n if self.gpus is not None else 1)

    def take(self, n: int) -> list[int] | None:
        """The lowest ``n`` free GPUs (one slot on CPU), or None if they are not free."""
        need = n if self.gpus is not None else 1
        if len(self.free) < need:
            return None
        got, self.free = self.free[:need], self.free[need:]
        return got

    def give(self, devices: Sequence[int]) -> None:
        self.free = sorted([*self.free, *devices])

    def fits_ever(self, n: int) -> bool:
        return self.gpus is None or n <= len(self.gpus)


#: How long an OpenMP thread that waits at a barrier spins before it sleeps, for trainers
#: on cores of their own (GNU OpenMP's ``GOMP_SPINCOUNT``; its own default spins ten times
#: longer). Trainers that would share their cores with other work get
#: ``OMP_WAIT_POLICY=PASSIVE`` instead (sleep at once). bench/threads.py on digits: idle,
#: this spin was the fastest and PASSIVE's every-barrier sleep doubled an epoch; beside
#: other jobs, spinning took 1.4x (2 stressors) to 3.6x (6 stressors) one thread's epoch,
#: PASSIVE 1.4x. Figures in docs/clusters.md.
SPIN_COUNT = "30000"


def sets_wait(env: Mapping[str, str]) -> bool:
    """Whether ``env`` says itself how OpenMP threads wait (then ablate does not)."""
    return "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env


def trainer_env(env: Mapping[str, str], threads: int | None, *, shared: bool = False
                ) -> dict[str, str]:
    """``env`` for a trainer: ``threads`` OpenMP threads per process (None: as ``env``
    has it) that, when they wait, spin briefly (:data:`SPIN_COUNT`) or, where other work
    wants their cores (``shared``), sleep at once. The caller's own ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` wins."""
    out = {**env, "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        out["OMP_NUM_THREADS"] = str(threads)
    if not sets_wait(out):
        if shared:
            out["OMP_WAIT_POLICY"] = "PASSIVE"
        else:
            out["GOMP_SPINCOUNT"] = SPIN_COUNT
    return out


def cpu_threads(max_parallel: int, nproc: int) -> int:
    """Threads per training process so that parallel runs share the CPU cores evenly."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, max_parallel * nproc))


def torchrun_command(config: Path, out: Path, nproc: int, nnodes: int = 1,
                     rdzv_endpoint: str | None = None, run_id: str | None = None) -> list[str]:
    """The torchrun command line of one run (on one node).

    One node: ``--standalone`` (a free port per run, so parallel runs never collide).
    Several nodes: every node runs this same command; the agents meet at ``rdzv_endpoint``
    (c10d rendezvous, hosted by the agent on that host) under ``run_id``, the run's hash,
    so agents of one run find each other and never those of another run. Global ranks come
    from the rendezvous, so no ``--node-rank`` is needed.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1 and rdzv_endpoint is None:
        cmd += ["--standalone"]
    else:
        if rdzv_endpoint is None or run_id is None:
            raise ValueError("a multi-node run needs rdzv_endpoint and run_id")
        cmd += ["--rdzv-backend", "c10d", "--rdzv-endpoint", str(rdzv_endpoint),
                "--rdzv-id", run_id]
    cmd += ["--nnodes", str(nnodes), "--nproc-per-node", str(nproc),
            "-m", "zoo.train", "--config", str(config), "--out", str(out)]
    return cmd


def write_run_config(run: RunSpec) -> Path:
    """Write the run's resolved config into its directory (atomically, and only if it
    changed: with several nodes sharing the directory, a trainer may be reading it), with
    the study's plugins copied into its ``code/`` and imported from there."""
    out = Path(run.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_CONFIG
    config = dict(run.config)
    if run.plugins:
        config["imports"] = list(snapshot(run.plugins, out))
    text = yaml.safe_dump(config, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        atomic_write(path, text)
    return path


@dataclass(kw_only=True)
class Job:
    """A run being trained: by a child process here, or by a SLURM job (ablate.launch.slurm).

    The orchestrator only polls, stops and closes it; what runs where is the launcher's."""

    run: RunSpec
    devices: list[int]
    started: float = field(default_factory=time.monotonic)

    @property
    def hash(self) -> str:
        return str(self.run.hash)

    @property
    def job_id(self) -> str | None:
        """The scheduler's id of this job (None for a local process)."""
        return None

    def state(self) -> str | None:
        """The scheduler's state of this job (None for a local process)."""
        return None

    def poll(self) -> int | None:
        """None while it runs, else its exit code (0: the trainer exited cleanly)."""
        raise NotImplementedError

    def error(self) -> str | None:
        """Why it failed, as far as the launcher knows (the trainer's own reason is in
        result.json and the logs)."""
        return None

    def cancelled(self) -> bool:
        """Whether it ended because a person cancelled it outside ablate (``scancel``)."""
        return False

    def stop(self, grace: float = 30.0) -> None:
        """Stop it now; the run's checkpoint stays, so it resumes later."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the job holds once it is over."""

    def exit_fd(self) -> int | None:
        """A file descriptor that becomes readable when the job ends, for :func:`wait`
        (None: the job can only be polled)."""
        return None


@dataclass(kw_only=True)
class ProcessJob(Job):
    """torchrun as a child process of the orchestrator, in its own process group."""

    proc: Any  # subprocess.Popen[bytes], or a test's stand-in with poll/wait/pid
    log: IO[bytes]
    _pidfd: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # Opened now, before anyone reaps the child: a pidfd names this process even after
        # its pid is reused. Linux 5.3+; elsewhere the job is polled.
        if isinstance(self.proc, subprocess.Popen) and hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                self._pidfd = os.pidfd_open(self.proc.pid)

    def poll(self) -> int | None:
        return self.proc.poll()

    def exit_fd(self) -> int | None:
        return self._pidfd

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the process group (torchrun forwards it), SIGKILL after ``grace``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.close()

    def close(self) -> None:
        self.log.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


@dataclass(kw_only=True)
class AdoptedJob(Job):
    """A trainer this orchestrator did not start but found holding the run's lock (one
    whose orchestrator died): it is waited for, never a second one started beside it.
    ``poll`` answers 0 once the lock is free; the orchestrator then reads the run directory
    to learn how it ended (and resumes the run itself if it did not succeed)."""

    def poll(self) -> int | None:
        return None if trainer_alive(Path(self.run.run_dir)) else 0

    def stop(self, grace: float = 30.0) -> None:
        """Not ours to stop: it is dying already (its orchestrator is gone, see
        :mod:`ablate.launch.guard`) or belongs to a live process elsewhere."""


def guarded(cmd: Sequence[str]) -> list[str]:
    """``cmd`` run through :mod:`ablate.launch.guard`: SIGTERM when this process dies."""
    return [sys.executable, str(GUARD), str(os.getpid()), *cmd]


def trainer_alive(run_dir: Path) -> bool:
    """Whether a trainer holds ``run_dir``'s lock now (``zoo.train`` holds an exclusive
    ``flock`` on it while it trains, released by the kernel when it dies however it dies).

    Probed by taking the lock and dropping it at once: read-only, so a missing lock file
    is not created. The probe holds it for microseconds; a trainer starting on the same
    directory in that instant would fail with "another process is training", which only a
    trainer whose orchestrator is gone (and which is stopping anyway) can meet."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without locks: nobody can hold one there
        return False
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def wait(jobs: Iterable[Job], timeout: float) -> None:
    """Sleep ``timeout`` seconds, or less: until one of ``jobs`` (a local process) ends, so
    the next run starts at once rather than at the next poll."""
    fds = [fd for job in jobs if (fd := job.exit_fd()) is not None]
    if fds:
        select.select(fds, [], [], timeout)
    else:
        time.sleep(timeout)


class Launcher:
    """Starts runs on devices the orchestrator hands it; the orchestrator decides when."""

    def start(self, run: RunSpec, devices: list[int]) -> Job:
        raise NotImplementedError

    def adopt(self, run: RunSpec, job_id: str) -> Job | None:
        """The scheduler job ``job_id`` of an earlier attempt at ``run`` (its orchestrator
        stopped beating), to follow instead of starting the run again, if the scheduler
        still holds it; else None. Launchers whose jobs die with their orchestrator have
        none to adopt."""
        return None


@dataclass
class LocalLauncher(Launcher):
    """torchrun on this machine: ``run.nproc_per_node`` processes on ``devices``.

    With ``nnodes > 1`` this is node ``node_rank``'s agent of a multi-node run; node 0's
    orchestrator claims runs and records them, the other nodes' agents join them
    (``ablate run --node-rank K``)."""

    use_gpus: bool
    threads: int
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    node_rank: int = 0

    def env(self, devices: Sequence[int]) -> dict[str, str]:
        """The trainer's environment; a CPU run's threads sleep when they wait if the
        machine's idle cores, looked at now, cannot hold them (:func:`cores_taken`)."""
        shared = (not self.use_gpus and not sets_wait(os.environ)
                  and cores_taken(self.threads))
        env = trainer_env(os.environ, None if self.use_gpus else self.threads, shared=shared)
        env["CUDA_VISIBLE_DEVICES"] = child_visible_devices(devices) if self.use_gpus else ""
        return env

    def log_name(self) -> str:
        # Nodes of one run share its directory (a shared file system): one log each.
        return launch_log(self.node_rank)

    def spawn(self, cmd: list[str], env: dict[str, str], log: IO[bytes]) -> Any:
        """Start the process (the seam a test replaces to record instead of train), through
        :mod:`ablate.launch.guard`, so that it dies with this orchestrator."""
        return subprocess.Popen(guarded(cmd), stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    def start(self, run: RunSpec, devices: list[int]) -> ProcessJob:
        """Write the run's config into its directory and start torchrun on it."""
        config_path = write_run_config(run)
        out = config_path.parent
        log = open(out / self.log_name(), "ab")  # noqa: SIM115  (the Job owns it until the end)
        cmd = torchrun_command(config_path, out, run.nproc_per_node, self.nnodes,
                               self.rdzv_endpoint, run_id=run.hash)
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        # The TensorBoard run name says variant/seed (not part of the config: no new hash).
        env = {**self.env(devices), RUN_NAME_ENV: run_name(run.variant, run.seed)}
        proc = self.spawn(cmd, env, log)
        return ProcessJob(run=run, proc=proc, log=log, devices=devices)


def log_tail(run_dir: Path, lines: int = 30) -> str:
    """The last lines of the trainer's train.log, or of the launch log (torchrun's output)
    when the trainer never got as far as writing one."""
    for name in (LOG, LAUNCH_LOG):
        try:
            text = (Path(run_dir) / name).read_text(errors="replace")
        except FileNotFoundError:
            continue
        return "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return ""
