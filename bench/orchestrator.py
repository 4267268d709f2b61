"""What the orchestrator costs on top of the training it runs, measured from the outside.

(a) startup: ``ablate run`` of a one-run study against the command it launches
    (``python -m torch.distributed.run --standalone ... -m zoo.train``) started directly on
    the same config, with the same environment. The first training step is taken as the
    moment the trainer writes ``config.json`` into its run directory: the last thing
    ``zoo.train`` does before its first step (file mtime, no hook). Repeats interleave the
    two (and a third measurement, a new Python importing zoo's model and trick registries,
    which validating a study imports), each going first in turn; the figure is the median
    of the paired differences. The ``ablate`` side is split at ``run.yaml``'s mtime, which
    the orchestrator writes just before it spawns torchrun.
(b) study: a study of N tiny runs (digits, one epoch, one run per seed). The orchestrator
    runs as a real ``ablate run`` process; a wrapper records its own CPU time at exit
    (``getrusage(RUSAGE_SELF)``) and this script polls ``/proc/<pid>/task/<pid>/children``
    and ``/proc/<pid>/stat`` every 10 ms for the training processes' lifetimes (until they
    exit, not until the orchestrator reaps them) and the orchestrator's CPU time.
    Orchestration time is the wall time when no training process is alive (start-up, the
    gaps between runs, shut-down) plus the orchestrator's CPU time while training
    processes were alive (what it may have taken from them); the upper bound that counts
    all its CPU time, the idle part twice, is reported too. The fraction depends on how
    long the runs take: on a loaded machine they take longer, so the seconds are the
    figure to compare.
(c) database: ``ablate status`` and ``ablate report`` as CLI processes (wall time, start-up
    included) on a synthetic SQLite database built with bulk inserts through the schema of
    ``ablate.store``: 10,000 runs (100 studies x 10 variants x 10 seeds) of real resolved
    configs, each with 100 epochs of every metric the trainer writes (10 per epoch: 10M
    metric rows), results, environments and audits; side by side with the same commands on
    a database of 20 runs, their start-up floor. With ``--baseline DIR`` (a checkout of an
    earlier commit, e.g. ``git worktree add /tmp/base HEAD~3``) the same two commands of
    that code run too, interleaved with these (``python -c 'from ablate.cli import app;
    app()'`` with DIR first on PYTHONPATH: the ``ablate`` script's own two lines).

    .venv/bin/python bench/orchestrator.py                 # all three (5-15 minutes)
    .venv/bin/python bench/orchestrator.py --only startup --repeats 5
    .venv/bin/python bench/orchestrator.py --only study --runs 20
    .venv/bin/python bench/orchestrator.py --only db --db-file /tmp/ablate10k.db  # kept
    .venv/bin/python bench/orchestrator.py --only db --db-file /tmp/ablate10k.db \
        --db-repeats 7 --baseline /tmp/base                # before/after, side by side

Writes bench/results/orchestrator.json (the parts run now replace those in it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from zoo.contract import METRIC_KEYS

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results" / "orchestrator.json"
ABLATE = str(Path(sys.executable).with_name("ablate"))

GOALS = {"startup_extra_s": 1.5, "study_overhead_fraction": 0.05, "status_s": 0.6,
         "report_s": 1.5}


def digits_base(data: Path, epochs: int = 1) -> dict[str, Any]:
    """The tests' tiny real-data run (ResNet-20 on 8x8 digits), without its seed."""
    return {
        "model": "resnet20",
        "data": {"train": str(data / "train"), "val": str(data / "val"), "image_size": 8,
                 "preset": "small", "hflip": False, "mean": [0.5] * 3, "std": [0.5] * 3},
        "optim": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "schedule": {"name": "cosine", "warmup_epochs": 0},
        "precision": "fp32", "epochs": epochs, "batch_size": 64, "workers": 0,
    }


def write_study(path: Path, name: str, base: dict[str, Any], seeds: Sequence[int]) -> Path:
    path.write_text(yaml.safe_dump({"name": name, "base": base, "launch": {"nproc_per_node": 1},
                                    "seeds": list(seeds)}, sort_keys=False))
    return path


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 300) -> int:
    """mtime (ns) of ``path`` once it exists; fails if ``proc`` ends first."""
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} before {path}")
        if time.monotonic() > end:
            raise TimeoutError(path)
        time.sleep(0.002)
    return path.stat().st_mtime_ns


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process started in its own session, and everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --------------------------------------------------------------------------- (a) startup


def _run_dir(work: Path, base: dict[str, Any]) -> tuple[Path, Any]:
    """The one-run study's file in ``work``, and its run as the orchestrator plans it."""
    from ablate.study.spec import load_study

    study = load_study(write_study(work / "study.yaml", "one", base, [0]))
    row = study.run_specs(work / "runs")[0]
    return Path(row.run_dir), row


def startup_direct(work: Path, base: dict[str, Any]) -> float:
    """Seconds from starting torchrun on the run's config to the trainer's first step."""
    from ablate.launch.local import LocalLauncher, cpu_threads, torchrun_command, write_run_config

    out, row = _run_dir(work, base)
    config = write_run_config(row)  # the run.yaml the orchestrator would write
    cmd = torchrun_command(config, out, 1)
    env = LocalLauncher(False, cpu_threads(1, 1)).env([0])
    t0 = time.time_ns()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    first = wait_for(out / "config.json", proc)
    stop(proc)
    return (first - t0) / 1e9


def startup_ablate(work: Path, base: dict[str, Any]) -> tuple[float, float]:
    """Seconds from ``ablate run`` to the first step, and to the spawn of torchrun."""
    out, _ = _run_dir(work, base)  # known in advance: watched as cheaply as the direct one
    t0 = time.time_ns()
    proc = subprocess.Popen([ABLATE, "run", str(work / "study.yaml"), "--db",
                             f"sqlite:///{work / 'r.db'}", "--runs-dir", str(work / "runs")],
                            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = wait_for(out / "config.json", proc)
    spawn = (out / "run.yaml").stat().st_mtime_ns
    stop(proc, signal.SIGINT)  # as Ctrl-C: the orchestrator stops its run and exits
    return (first - t0) / 1e9, (spawn - t0) / 1e9


def registries_import() -> float:
    """Seconds for a new Python to import what validating a run config imports: zoo's
    model and trick registries (torch, torchvision, timm)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import zoo.models, zoo.tricks"], cwd=ROOT,
                   check=True)
    return time.perf_counter() - t0


def bench_startup(data: Path, repeats: int) -> dict[str, Any]:
    base = digits_base(data, epochs=1)
    times: dict[str, list[float]] = {"direct": [], "ablate": [], "spawn": [], "registries": []}
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        for i in range(repeats):
            order = ["direct", "ablate", "registries"]
            for kind in order[i % 3:] + order[:i % 3]:  # each goes first in turn
                work = Path(tmp) / f"{kind}{i}"
                work.mkdir()
                if kind == "direct":
                    times["direct"].append(startup_direct(work, base))
                elif kind == "ablate":
                    first, spawned = startup_ablate(work, base)
                    times["ablate"].append(first)
                    times["spawn"].append(spawned)
                else:
                    times["registries"].append(registries_import())
            print(f"  startup {i}: direct {times['direct'][-1]:.2f} s, ablate "
                  f"{times['ablate'][-1]:.2f} s (torchrun spawned at {times['spawn'][-1]:.2f} "
                  f"s); importing zoo's registries {times['registries'][-1]:.2f} s", flush=True)
    extra = [a - d for a, d in zip(times["ablate"], times["direct"], strict=True)]
    return {
        "what": "seconds from the command to the trainer's first step (config.json), one-run "
                "digits study; ablate_to_spawn: to the orchestrator's spawn of torchrun; "
                "registries_import: a new Python importing zoo.models and zoo.tricks, what "
                "validating the study's configs imports",
        "repeats": repeats,
        "direct_s": times["direct"], "ablate_s": times["ablate"],
        "ablate_to_spawn_s": times["spawn"], "registries_import_s": times["registries"],
        "median_direct_s": statistics.median(times["direct"]),
        "median_ablate_s": statistics.median(times["ablate"]),
        "median_ablate_to_spawn_s": statistics.median(times["spawn"]),
        "median_registries_import_s": statistics.median(times["registries"]),
        "median_extra_s": statistics.median(extra),
        "goal_extra_s": GOALS["startup_extra_s"],
    }


# --------------------------------------------------------------------------- (b) study

_WRAPPER = """\
import atexit, json, os, resource, sys
def _report():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["BENCH_RUSAGE"], "w") as f:
        json.dump({"user_s": ru.ru_utime, "sys_s": ru.ru_stime}, f)
atexit.register(_report)
from ablate.cli import app
app(prog_name="ablate", args=sys.argv[1:])
"""


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [int(p) for p in text.split()]


def _training(pid: int, parent: int, other: set[int]) -> bool:
    """Whether a child of the orchestrator is a run's torchrun (else noted in ``other``)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        forked = Path(f"/proc/{parent}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if b"torch.distributed.run" in cmdline:
        return True
    if cmdline and cmdline != forked:  # else not exec'd yet: asked again at the next poll
        other.add(pid)
    return False


def _alive(pid: int) -> bool:
    """Running, not exited (a zombie, state Z, waits for its parent to notice)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process so far (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def bench_study(data: Path, n_runs: int) -> dict[str, Any]:
    base = digits_base(data, epochs=1)
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        work = Path(tmp)
        study = write_study(work / "study.yaml", "tiny", base, range(n_runs))
        rusage = work / "rusage.json"
        env = {**os.environ, "BENCH_RUSAGE": str(rusage)}
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, "run", str(study), "--db",
             f"sqlite:///{work / 'r.db'}", "--runs-dir", str(work / "runs")],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen: dict[int, list[float]] = {}
        other: set[int] = set()  # children that are not training (a library's ldconfig)
        cpu_marks: list[tuple[float, float]] = []  # (time, orchestrator CPU s) while training
        while proc.poll() is None:
            now = time.monotonic()
            children = [pid for pid in _children(proc.pid)
                        if pid in seen or (pid not in other and _training(pid, proc.pid, other))]
            for pid in children:
                if _alive(pid):  # an exited child stays listed, a zombie, until reaped
                    seen.setdefault(pid, [now, now])[1] = now
            if children and (cpu := _cpu_seconds(proc.pid)) is not None:
                cpu_marks.append((now, cpu))
            time.sleep(0.01)
        wall = time.monotonic() - t0
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"ablate run failed ({proc.returncode}): {err[-2000:]}")
        cpu = json.loads(rusage.read_text())
        trained = len(list((work / "runs").glob("*/result.json")))
    intervals = sorted((a - t0, b - t0) for a, b in seen.values())
    busy = _union(intervals)
    between = [b[0] - a[1] for a, b in itertools.pairwise(intervals)]
    orch_cpu = cpu["user_s"] + cpu["sys_s"]
    # The orchestrator's CPU while training processes ran (from the first one's start to
    # the last one's end): what it may have taken from them. Its CPU in the idle time is
    # already in the idle wall time.
    cpu_training = cpu_marks[-1][1] - cpu_marks[0][1] if cpu_marks else 0.0
    overhead = (wall - busy) + cpu_training
    return {
        "what": f"one ablate run of {n_runs} one-epoch digits runs; training processes seen "
                f"by polling /proc every 10 ms",
        "runs": n_runs, "runs_trained": trained, "processes_seen": len(intervals),
        "wall_s": wall, "training_s": busy, "idle_s": wall - busy,
        "startup_s": intervals[0][0] if intervals else None,
        "shutdown_s": wall - intervals[-1][1] if intervals else None,
        "gaps_between_runs_s": between,
        "median_gap_s": statistics.median(between) if between else None,
        "orchestrator_cpu_s": orch_cpu, "orchestrator_cpu": cpu,
        "orchestrator_cpu_while_training_s": cpu_training,
        "overhead_s": overhead, "overhead_fraction": overhead / wall,
        "overhead_upper_bound_s": (wall - busy) + orch_cpu,
        "goal_fraction": GOALS["study_overhead_fraction"],
    }


# --------------------------------------------------------------------------- (c) database

#: One study's variants: (name, tricks, set). Real tricks with their default parameters.
VARIANTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("baseline", {}, {}),
    ("label smoothing", {"label_smoothing": {"smoothing": 0.1}}, {}),
    ("mixup", {"mixup": {}}, {}),
    ("cutmix", {"cutmix": {}}, {}),
    ("zero gamma", {"zero_gamma": {}}, {}),
    ("no bias decay", {"no_bias_decay": {}}, {}),
    ("cutout", {"cutout": {}}, {}),
    ("random erasing", {"random_erasing": {}}, {}),
    ("ema", {"ema": {}}, {}),
    ("lr 0.2", {}, {"optim": {"lr": 0.2}}),
]


def _metric_rows(run_hash: str, top1: float, done: int, epochs: int,
                 rng: random.Random) -> list[dict[str, Any]]:
    """The metric table's rows of one synthetic run: every key the trainer writes, each
    epoch done (corruption accuracy at the last epoch only, as eval.corruptions does)."""
    out = []
    for epoch in range(1, done + 1):
        row = {"train_loss": 1.0 / epoch, "lr": 0.1, "val_loss": 1.1 / epoch,
               "top1": top1 - 10 / epoch, "top5": 99.0, "eval_images": 10000,
               "images_per_s": 3000.0, "train_seconds": 30.0, "seconds": 36.0,
               "grad_scale": None, "ece": 5.0 / epoch + rng.gauss(0, 0.2),
               "worst_class": top1 - 10 / epoch - 5.0,
               "corruption": top1 - 20.0 if epoch == epochs else None}
        out += [{"run_hash": run_hash, "epoch": epoch, "key": key, "value": row[key]}
                for key in METRIC_KEYS]
    return out


def _study_spec(name: str, k: int, seeds: int, epochs: int
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Study ``k``'s base config and study file: its own data set, every variant."""
    base = {"model": "resnet20", "epochs": epochs, "batch_size": 128,
            "data": {"train": f"data/set{k}/train", "val": f"data/set{k}/val",
                     "image_size": 32},
            "optim": {"lr": 0.1, "weight_decay": 5e-4}, "precision": "fp32"}
    spec = {"name": name, "base": base, "seeds": list(range(seeds)),
            "variants": [{"name": v, **({"tricks": t} if t else {}),
                          **({"set": s} if s else {})} for v, t, s in VARIANTS[1:]]}
    return base, spec


def _run_facts(run_hash: str, now: datetime, failed: bool, finished: bool
               ) -> dict[str, Any]:
    """The run table's columns of a synthetic run beyond its config, status and epochs."""
    return {"run_dir": f"/runs/{run_hash}", "nproc": 1, "images_per_s": 3000.0,
            "host": "node1", "owner": "node1:1:abc", "attempts": 1,
            "code_commit": "0123456789abcdef0123456789abcdef01234567", "code_dirty": False,
            "error": "NonFiniteLossError: loss is nan" if failed else None,
            "created_at": now, "started_at": now,
            "finished_at": now + timedelta(hours=1) if finished else None,
            "heartbeat_at": now}


def _result_row(run_hash: str, top1: float, env: dict[str, Any], tricks: Any,
                rng: random.Random) -> dict[str, Any]:
    """The result table's row of one synthetic succeeded run."""
    return {"run_hash": run_hash, "top1": top1, "top5": 99.5 + rng.gauss(0, 0.1),
            "best_top1": top1 + 0.1, "best_top5": 99.7, "params": 272474,
            "macs": 41_000_000, "seconds": 3600.0, "device_hours": 1.0,
            "images_per_s": 3000.0, "world_size": 1, "env": env,
            "audit": [{"trick": t, "summary": f"{t}: applied", "effective": True}
                      for t in tricks]}


def build_database(path: Path, studies: int, seeds: int, epochs: int) -> dict[str, Any]:
    """Fill a new SQLite database through ablate.store's schema with synthetic studies."""
    from sqlalchemy import insert

    from ablate.store.db import Store
    from ablate.store.schema import MetricRow, ResultRow, RunRow, Status, StudyRow, StudyRunRow
    from ablate.study.spec import effective_model
    from zoo.validate import build_config

    t0 = time.perf_counter()
    rng = random.Random(0)
    store = Store(f"sqlite:///{path}")
    now = datetime(2025, 1, 1)
    env = {"torch": "2.9.1", "torchvision": "0.24.1", "cuda": None, "cudnn": None,
           "device": "cpu", "device_type": "cpu", "world_size": 1, "python": "3.12.3"}
    n_runs = n_metrics = 0
    with store.engine.begin() as conn:
        for k in range(studies):
            name = f"study_{k:03d}"
            base, spec = _study_spec(name, k, seeds, epochs)
            study_id = conn.execute(insert(StudyRow).values(
                name=name, path=f"studies/{name}.yaml", mode="add_one", spec=spec,
                created_at=now, updated_at=now)).inserted_primary_key[0]
            runs, links, results, metrics = [], [], [], []
            for index, (variant, tricks, sets) in enumerate(VARIANTS):
                change = "" if index == 0 else f"+ {variant}"
                for seed in range(seeds):
                    cfg = {**base, **sets, "tricks": tricks, "seed": seed}
                    if sets:
                        cfg["optim"] = {**base["optim"], **sets["optim"]}
                    config = build_config(cfg).to_dict()
                    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode()
                                       ).hexdigest()[:16]
                    # The last study is still going: a few runs in every other state.
                    status = Status.succeeded
                    if k == studies - 1 and seed == seeds - 1:
                        status = [Status.running, Status.failed, Status.queued][index % 3]
                    done = epochs if status == Status.succeeded else epochs // 2
                    top1 = 90 + index * 0.1 + rng.gauss(0, 0.3)
                    runs.append({
                        "hash": h, "config": config, "model": effective_model(config),
                        "status": status, "epochs": epochs, "epochs_done": done,
                        "top1": top1, **_run_facts(h, now, status == "failed",
                                                   done == epochs)})
                    links.append({"study_id": study_id, "variant": variant,
                                  "variant_index": index, "change": change, "seed": seed,
                                  "run_hash": h})
                    if status == Status.succeeded:
                        results.append(_result_row(h, top1, env, tricks, rng))
                    metrics += _metric_rows(h, top1, done, epochs, rng)
            conn.execute(insert(RunRow), runs)
            conn.execute(insert(StudyRunRow), links)
            if results:
                conn.execute(insert(ResultRow), results)
            conn.execute(insert(MetricRow), metrics)
            n_runs += len(runs)
            n_metrics += len(metrics)
    store.close()
    return {"studies": studies, "runs": n_runs, "metric_rows": n_metrics,
            "build_s": time.perf_counter() - t0, "bytes": path.stat().st_size}


def _timed(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: "
                           f"{proc.stderr.decode()[-2000:]}")
    return seconds


@contextlib.contextmanager
def _db_file(keep: Path | None) -> Iterator[tuple[Path, bool]]:
    """A database path and whether it must be built (a kept one is reused)."""
    if keep is not None:
        yield keep, not keep.exists()
        return
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        yield Path(tmp) / "results.db", True


def _described(path: Path) -> dict[str, Any]:
    """What a kept database holds, as :func:`build_database` reports it."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as conn:
        count = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("study", "run", "metric")}
    return {"reused": str(path), "studies": count["study"], "runs": count["run"],
            "metric_rows": count["metric"], "bytes": path.stat().st_size}


#: ``ablate report`` options that decide every metric a run records besides top-1.
EVERY_METRIC = ("--metric", "top5", "--metric", "nll", "--metric", "ece", "--metric",
                "worst_class", "--metric", "corruption")

#: What the ``ablate`` console script runs, for a baseline checkout on PYTHONPATH.
_CLI = "import sys; from ablate.cli import app; sys.exit(app(prog_name='ablate'))"


def bench_db(repeats: int, keep: Path | None, studies: int = 100, seeds: int = 10,
             epochs: int = 100, baseline: Path | None = None) -> dict[str, Any]:
    with _db_file(keep) as (path, build), tempfile.TemporaryDirectory() as small_dir:
        built = build_database(path, studies, seeds, epochs) if build else _described(path)
        print(f"  database: {built}", flush=True)
        # The floor: the same commands on one study of 20 runs (Python, typer, rich and what
        # each command imports), side by side.
        small = Path(small_dir) / "small.db"
        build_database(small, 1, 2, 2)
        commands = {f"{cmd}{suffix}": [ABLATE, cmd, "--db", f"sqlite:///{db}"]
                    for suffix, db in (("", path), ("_small", small))
                    for cmd in ("status", "report")}
        # Every metric decided, each its own Holm family (issue 27).
        commands["report_metrics"] = [*commands["report"], *EVERY_METRIC]
        envs: dict[str, dict[str, str] | None] = dict.fromkeys(commands)
        if baseline is not None:
            for cmd in ("status", "report"):
                commands[f"{cmd}_baseline"] = [sys.executable, "-c", _CLI, cmd, "--db",
                                               f"sqlite:///{path}"]
                envs[f"{cmd}_baseline"] = {**os.environ, "PYTHONPATH": str(baseline.resolve())}
        times: dict[str, list[float]] = {k: [] for k in commands}
        _timed(commands["status"], path.parent)  # page cache warm, as for a user's second look
        for i in range(repeats):
            for name, cmd in commands.items():
                times[name].append(_timed(cmd, path.parent, envs[name]))
            print(f"  db {i}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  flush=True)
    return {
        "what": f"wall seconds of the CLI, start-up included, on {studies * len(VARIANTS) * seeds}"
                f" runs x {epochs} epochs x {len(METRIC_KEYS)} metrics; *_small: on 20 runs",
        "database": built, "repeats": repeats,
        **({"baseline": f"{baseline}: {_commit_of(baseline)}"} if baseline is not None else {}),
        **{f"{k}_s": v for k, v in times.items()},
        **{f"median_{k}_s": statistics.median(v) for k, v in times.items()},
        "goal_status_s": GOALS["status_s"], "goal_report_s": GOALS["report_s"],
    }


def _commit_of(tree: Path) -> str:
    """The commit a checkout is at (or what is known of it)."""
    proc = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "not a git checkout"


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["startup", "study", "db"], action="append")
    parser.add_argument("--repeats", type=int, default=5, help="startup pairs")
    parser.add_argument("--runs", type=int, default=20, help="runs of the tiny study")
    parser.add_argument("--db-repeats", type=int, default=3)
    parser.add_argument("--db-file", type=Path, help="keep (or reuse) the synthetic database")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="db: also time status and report of the code in DIR (a checkout "
                             "of an earlier commit), side by side")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "digits",
                        help="digits prepared by 'ablate data prepare digits'")
    args = parser.parse_args(argv)
    parts = args.only or ["startup", "study", "db"]
    if {"startup", "study"} & set(parts) and not (args.data / "train").exists():
        from zoo.data.prepare import prepare

        prepare("digits", args.data)
    results: dict[str, Any] = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["machine"] = {"cpus": os.cpu_count()}
    for part in parts:
        load = os.getloadavg()  # the machine is shared: how busy it was, with each figure
        if part == "startup":
            results[part] = bench_startup(args.data.resolve(), args.repeats)
        elif part == "study":
            results[part] = bench_study(args.data.resolve(), args.runs)
        else:
            results[part] = bench_db(args.db_repeats, args.db_file, baseline=args.baseline)
        results[part]["load_avg_before_after"] = [load, os.getloadavg()]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    for part in parts:
        r = results[part]
        if part == "startup":
            print(f"(a) startup: ablate +{r['median_extra_s']:.2f} s over direct torchrun "
                  f"(median of {r['repeats']} pairs; goal <= {r['goal_extra_s']} s); torchrun "
                  f"spawned {r['median_ablate_to_spawn_s']:.2f} s after 'ablate run', of which"
                  f" importing zoo's registries to validate takes "
                  f"{r['median_registries_import_s']:.2f} s")
        elif part == "study":
            print(f"(b) study of {r['runs']} runs: orchestration {r['overhead_s']:.1f} s of "
                  f"{r['wall_s']:.1f} s wall = {100 * r['overhead_fraction']:.1f}% (no "
                  f"training process for {r['idle_s']:.1f} s: start-up {r['startup_s']:.1f} "
                  f"s, {len(r['gaps_between_runs_s'])} gaps of median "
                  f"{r['median_gap_s'] or 0:.3f} s, shut-down {r['shutdown_s']:.1f} s; "
                  f"orchestrator CPU while training {r['orchestrator_cpu_while_training_s']:.1f}"
                  f" s; goal < {100 * r['goal_fraction']:.0f}%)")
        else:
            print(f"(c) status {r['median_status_s']:.2f} s (goal < {r['goal_status_s']}), "
                  f"report {r['median_report_s']:.2f} s (goal < {r['goal_report_s']}), with "
                  f"every metric decided {r['median_report_metrics_s']:.2f} s; on 20 "
                  f"runs: status {r['median_status_small_s']:.2f} s, report "
                  f"{r['median_report_small_s']:.2f} s"
                  + (f"; baseline ({r['baseline']}): status {r['median_status_baseline_s']:.2f}"
                     f" s, report {r['median_report_baseline_s']:.2f} s" if "baseline" in r
                     else ""))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
