"""Sharded evaluation: the time to evaluate a validation set with 1 process and with 2.

Both sides are ``torchrun`` jobs (gloo, CPU, one thread per process, so two processes use
the two cores) that build the trainer's real validation loader (``zoo.train.make_loaders``:
the dataset, ``ShardSampler``, batch 2 x batch_size) and call ``zoo.engine.evaluate`` on
the same model (ResNet-20 at seed 0). The clock runs from a barrier before ``evaluate`` to
a barrier after it: process start-up and the dataset scan are not evaluation. Each job
also reports the image count and top-1, which must equal the single process's: every image
is counted once, whatever the world size. Jobs alternate (1, 2, 1, 2, ...); medians are
compared. Goal: 2 processes take at most 0.6x the time of 1. The busiest process's CPU
time is reported too: on a machine whose cores other work shares, it shows how the work
splits even when the wall-clock ratio cannot.

    .venv/bin/python bench/eval.py                     # data/fashion-mnist/val, 10k images
    .venv/bin/python bench/eval.py --val data/digits/val --size 8 --repeats 1   # seconds

Writes bench/results/eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "eval.json"


def worker(args: argparse.Namespace) -> None:
    """One torchrun process: build the real val loader, evaluate, report (rank 0)."""
    import torch

    from zoo.distributed import all_gather_objects, barrier, cleanup, init_distributed
    from zoo.engine import evaluate, resolve_precision
    from zoo.train import make_loaders
    from zoo.tricks import TrickSet
    from zoo.validate import build_config

    torch.set_num_threads(1)
    info = init_distributed("cpu")
    # The train split is read only to build the loaders; the val tree stands in for it.
    cfg = build_config({
        "model": args.model,
        "data": {"train": args.val, "val": args.val, "image_size": args.size,
                 "preset": "small"},
        "batch_size": args.batch, "workers": 0, "precision": "fp32", "device": "cpu",
    })
    tricks = TrickSet({})
    _, val_loader, _, classes = make_loaders(cfg, info, tricks)
    torch.manual_seed(0)
    model = tricks.build_model(cfg.model.name, cfg.model.options, len(classes))
    precision = resolve_precision("fp32", info.device)
    barrier()
    t0, cpu0 = time.perf_counter(), time.process_time()
    metrics = evaluate(model, val_loader, info.device, precision)
    cpu = time.process_time() - cpu0  # this process's own work, whatever else runs
    barrier()
    seconds = time.perf_counter() - t0
    cpus = all_gather_objects(cpu)
    if info.is_main:
        Path(args.report).write_text(json.dumps({
            "world_size": info.world_size, "seconds": seconds, "cpu_seconds_per_rank": cpus,
            "threads": torch.get_num_threads(),
            "count": metrics["count"], "top1": metrics["top1"], "val_loss": metrics["val_loss"],
            "batches_rank0": len(val_loader),
        }))
    cleanup()


def launch(nproc: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(nproc), __file__, "--worker", "--report", str(report),
               "--val", args.val, "--size", str(args.size), "--batch", str(args.batch),
               "--model", args.model]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"torchrun with {nproc} processes failed:\n{proc.stderr[-3000:]}")
        out = json.loads(report.read_text())
    out["job_wall_seconds"] = wall
    return out


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--val", default="data/fashion-mnist/val", help="validation ImageFolder tree")
    p.add_argument("--size", type=int, default=28, help="image side fed to the model")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch", type=int, default=128, help="batch_size (val batch is 2x)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return None
    if not (ROOT / args.val).exists() and not Path(args.val).exists():
        raise SystemExit(f"{args.val}: no such directory; prepare it with "
                         "'ablate data prepare fashion-mnist --out data/fashion-mnist'")
    load_start = list(os.getloadavg())
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for nproc in (1, 2):
            runs[nproc].append(launch(nproc, args))
            r = runs[nproc][-1]
            print(f"{nproc} process(es): {r['seconds']:.2f} s, {r['count']} images, "
                  f"top-1 {r['top1']:.2f}", file=sys.stderr)
    med = {n: statistics.median(r["seconds"] for r in rs) for n, rs in runs.items()}
    # The busiest process's CPU time: what the wall time would be on otherwise idle cores.
    cpu_med = {n: statistics.median(max(r["cpu_seconds_per_rank"]) for r in rs)
               for n, rs in runs.items()}
    counts = {r["count"] for rs in runs.values() for r in rs}
    top1s = {round(r["top1"], 9) for rs in runs.values() for r in rs}
    result = {
        "command": " ".join([".venv/bin/python bench/eval.py", *(argv or sys.argv[1:])]),
        "val": args.val, "model": args.model, "size": args.size, "val_batch": 2 * args.batch,
        "repeats": args.repeats,
        "env": {"python": platform.python_version(), "cpus": os.cpu_count(),
                "loadavg_at_start": load_start, "loadavg_at_end": list(os.getloadavg())},
        "median_seconds": {str(n): s for n, s in med.items()},
        "images_per_s": {str(n): next(iter(counts)) / s for n, s in med.items()},
        "two_over_one": med[2] / med[1],
        "goal": "<= 0.6",
        "median_cpu_seconds_busiest_rank": {str(n): c for n, c in cpu_med.items()},
        "two_over_one_cpu": cpu_med[2] / cpu_med[1],
        "each_image_once": len(counts) == 1 and len(top1s) == 1,
        "count": sorted(counts),
        "runs": {str(n): rs for n, rs in runs.items()},
    }
    print("| processes | threads each | images | median s | img/s | time vs 1 process "
          "| CPU s, busiest process | CPU vs 1 process |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (1, 2):
        print(f"| {n} | 1 | {runs[n][0]['count']} | {med[n]:.2f} | "
              f"{result['images_per_s'][str(n)]:.0f} | {med[n] / med[1]:.3f} | "
              f"{cpu_med[n]:.2f} | {cpu_med[n] / cpu_med[1]:.3f} |")
    if not result["each_image_once"]:
        print(f"MISMATCH: counts {sorted(counts)}, top-1 {sorted(top1s)}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
