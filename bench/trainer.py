"""Training-loop overhead: zoo's ``train_one_epoch`` against a bare loop and PyTorch Lightning.

All three train the same model on the same in-memory batches (no data loading), with the
same batch size, precision (fp32) and SGD settings (Nesterov momentum 0.9, weight decay
5e-4), side by side in one process. Repeats are interleaved, and the order rotates each
repeat (bare, zoo, lightning; zoo, lightning, bare; ...), so a noisy shared machine slows
every side alike; medians are compared.

- bare: zero_grad, forward, cross-entropy, backward, ``SGD.step``; nothing else. The
  ceiling, in the order PyTorch's tutorials write it (zoo's loop clears the gradients
  after the forward pass; the two orders measured within 3% of each other here).
- zoo: :func:`zoo.engine.train_one_epoch` as ``zoo.train`` calls it, with its scheduler
  (stepped every iteration), GradScaler (disabled in fp32), trick hooks and device-side
  non-finite-loss check.
- lightning: ``lightning.Trainer.fit`` on a ``LightningModule`` whose ``training_step``
  returns the loss (automatic optimisation, its default loop), with checkpointing, the
  logger, the progress bar and the model summary switched off. Its time is taken from
  ``on_train_epoch_start`` to ``on_train_epoch_end`` (the steady-state loop, like zoo's);
  the whole ``fit`` call, setup included, is recorded too.

The figures are the ratios zoo / bare (goal >= 0.95) and zoo / lightning (goal >= 1.1).
``--model linear`` (one linear layer) makes the steps so short that the ratios and the
microseconds per step show each loop's own fixed cost per step.
Lightning is optional: without it the bench says how to install it and compares zoo
with the bare loop only.

    .venv/bin/pip install -e '.[bench]'                     # lightning, once
    .venv/bin/python bench/trainer.py                       # resnet20 at 32 px, batch 128
    .venv/bin/python bench/trainer.py --model resnet18_cifar --size 64 --steps 3 --repeats 3
    .venv/bin/python bench/trainer.py --profile --steps 3    # where the time goes
    .venv/bin/python bench/trainer.py --model linear --size 8 --batch 32 --steps 500
    .venv/bin/python bench/trainer.py --zoo-train data/fashion-mnist --size 28 --threads 1 \
        --repeats 3

Writes bench/results/trainer.json (one entry per model@size, every repeat kept);
``--profile`` writes bench/results/profile_MODEL@SIZE.txt instead. ``--zoo-train TREE``
times the real ``python -m zoo.train`` (2 epochs on a subset of TREE; epoch 2's images/s,
data loading included) against the bare loop, timed between its runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from zoo.config import OptimConfig, RunConfig, ScheduleConfig
from zoo.engine import build_optimizer, build_scheduler, resolve_precision, train_one_epoch
from zoo.models import create_model
from zoo.tricks import TrainContext, TrickSet

OUT = Path(__file__).parent / "results" / "trainer.json"
INSTALL_HINT = "lightning is not installed; for the Lightning column run: " \
    ".venv/bin/pip install -e '.[bench]'"
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4

Batch = tuple[torch.Tensor, torch.Tensor]


def batches(n: int, batch: int, size: int, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, size, size, generator=g),
             torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)]


def sgd(params: Any) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, nesterov=True,
                           weight_decay=WEIGHT_DECAY)


def make_model(name: str) -> nn.Module:
    """A registry model, or ``linear``: one linear layer, whose steps take microseconds, so
    the loops' own per-step costs show instead of the convolutions'."""
    if name == "linear":
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(10))
    return create_model(name, num_classes=10)


def bare(model: nn.Module, data: list[Batch]) -> float:
    """The ceiling: forward, backward, SGD step; nothing else."""
    opt = sgd(model.parameters())
    model.train()
    t0 = time.perf_counter()
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def zoo_loop(model: nn.Module, data: list[Batch], log_every: int = 20) -> float:
    """zoo's loop, built the way ``zoo.train`` builds it (no tricks, cosine schedule)."""
    cfg = RunConfig(epochs=1, optim=OptimConfig(lr=LR, momentum=MOMENTUM,
                                                weight_decay=WEIGHT_DECAY),
                    schedule=ScheduleConfig(warmup_epochs=0.0))
    tricks = TrickSet({})
    opt = build_optimizer(model, cfg, tricks)
    sched = build_scheduler(opt, cfg, len(data))
    precision = resolve_precision("fp32", torch.device("cpu"))
    ctx = TrainContext(num_classes=10, world_size=1, device=torch.device("cpu"), epochs=1,
                       steps_per_epoch=len(data))
    t0 = time.perf_counter()
    train_one_epoch(model, data, len(data), opt, sched, precision.grad_scaler(),
                    tricks, ctx, precision, epoch=1, first_step=1,
                    log_every=log_every)
    return time.perf_counter() - t0


@cache
def _lightning() -> tuple[type, type]:
    """The LightningModule and timing callback classes (lightning imported on first use)."""
    import lightning as L

    class Classifier(L.LightningModule):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return sgd(self.parameters())

    class EpochTimer(L.Callback):
        start = end = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.end = time.perf_counter()

    return Classifier, EpochTimer


class InMemory:
    """The batches as one iterable: Lightning takes a bare list for a list of loaders."""

    def __init__(self, data: list[Batch]) -> None:
        self.data = data

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def lightning_loop(model: nn.Module, data: list[Batch], fit_times: list[float]) -> float:
    """One ``Trainer.fit`` epoch over ``data``; returns the epoch's seconds and appends
    the whole ``fit`` call's seconds (setup and teardown included) to ``fit_times``."""
    import lightning as L

    classifier, epoch_timer = _lightning()
    timer = epoch_timer()
    threads = torch.get_num_threads()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, precision="32-true",
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer],
    )
    t0 = time.perf_counter()
    trainer.fit(classifier(model), train_dataloaders=InMemory(data))
    fit_times.append(time.perf_counter() - t0)
    torch.set_num_threads(threads)  # in case Lightning changed it
    return timer.end - timer.start


def profile_steps(model: nn.Module, data: list[Batch], out: Path, rounds: int = 3
                  ) -> dict[str, Any]:
    """torch.profiler (CPU) over the same steps of the bare loop and of zoo's loop.

    Writes both operator tables (sorted by self CPU time) and a table of the per-operator
    difference zoo - bare to ``out``; returns the wall seconds per step of each."""
    from torch.profiler import ProfilerActivity, profile

    loops: dict[str, Callable[[], float]] = {
        "bare": lambda: bare(model, data), "zoo": lambda: zoo_loop(model, data)}
    for loop in loops.values():
        loop()  # warm-up outside the profile
    # Alternate the two under the profiler and keep each one's fastest round: a shared
    # machine's interruptions inflate whole rounds, not one loop's operators.
    best: dict[str, tuple[float, Any]] = {}
    for _ in range(rounds):
        for name, loop in loops.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                seconds = loop()
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, prof.key_averages())
    tables, stats, per_step = [], {}, {}
    for name, (seconds, averages) in best.items():
        per_step[name] = seconds / len(data)
        stats[name] = {e.key: (e.count, e.self_cpu_time_total) for e in averages}
        tables.append(f"== {name}: {len(data)} steps, {per_step[name] * 1e3:.1f} ms/step "
                      f"(under the profiler, fastest of {rounds} alternating rounds, "
                      f"{torch.get_num_threads()} threads)\n"
                      + averages.table(sort_by="self_cpu_time_total", row_limit=20))
    keys = set(stats["bare"]) | set(stats["zoo"])
    diff = sorted(
        ((k, *stats["bare"].get(k, (0, 0.0)), *stats["zoo"].get(k, (0, 0.0))) for k in keys),
        key=lambda r: abs(r[4] - r[2]), reverse=True)
    lines = [f"{'operator':<50} {'bare n':>7} {'bare us':>10} {'zoo n':>7} {'zoo us':>10} "
             f"{'zoo-bare us':>12}"]
    lines += [f"{k[:50]:<50} {bn:>7} {bt:>10.0f} {zn:>7} {zt:>10.0f} {zt - bt:>12.0f}"
              for k, bn, bt, zn, zt in diff[:25]]
    only_zoo = [k for k in keys if k not in stats["bare"]]
    text = "\n\n".join([
        *tables,
        "== self CPU time per operator, zoo - bare (largest differences first)\n"
        + "\n".join(lines),
        "== operators only in zoo's loop: " + ", ".join(sorted(only_zoo)),
    ])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return {"ms_per_step": {k: v * 1e3 for k, v in per_step.items()},
            "zoo_only_self_cpu_us": sum(stats["zoo"][k][1] for k in only_zoo),
            "table": str(out)}


def zoo_train_steady(args: argparse.Namespace) -> dict[str, Any]:
    """``python -m zoo.train`` itself on a subset of a real ImageFolder tree: images/s of
    epoch 2 (its workers warm and persistent; data loading, hooks and schedule included)
    against the bare loop on in-memory batches of the same model, size and batch, timed
    in this process right before and right after the run."""
    src = Path(args.zoo_train)
    work = Path(tempfile.mkdtemp(prefix="zoo_train_bench_"))
    per_split = {"train": args.per_class, "val": max(1, args.per_class // 5)}
    for split, n in per_split.items():
        for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            (work / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.iterdir())[:n]:
                (work / split / cls.name / f.name).symlink_to(f.resolve())
    cfg = {
        "model": args.model,
        "data": {"train": str(work / "train"), "val": str(work / "val"),
                 "image_size": args.size, "preset": "small"},
        "optim": {"lr": LR, "momentum": MOMENTUM, "nesterov": True,
                  "weight_decay": WEIGHT_DECAY},
        "schedule": {"name": "cosine"}, "precision": "fp32", "epochs": 2,
        "batch_size": args.batch, "workers": args.workers, "log_every": args.log_every,
        "device": "cpu",
    }
    (work / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    model = create_model(args.model, num_classes=10)
    data = batches(args.steps, args.batch, args.size)
    bare(model, data[:2])
    images = args.steps * args.batch
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    # bare, zoo.train, bare, zoo.train, ..., bare: each run between two bare timings.
    bare_ips_all = [images / bare(model, data)]
    runs: list[list[dict[str, Any]]] = []
    for r in range(args.repeats):
        out = work / f"run{r}"
        proc = subprocess.run([sys.executable, "-m", "zoo.train", "--config",
                               str(work / "cfg.yaml"), "--out", str(out)], env=env,
                              capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
        if proc.returncode != 0:
            raise SystemExit(f"zoo.train failed:\n{proc.stderr[-3000:]}")
        runs.append([json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()])
        bare_ips_all.append(images / bare(model, data))
    rows = runs[0]
    steady = statistics.median(run[-1]["images_per_s"] for run in runs)
    bare_ips = statistics.median(bare_ips_all)
    result = {
        "command": " ".join([".venv/bin/python bench/trainer.py",
                             *(sys.argv[1:] if args.argv is None else args.argv)]),
        "model": args.model, "size": args.size, "batch": args.batch, "threads": args.threads,
        "workers": args.workers, "source": str(src),
        "train_images": rows[-1]["step"] // 2 * args.batch, "env": env_info(),
        "repeats": args.repeats,
        "zoo_train_images_per_s": [{f"epoch{r['epoch']}": r["images_per_s"] for r in run}
                                   for run in runs],
        "bare_images_per_s": bare_ips_all,
        "median": {"zoo_train_epoch2": steady, "bare": bare_ips},
        "zoo_train_over_bare": steady / bare_ips,
        "epoch_seconds": [[r["seconds"] for r in run] for run in runs],
    }
    print("| run | model | px | batch | threads | workers | bare img/s | zoo.train img/s "
          "(epoch 2) | zoo.train / bare |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| zoo.train on {src.name} | {args.model} | {args.size} | {args.batch} | "
          f"{args.threads} | {args.workers} | {bare_ips:.0f} | {steady:.0f} | "
          f"{result['zoo_train_over_bare']:.3f} |")
    shutil.rmtree(work, ignore_errors=True)
    return result


def have_lightning() -> bool:
    try:
        import lightning  # noqa: F401
    except ImportError:
        return False
    return True


def env_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()),
    }
    if have_lightning():
        import lightning

        info["lightning"] = lightning.__version__
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--no-lightning", action="store_true", help="compare with bare only")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--profile", action="store_true",
                   help="only profile zoo's and the bare loop's steps (torch.profiler, CPU); "
                   "writes bench/results/profile_MODEL@SIZE.txt")
    p.add_argument("--zoo-train", metavar="TREE", default=None,
                   help="instead: time python -m zoo.train on a subset of this ImageFolder "
                   "tree (train/, val/) against the bare loop")
    p.add_argument("--per-class", type=int, default=512, help="--zoo-train images per class")
    p.add_argument("--workers", type=int, default=1, help="--zoo-train DataLoader workers")
    args = p.parse_args(argv)
    args.argv = argv
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.zoo_train:
        result = zoo_train_steady(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        existing = json.loads(args.out.read_text()) if args.out.exists() else {}
        existing[f"zoo.train:{args.model}@{args.size}:workers{args.workers}"] = result
        args.out.write_text(json.dumps(existing, indent=2) + "\n")
        return result
    if args.profile:
        model = make_model(args.model)
        data = batches(args.steps, args.batch, args.size)
        out = OUT.parent / f"profile_{args.model}@{args.size}.txt"
        summary = profile_steps(model, data, out, args.repeats)
        print(json.dumps(summary, indent=2))
        return summary
    with_lightning = not args.no_lightning and have_lightning()
    if not with_lightning and not args.no_lightning:
        print(INSTALL_HINT, file=sys.stderr)
    if with_lightning:  # lightning is imported now; its import sets the levels changed here
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)  # "GPU available: False ..."
        warnings.filterwarnings("ignore", module="lightning")

    model = make_model(args.model)
    data = batches(args.steps, args.batch, args.size)
    fit_times: list[float] = []
    runners: dict[str, Callable[[], float]] = {
        "bare": lambda: bare(model, data),
        "zoo": lambda: zoo_loop(model, data, args.log_every),
    }
    if with_lightning:
        runners["lightning"] = lambda: lightning_loop(model, data, fit_times)
    # Warm-up: allocator, kernels, Lightning's first-import costs.
    for run in runners.values():
        run()
    fit_times.clear()
    times: dict[str, list[float]] = {k: [] for k in runners}
    names = list(runners)
    load_start = list(os.getloadavg())
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(runners[name]())
    images = args.steps * args.batch
    med = {k: statistics.median(v) for k, v in times.items()}
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python bench/trainer.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "model": args.model, "size": args.size, "batch": args.batch, "steps": args.steps,
        "repeats": args.repeats, "precision": "fp32", "env": env_info(),
        "loadavg_at_start": load_start,
        "images_per_s": {k: images / v for k, v in med.items()},
        "zoo_over_bare": med["bare"] / med["zoo"],
        "us_per_step": {k: 1e6 * v / args.steps for k, v in med.items()},
        "seconds": times,
    }
    if with_lightning:
        result["zoo_over_lightning"] = med["lightning"] / med["zoo"]
        result["lightning_fit_seconds"] = fit_times
        result["images_per_s"]["lightning_fit"] = images / statistics.median(fit_times)
    else:
        result["lightning"] = INSTALL_HINT if not args.no_lightning else "skipped"

    ips = result["images_per_s"]
    header = "| model | px | batch | threads | bare img/s | zoo img/s | zoo / bare |"
    row = (f"| {args.model} | {args.size} | {args.batch} | {args.threads} | "
           f"{ips['bare']:.0f} | {ips['zoo']:.0f} | {result['zoo_over_bare']:.3f} |")
    if with_lightning:
        header += " Lightning img/s | zoo / Lightning |"
        row += f" {ips['lightning']:.0f} | {result['zoo_over_lightning']:.3f} |"
    print(header)
    print("|" + "---|" * 4 + "---:|" * (header.count("|") - 5))
    print(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    existing[f"{args.model}@{args.size}"] = result
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
