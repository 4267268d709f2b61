"""Launching one run: ``torchrun ... -m zoo.train --config ... --out RUN_DIR`` as a
subprocess with an argument list (never a shell string), in its own process group so the
orchestrator decides when it stops, with its own devices or CPU threads."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from ablate.errors import AblateError

RUN_CONFIG = "run.yaml"
LAUNCH_LOG = "launch.log"


def parse_gpus(spec: str | None) -> list[int] | None:
    """``0-3,6`` -> [0, 1, 2, 3, 6]; None -> autodetect (all GPUs, or none on CPU)."""
    if spec is None:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return list(range(n)) or None
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

    def take(self, n: int) -> list[int] | None:
        need = n if self.gpus is not None else 1
        if len(self.free) < need:
            return None
        got, self.free = self.free[:need], self.free[need:]
        return got

    def give(self, devices: Sequence[int]) -> None:
        self.free = sorted([*self.free, *devices])

    def fits_ever(self, n: int) -> bool:
        return self.gpus is None or n <= len(self.gpus)


def cpu_threads(max_parallel: int, nproc: int) -> int:
    """Threads per training process so that parallel runs share the CPU cores evenly."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, max_parallel * nproc))


def torchrun_command(config: Path, out: Path, nproc: int, nnodes: int = 1,
                     rdzv_endpoint: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1 and rdzv_endpoint is None:
        cmd += ["--standalone"]  # a free port per run: parallel runs never collide
    else:
        cmd += ["--rdzv-backend", "c10d", "--rdzv-endpoint", str(rdzv_endpoint)]
    cmd += ["--nnodes", str(nnodes), "--nproc-per-node", str(nproc),
            "-m", "zoo.train", "--config", str(config), "--out", str(out)]
    return cmd


@dataclass
class Job:
    """A run being trained by a child process."""

    run: dict[str, Any]
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    devices: list[int]
    started: float = field(default_factory=time.monotonic)

    @property
    def hash(self) -> str:
        return str(self.run["hash"])


def start(run: dict[str, Any], devices: list[int], use_gpus: bool, threads: int,
          nnodes: int = 1, rdzv_endpoint: str | None = None) -> Job:
    """Write the run's config into its directory and start torchrun on it."""
    out = Path(run["run_dir"])
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / RUN_CONFIG
    config_path.write_text(yaml.safe_dump(run["config"], sort_keys=False))
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if use_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["OMP_NUM_THREADS"] = str(threads)
    log = open(out / LAUNCH_LOG, "ab")  # noqa: SIM115  (the Job owns it until the run ends)
    cmd = torchrun_command(config_path, out, run["nproc"], nnodes, rdzv_endpoint)
    log.write(f"$ {' '.join(cmd)}\n".encode())
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    return Job(run=run, proc=proc, log=log, devices=devices)


def stop(job: Job, grace: float = 30.0) -> None:
    """SIGTERM the job's process group (torchrun forwards it), then SIGKILL after ``grace``."""
    if job.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.proc.pid, signal.SIGTERM)
        try:
            job.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.proc.pid, signal.SIGKILL)
            job.proc.wait()
    job.log.close()


def log_tail(run_dir: Path, lines: int = 30) -> str:
    """The last lines of the trainer's train.log, or of the launch log (torchrun's output)
    when the trainer never got as far as writing one."""
    for name in ("train.log", LAUNCH_LOG):
        try:
            text = (Path(run_dir) / name).read_text(errors="replace")
        except FileNotFoundError:
            continue
        return "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return ""
