"""Training-loop overhead: zoo's ``train_one_epoch`` against a bare PyTorch loop.

Both train the same model on the same in-memory batches (no data loading), with the same
batch size, precision and SGD settings, side by side in one process: repeats are
interleaved (bare, zoo, bare, zoo, ...) and the medians compared, so a noisy shared
machine affects both alike. The ratio zoo / bare is the figure; 1.00 means the loop
(hooks, scheduler, scaler, device-side non-finite check) costs nothing.

    .venv/bin/python bench/trainer.py                       # resnet20 at 32 px, batch 128
    .venv/bin/python bench/trainer.py --model resnet18 --size 64 --steps 3

Writes bench/results/trainer.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from zoo.config import OptimConfig, RunConfig, ScheduleConfig
from zoo.engine import build_optimizer, build_scheduler, resolve_precision, train_one_epoch
from zoo.models import create_model
from zoo.tricks import TrainContext, TrickSet

OUT = Path(__file__).parent / "results" / "trainer.json"


Batch = tuple[torch.Tensor, torch.Tensor]


def batches(n: int, batch: int, size: int, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, size, size, generator=g),
             torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)]


def bare(model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]], lr: float) -> float:
    """The ceiling: forward, backward, SGD step; nothing else."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    model.train()
    t0 = time.perf_counter()
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def zoo_loop(model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]], lr: float,
             log_every: int) -> float:
    cfg = RunConfig(epochs=1, optim=OptimConfig(lr=lr, weight_decay=5e-4),
                    schedule=ScheduleConfig(warmup_epochs=0.0))
    tricks = TrickSet({})
    opt = build_optimizer(model, cfg, tricks)
    sched = build_scheduler(opt, cfg, len(data))
    precision = resolve_precision("fp32", torch.device("cpu"))
    ctx = TrainContext(num_classes=10, world_size=1, device=torch.device("cpu"), epochs=1,
                       steps_per_epoch=len(data))
    t0 = time.perf_counter()
    train_one_epoch(model, data, len(data), opt, sched, precision.grad_scaler(),
                    nn.CrossEntropyLoss(), tricks, ctx, precision, epoch=1, first_step=1,
                    log_every=log_every)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--log-every", type=int, default=20)
    args = p.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10)
    data = batches(args.steps, args.batch, args.size)
    bare(model, data[:2], 0.01)  # warm-up: allocator, kernels
    times: dict[str, list[float]] = {"bare": [], "zoo": []}
    for _ in range(args.repeats):
        times["bare"].append(bare(model, data, 0.01))
        times["zoo"].append(zoo_loop(model, data, 0.01, args.log_every))
    images = args.steps * args.batch
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model": args.model, "size": args.size, "batch": args.batch, "steps": args.steps,
        "repeats": args.repeats, "threads": torch.get_num_threads(),
        "images_per_s": {k: images / v for k, v in med.items()},
        "zoo_over_bare": med["bare"] / med["zoo"],
        "seconds": times,
    }
    print("| model | px | batch | threads | bare img/s | zoo img/s | zoo / bare |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.model} | {args.size} | {args.batch} | {result['threads']} | "
          f"{result['images_per_s']['bare']:.0f} | {result['images_per_s']['zoo']:.0f} | "
          f"{result['zoo_over_bare']:.3f} |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(OUT.read_text()) if OUT.exists() else {}
    existing[f"{args.model}@{args.size}"] = result
    OUT.write_text(json.dumps(existing, indent=2) + "\n")


if __name__ == "__main__":
    main()
