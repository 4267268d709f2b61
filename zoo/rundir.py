"""The run directory's torch side: checkpoints, and the code and environment facts of
``config.json``. File names, records and atomic writes are the torch-free contract
:mod:`zoo.contract`, which the orchestrator reads too (re-exported here for the trainer).
"""

from __future__ import annotations

import errno
import os
import pickle
import platform
import socket
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from zoo.contract import (  # noqa: F401  (the trainer's names for the contract)
    CHECKPOINT,
    CONFIG,
    LOCK,
    LOG,
    METRICS,
    PREVIOUS_CHECKPOINT,
    RESULT,
    append_metrics,
    atomic_open,
    read_json,
    read_metrics,
    truncate_metrics,
    write_json,
)


def save_checkpoint(path: Path, state: dict[str, Any], shown: Path | None = None) -> None:
    """Write ``state`` atomically; a full disk is a :class:`ZooError` naming the path
    (``shown``, when the file is renamed to it afterwards)."""
    from zoo.errors import ZooError

    shown = path if shown is None else shown
    try:
        with atomic_open(path, "wb") as f:
            torch.save(state, f)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ZooError(f"no space left on device: {shown}; free space and run again "
                           f"to resume from the last checkpoint") from None
        raise
    except RuntimeError as exc:  # torch.save's zip writer reports a full disk this way
        if "No space left on device" in str(exc) or "file write failed" in str(exc):
            raise ZooError(f"no space left on device: {shown}; free space and run again "
                           f"to resume from the last checkpoint") from None
        raise


def save_checkpoint_keeping_previous(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``checkpoint.pt``, the one before it kept as ``checkpoint.prev.pt``.

    The new file is written completely (temp file + fsync) before anything is renamed, so
    at every moment one complete checkpoint exists under one of the two names."""
    run_dir = Path(run_dir)
    path, prev = run_dir / CHECKPOINT, run_dir / PREVIOUS_CHECKPOINT
    tmp = run_dir / f".{CHECKPOINT}.new"
    save_checkpoint(tmp, state, shown=path)
    if path.exists():
        os.replace(path, prev)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    # weights_only=True: a checkpoint is data, never code to unpickle.
    return torch.load(path, map_location=map_location, weights_only=True)


#: What ``torch.load`` raises on a truncated or damaged file.
_UNREADABLE = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile,
               ValueError, KeyError)


def load_latest_checkpoint(
    run_dir: Path, map_location: torch.device | str = "cpu",
    warn: Callable[[str], Any] | None = None,
) -> dict[str, Any] | None:
    """The newest readable checkpoint of ``run_dir`` (``checkpoint.pt``, else
    ``checkpoint.prev.pt``), None when there is none; raises :class:`ZooError` naming
    the files and the fix when checkpoints exist but none can be read."""
    from zoo.errors import CheckpointError

    candidates = [p for p in (Path(run_dir) / CHECKPOINT, Path(run_dir) / PREVIOUS_CHECKPOINT)
                  if p.exists()]
    problems = []
    for path in candidates:
        try:
            ckpt = load_checkpoint(path, map_location)
            if not isinstance(ckpt, dict) or "epoch" not in ckpt:
                raise ValueError("not a zoo checkpoint")
            return ckpt
        except _UNREADABLE as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            problems.append(f"{path}: {reason}")
            if warn is not None:
                warn(f"{path}: unreadable checkpoint ({reason}); trying an older one")
    if problems:
        raise CheckpointError(f"{'; '.join(problems)}: no readable checkpoint; delete "
                       f"{CHECKPOINT} and {PREVIOUS_CHECKPOINT} in {run_dir} to train the "
                       f"run from the start")
    return None


def code_info(root: Path | None = None) -> dict[str, Any]:
    """Git commit and dirty flag of the checkout this code runs from (None outside git).
    Dirty: a tracked file differs from the commit, results databases (``*.db``) aside:
    they are what runs write, not code (``make results`` writes the committed one while
    its runs train)."""
    root = root or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = (git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  ":(exclude)*.db") if commit else None)
    return {"commit": commit, "dirty": bool(status) if commit else None}


def _library_versions() -> dict[str, str]:
    """BLAS and oneDNN as torch reports them (``torch.__config__.show()``): the kernels
    whose choice decides the last bits of a CPU result."""
    found = {}
    for line in torch.__config__.show().splitlines():
        text = line.strip().lstrip("- ").strip()
        if "Math Kernel Library" in text or "OpenBLAS" in text:
            found["blas"] = text
        elif "MKL-DNN" in text or "oneDNN" in text:
            found["onednn"] = text
        elif text.startswith("Build settings:"):
            for item in text.removeprefix("Build settings:").split(","):
                key, _, value = item.strip().partition("=")
                if key in ("BLAS_INFO", "LAPACK_INFO"):
                    found[key.lower()] = value
    return found


def determinism_info(device: torch.device) -> dict[str, Any]:
    """What decides whether two runs of one config are bitwise equal on this machine."""
    cuda = torch.cuda.is_available() and device.type == "cuda"
    info: dict[str, Any] = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **_library_versions(),
        "mkldnn_enabled": bool(torch.backends.mkldnn.is_available()
                               and torch.backends.mkldnn.enabled),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if cuda:
        info.update({
            "gpu": torch.cuda.get_device_name(device),
            "gpu_capability": list(torch.cuda.get_device_capability(device)),
            "cudnn_version": torch.backends.cudnn.version(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        })
    return info


def env_info(world_size: int, device: torch.device) -> dict[str, Any]:
    """Library versions and hardware, so a result can be traced to what produced it, and
    (``determinism``) what decides whether it can be reproduced bit for bit."""
    import torchvision

    cuda = torch.cuda.is_available() and device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "device_type": device.type,
        "world_size": world_size,
        "host": socket.gethostname(),
        "cpu_threads": torch.get_num_threads(),
        "determinism": determinism_info(device),
    }
