"""CPU threads of a trainer on a shared machine: 1 vs N torch threads, and OpenMP's wait
policies, idle and beside ``stress-ng --cpu K`` (another job using the cores).

Each configuration trains the real ``python -m zoo.train`` on scikit-learn's digits
(ResNet-20 at 8 px, fp32, batch 64, ``workers: 0`` as the demo study, 2 epochs) as a fresh
process with ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY`` set as the orchestrator would.
Its figures are the trainer's own: epoch 2's seconds (a steady DataLoader epoch: loading,
training and evaluation) and the whole process's wall time. Repeats are interleaved, the
order rotating each repeat, so drift on a shared machine slows every configuration alike;
medians are compared. The loaded half starts ``stress-ng --cpu K`` (K = the cores) before
its repeats and stops it after.

OpenMP's wait policy: libgomp's default spins a while (``GOMP_SPINCOUNT``) at each barrier
before it sleeps; ``ACTIVE`` spins always; ``PASSIVE`` sleeps at once. A spinning thread on
a core another process wants steals it from that process and from its own sibling threads.

    apt-get install -y stress-ng
    .venv/bin/python bench/threads.py                      # 1 vs nproc threads, 3 repeats
    .venv/bin/python bench/threads.py --repeats 1 --no-load
    .venv/bin/python bench/threads.py --configs 1xdefault,Nxdefault,NxPASSIVE
    .venv/bin/python bench/threads.py --configs 1xdefault,1xPASSIVE,Nxdefault,NxPASSIVE \
        --loaded-configs 1xdefault,NxPASSIVE          # what docs/clusters.md shows

Writes bench/results/threads.json (every repeat kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "threads.json"


def configurations(cores: int, names: str | None) -> list[tuple[int, str]]:
    """(threads, wait policy); "default" leaves OMP_WAIT_POLICY unset (libgomp's own).
    ``names``: a comma-separated subset such as ``1xdefault,Nxdefault,NxPASSIVE``."""
    many = max(2, cores)
    every = [(1, "default"), (1, "PASSIVE"), (many, "default"), (many, "PASSIVE"),
             (many, "ACTIVE")]
    if not names:
        return every
    out = []
    for name in names.split(","):
        threads, _, policy = name.strip().partition("x")
        out.append((many if threads == "N" else int(threads), policy))
    return out


def digits_config(data: Path, epochs: int) -> dict[str, Any]:
    return {
        "model": "resnet20",
        "data": {"train": str(data / "train"), "val": str(data / "val"), "image_size": 8,
                 "preset": "small", "hflip": False, "mean": [0.5] * 3, "std": [0.5] * 3},
        "optim": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "precision": "fp32", "seed": 0, "epochs": epochs, "batch_size": 64, "workers": 0,
    }


def train_once(config: Path, out: Path, threads: int, policy: str) -> dict[str, Any]:
    """One fresh trainer; its wall time and its last epoch's seconds."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("GOMP_SPINCOUNT", None)
    chose = policy
    if policy == "auto":  # what `ablate run` gives a CPU trainer it starts now
        from ablate.launch.local import LocalLauncher

        env = {**LocalLauncher(use_gpus=False, threads=threads).env([]),
               "PYTHONPATH": str(ROOT)}
        chose = env.get("OMP_WAIT_POLICY") or f"spin{env['GOMP_SPINCOUNT']}"
    elif policy.startswith("spin"):  # libgomp's spin count before a waiting thread sleeps
        env["GOMP_SPINCOUNT"] = policy.removeprefix("spin")
    elif policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zoo.train", "--config", str(config), "--out",
                    str(out)], env=env, check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - start
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"wall_s": wall, "epoch_s": float(rows[-1]["seconds"]), "chose": chose}


def measure(config: Path, tmp: Path, repeats: int, configs: list[tuple[int, str]],
            report: dict[str, Any], half: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict[str, Any]]] = {f"{t}x{p}": [] for t, p in configs}
    report[half] = out
    for r in range(repeats):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for threads, policy in order:
            got = train_once(config, tmp / "run", threads, policy)
            got["load1"] = os.getloadavg()[0]
            out[f"{threads}x{policy}"].append(got)
            save(report)  # every repeat kept as it comes (a long loaded half)
            print(f"  {threads} threads, {policy:8s} ({got['chose']}): epoch "
                  f"{got['epoch_s']:6.2f} s, process {got['wall_s']:6.2f} s "
                  f"(load {got['load1']:.1f})", flush=True)
    return out


def save(report: dict[str, Any]) -> None:
    out = ROOT / report["out"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")


def summary(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {name: {key: statistics.median(r[key] for r in reps) for key in reps[0]
                   if key != "chose"} for name, reps in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--no-load", action="store_true", help="idle only (no stress-ng)")
    ap.add_argument("--no-idle", action="store_true", help="loaded only")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"default {RESULTS}")
    ap.add_argument("--stress", type=int, metavar="K",
                    help="stress-ng --cpu K beside the loaded half (default: the cores)")
    ap.add_argument("--configs", help="e.g. 1xdefault,NxPASSIVE (N: the cores); default all")
    ap.add_argument("--loaded-configs",
                    help="the loaded half's subset (default: --configs); libgomp's spinning "
                         "default takes minutes an epoch beside stress-ng")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):  # each configuration sets its own
        os.environ.pop(name, None)
    configs = configurations(cores, args.configs)
    loaded = configurations(cores, args.loaded_configs or args.configs)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sys.path.insert(0, str(ROOT))
        from zoo.data.prepare import prepare

        prepare("digits", tmp / "digits")
        config = tmp / "run.yaml"
        config.write_text(yaml.safe_dump(digits_config(tmp / "digits", args.epochs)))
        report: dict[str, Any] = {"cores": cores, "repeats": args.repeats,
                                  "epochs": args.epochs, "when": time.strftime("%F %T"),
                                  "out": str(args.out.resolve().relative_to(ROOT)
                                             if args.out.resolve().is_relative_to(ROOT)
                                             else args.out)}
        if not args.no_idle:
            print(f"idle ({cores} cores, load {os.getloadavg()[0]:.1f} before)")
            measure(config, tmp, args.repeats, configs, report, "idle")
        stressors = args.stress or cores
        report["stress_cpu"] = stressors
        if not args.no_load:
            if shutil.which("stress-ng") is None:
                sys.exit("stress-ng not found: apt-get install -y stress-ng (or --no-load)")
            stress = subprocess.Popen(["stress-ng", "--cpu", str(stressors), "--quiet"])
            try:
                time.sleep(5)  # let the load average see it
                print(f"beside stress-ng --cpu {stressors}")
                measure(config, tmp, args.repeats, loaded, report, "loaded")
            finally:
                stress.terminate()
                stress.wait()
    for half in ("idle", "loaded"):
        if half in report:
            report[f"{half}_median"] = summary(report[half])
            print(f"{half} medians:")
            for name, med in report[f"{half}_median"].items():
                print(f"  {name:12s} epoch {med['epoch_s']:6.2f} s, process {med['wall_s']:6.2f} s")
    save(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
