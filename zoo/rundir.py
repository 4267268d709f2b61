"""The run directory: the source of truth for one run.

``config.json`` (resolved config + code + env), ``metrics.jsonl`` (one line per epoch),
``checkpoint.pt`` (atomic, each epoch), ``result.json`` (atomic, written last),
``train.log``. Every file that a reader may see half-written is written to a temporary
name in the same directory and renamed over the target, which is atomic on POSIX.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
LOG = "train.log"


@contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file next to ``path``; rename it over ``path`` on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    # weights_only=True: a checkpoint is data, never code to unpickle.
    return torch.load(path, map_location=map_location, weights_only=True)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Keep only the lines of epochs <= ``last_epoch`` (those the checkpoint holds)."""
    rows = [r for r in read_metrics(path) if r["epoch"] <= last_epoch]
    with atomic_open(path) as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


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
