"""Shared fixtures: real images on disk (scikit-learn's digits) and run-config helpers."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

# One CPU thread per process, in this process and every trainer the tests launch (the
# orchestrator's --cpu-threads reads ABLATE_CPU_THREADS): `make test` runs two pytest
# workers on a 2-core machine, and torch threads that outnumber the cores spin instead of
# working. Set before torch is imported; a caller's own values win.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ABLATE_CPU_THREADS", "1")

#: The one limit on how long a test waits for a subprocess or a condition. It is not a
#: measure of speed: a test's verdict must never depend on how busy the machine is, so the
#: limit only stops a test that hangs. 30 minutes covers the slowest launch seen on a
#: 2-core machine at load 14 many times over; ABLATE_TEST_TIME_SCALE stretches it further
#: (for example under emulation).
LIMIT = 1800 * float(os.environ.get("ABLATE_TEST_TIME_SCALE", "1"))


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's 8x8 digits written as PNG ImageFolder trees (1,433 train / 364 val)."""
    from zoo.data.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "digits"
    prepare("digits", out)
    return out


@pytest.fixture
def results_db(tmp_path: Path) -> Path:
    """A copy of the committed results.db, to read or alter freely."""
    copy = tmp_path / "results.db"
    shutil.copy(ROOT / "results.db", copy)
    return copy


def digits_config(data: Path, **overrides: Any) -> dict[str, Any]:
    """A fast real-data run config: ResNet-20 on 8x8 digits, fp32, one process's batch 64."""
    cfg: dict[str, Any] = {
        "model": "resnet20",
        "data": {"train": str(data / "train"), "val": str(data / "val"), "image_size": 8,
                 "preset": "small", "hflip": False, "mean": [0.5] * 3, "std": [0.5] * 3},
        "optim": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "precision": "fp32",
        "seed": 0,
        "epochs": 3,
        "batch_size": 64,
        "workers": 0,
        "log_every": 5,
    }
    for key, value in overrides.items():
        node = cfg
        parts = key.split("__")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_train(args: list[str], torchrun: int | None = None, timeout: float = LIMIT,
              ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zoo.train`` (or under torchrun) as a real subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(torchrun), "-m", "zoo.train", *args]
    else:
        cmd = [sys.executable, "-m", "zoo.train", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def stop_dropped_workers() -> None:
    """Stop the DataLoader workers of loaders no longer referenced, here and now, not when
    the garbage collector gets to them: in a later test that was starting a subprocess,
    their queues' feeder threads closed file descriptors the subprocess had just reused
    (``OSError: [Errno 9] Bad file descriptor`` in ``subprocess.Popen``). A loader's
    iterator stops and joins its workers when it is freed; the collection frees those
    that only a reference cycle keeps."""
    gc.collect()


def _command_lines() -> list[tuple[int, bytes]]:
    """``(pid, NUL-separated argv)`` of every live process but this one."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append((int(entry.name), cmd))
    return out


def processes_on(path: Path) -> list[int]:
    """Pids of the live processes whose command line names ``path`` (the guards, torchrun
    agents and trainers of the runs under it)."""
    return [pid for pid, cmd in _command_lines() if str(path).encode() in cmd]


def trainers_on(path: Path) -> dict[int, Path]:
    """The trainers (``zoo.train`` workers, not their torchrun agents) of the runs under
    ``path``: pid -> the run directory it trains (its ``--out``)."""
    out = {}
    for pid, cmd in _command_lines():
        argv = cmd.split(b"\0")
        if b"zoo.train" in argv and b"torch.distributed.run" not in argv and b"--out" in argv:
            run_dir = Path(os.fsdecode(argv[argv.index(b"--out") + 1]))
            if Path(path) in run_dir.parents:
                out[pid] = run_dir
    return out


def signal_pending(pid: int, sig: int) -> bool:
    """Whether ``sig`` waits to be delivered to ``pid`` (a stopped process keeps what it
    is sent until it continues); True once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("State", "").split()[:1] == ["Z"]:
        return True
    pending = int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)
    return bool(pending & (1 << (sig - 1)))


def read_result(out: Path) -> dict[str, Any]:
    return json.loads((out / "result.json").read_text())


def read_metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


#: Fixtures and modules whose tests launch processes (torchrun, `ablate run`, a database
#: server's clients) or train a model for more than a few seconds.
SLOW_FIXTURES = {"digits_dir"}
SLOW_MODULES = {"test_multinode", "test_orchestrator", "test_postgres", "test_slurm",
                "test_packing", "test_rebuild", "test_tricks_train"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what launches processes or trains as ``slow``: ``make test-fast`` leaves those
    out, ``make test`` (what CI runs) keeps everything."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
