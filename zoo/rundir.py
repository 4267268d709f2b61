"""The run directory's torch side: checkpoints, and the code and environment facts of
``config.json``. File names, records and atomic writes are the torch-free contract
:mod:`zoo.contract`, which the orchestrator reads too (re-exported here for the trainer).
"""

from __future__ import annotations

import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

from zoo.contract import (  # noqa: F401  (the trainer's names for the contract)
    CHECKPOINT,
    CONFIG,
    LOG,
    METRICS,
    RESULT,
    append_metrics,
    atomic_open,
    read_json,
    read_metrics,
    truncate_metrics,
    write_json,
)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    # weights_only=True: a checkpoint is data, never code to unpickle.
    return torch.load(path, map_location=map_location, weights_only=True)


def code_info() -> dict[str, Any]:
    """Git commit and dirty flag of the checkout this code runs from (None outside git)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if commit else None}


def env_info(world_size: int, device: torch.device) -> dict[str, Any]:
    """Library versions and hardware, so a result can be traced to what produced it."""
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
    }
