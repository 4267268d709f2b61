"""ResNet-50 training throughput on one GPU: bare loop vs zoo, channels_last off/on, synthetic
input and the real data loader, with model FLOP utilisation. Run it through bench/gpu.sh.

Parts, each written to the JSON as soon as it is done (a run cut short keeps what it had):

1. synthetic: batch 256 of 224 px images already on the GPU, FP16 (autocast + GradScaler),
   SGD (Nesterov, fused as ``zoo.engine.build_optimizer`` makes it on CUDA). The bare loop
   (forward, backward, step; nothing else) and ``zoo.engine.train_one_epoch`` alternate in
   blocks of ``--steps`` steps, channels_last off and on; medians of ``--repeats`` blocks.
2. real data: an ImageFolder of JPEGs (``--images``, 500x375, made here by ``make_jpegs``
   when missing: smooth random pictures with grain, about the pixels and the decoding work
   of an ImageNet file) read by the trainer's own loader (``zoo.train.make_loaders``:
   RandomResizedCrop + flip, pinned memory, persistent workers): the loader alone, the bare
   loop fed by it, and ``python -m zoo.train`` itself (2 epochs; epoch 2's images/s from
   its metrics.jsonl).

Model FLOP utilisation is images/s x 3 x 4.09 GMACs x 2 FLOPs (forward + backward at
224 px; scaled by area at other sizes) over the GPU's dense FP16 peak (H100/H200 SXM:
989.4 TFLOP/s; ``--peak-tflops`` for others). Published anchors: about 2,500 images/s on
one A100, about 7,000 on one H100 (MLPerf); above about 8,000 on one H100/H200 is flagged
as a measurement error.

    bench/gpu.sh                 # on the GPU machine (about 5 minutes); JSON under $OUT
    bench/gpu.sh --smoke         # CPU, fp32, tiny: checks the script (about a minute)

Writes $OUT/gpu.json when OUT is set, else bench/results/gpu.json (or --out); --smoke
writes gpu_smoke.json instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
RESNET50_GMACS = 4.09  # at 224 px, the figure
PEAK_FP16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense, SXM
ANCHORS = {"A100": 2500, "H100": 7000}
IMPLAUSIBLE = 8000  # images/s on one H100/H200: a measurement error above this

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Settings:
    device: torch.device
    precision: str  # fp16 | fp32
    batch: int
    size: int
    steps: int
    warmup: int
    repeats: int
    images: int  # training images in the real-data set
    val_images: int
    workers: int
    jpeg_size: tuple[int, int]
    num_classes: int = 1000


def settings(args: argparse.Namespace) -> Settings:
    if args.smoke:
        return Settings(device=torch.device("cpu"), precision="fp32", batch=4, size=32,
                        steps=2, warmup=1, repeats=1, images=40, val_images=10, workers=1,
                        jpeg_size=(64, 48), num_classes=10)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run bench/gpu.sh on the GPU machine, or --smoke here")
    return Settings(device=torch.device("cuda"), precision="fp16", batch=args.batch,
                    size=224, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                    images=args.images, val_images=1024, workers=args.workers,
                    jpeg_size=(500, 375))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_image(size: int) -> float:
    return 3 * RESNET50_GMACS * 1e9 * 2 * (size / 224) ** 2


def peak_tflops(args: argparse.Namespace, device: torch.device) -> float | None:
    if args.peak_tflops:
        return float(args.peak_tflops)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FP16_TFLOPS.items() if k in name), None)


# --------------------------------------------------------------------------- loops


def make_model(s: Settings, channels_last: bool) -> nn.Module:
    from zoo.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet50", num_classes=s.num_classes).to(s.device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """zoo's optimizer (fused SGD on CUDA), so both loops step the same way."""
    from zoo.config import OptimConfig, RunConfig
    from zoo.engine import build_optimizer
    from zoo.tricks import TrickSet

    cfg = RunConfig(optim=OptimConfig(lr=0.1, weight_decay=5e-5))
    return build_optimizer(model, cfg, TrickSet({}))


class Bare:
    """The ceiling: autocast forward, scaled backward, GradScaler step; nothing else."""

    def __init__(self, s: Settings, channels_last: bool, compiled: bool = False) -> None:
        self.s, self.channels_last = s, channels_last
        self.model = make_model(s, channels_last)
        self.opt = make_optimizer(self.model)
        self.scaler = torch.amp.GradScaler(s.device.type, enabled=s.precision == "fp16")
        self.dtype = torch.float16 if s.precision == "fp16" else None
        # Inductor on CUDA; the smoke run on a CPU checks the path with the eager backend
        # (Inductor compiles ResNet-50 for CPU kernels for minutes).
        backend = "inductor" if s.device.type == "cuda" else "eager"
        self.forward: nn.Module = (torch.compile(self.model, backend=backend)  # type: ignore[assignment]
                                   if compiled else self.model)

    def step(self, x: Any, y: torch.Tensor) -> None:
        # zoo's device stage: a loader batch (uint8 or encoded) or a tensor on the device.
        from zoo.data.device import to_device

        x, y = to_device(x, y, self.s.device, self.dtype, self.channels_last)
        with torch.autocast(self.s.device.type, dtype=self.dtype,
                            enabled=self.dtype is not None):
            loss = nn.functional.cross_entropy(self.forward(x), y)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()

    def run(self, batches: list[Batch]) -> float:
        self.model.train()
        sync(self.s.device)
        t0 = time.perf_counter()
        for x, y in batches:
            self.step(x, y)
        sync(self.s.device)
        return time.perf_counter() - t0


class Zoo:
    """``zoo.engine.train_one_epoch`` with zoo's precision, scheduler and (empty) tricks."""

    def __init__(self, s: Settings, channels_last: bool) -> None:
        from zoo.config import OptimConfig, RunConfig
        from zoo.engine import build_scheduler, resolve_precision
        from zoo.tricks import TrainContext, TrickSet

        self.s, self.channels_last = s, channels_last
        self.model = make_model(s, channels_last)
        self.opt = make_optimizer(self.model)
        cfg = RunConfig(epochs=1000, optim=OptimConfig(lr=0.1))
        self.sched = build_scheduler(self.opt, cfg, 1000)
        self.precision = resolve_precision(s.precision, s.device)
        self.scaler = self.precision.grad_scaler()
        self.tricks = TrickSet({})
        self.ctx = TrainContext(num_classes=s.num_classes, world_size=1, device=s.device,
                                epochs=1000, steps_per_epoch=1000)
        self.epoch = 0

    def run(self, batches: list[Batch]) -> float:
        from zoo.engine import train_one_epoch

        self.epoch += 1
        sync(self.s.device)
        t0 = time.perf_counter()
        train_one_epoch(self.model, batches, len(batches), self.opt, self.sched, self.scaler,
                        self.tricks, self.ctx, self.precision,
                        epoch=self.epoch, first_step=1, log_every=20,
                        channels_last=self.channels_last)
        sync(self.s.device)  # train_one_epoch ends with a host sync anyway
        return time.perf_counter() - t0


def synthetic(s: Settings, report: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    g = torch.Generator(device=s.device).manual_seed(0)
    x = torch.randn(s.batch, 3, s.size, s.size, device=s.device, generator=g)
    y = torch.randint(0, s.num_classes, (s.batch,), device=s.device, generator=g)
    batches = [(x, y)] * s.steps
    runners: dict[str, Bare | Zoo] = {}
    for cl in (False, True):
        runners[f"bare{'_cl' if cl else ''}"] = Bare(s, cl)
        runners[f"zoo{'_cl' if cl else ''}"] = Zoo(s, cl)
    if s.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as zoo.train sets it on CUDA
    for r in runners.values():  # warm-up: cuDNN autotuning, allocator, GradScaler
        r.run([(x, y)] * s.warmup)
    times: dict[str, list[float]] = {k: [] for k in runners}
    names = list(runners)
    for rep in range(s.repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            times[name].append(runners[name].run(batches))
    rows = []
    for name, ts in times.items():
        ips = s.batch * s.steps / statistics.median(ts)
        rows.append({"loop": name.split("_")[0], "channels_last": name.endswith("_cl"),
                     "images_per_s": ips, "seconds": ts})
    for row in rows:
        bare = next(r for r in rows if r["loop"] == "bare"
                    and r["channels_last"] == row["channels_last"])
        row["over_bare"] = row["images_per_s"] / bare["images_per_s"]
    report({"synthetic": rows})
    del runners
    if s.device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def compile_rows(s: Settings) -> list[dict[str, Any]]:
    """The bare loop (channels_last) with ``torch.compile`` off and on: the warm-up, which
    holds the compilation, is timed apart and reported; the rate is the median block."""
    g = torch.Generator(device=s.device).manual_seed(0)
    x = torch.randn(s.batch, 3, s.size, s.size, device=s.device, generator=g)
    y = torch.randint(0, s.num_classes, (s.batch,), device=s.device, generator=g)
    rows = []
    for compiled in (False, True):
        bare = Bare(s, channels_last=True, compiled=compiled)
        warm = bare.run([(x, y)] * s.warmup)  # compilation happens here
        times = [bare.run([(x, y)] * s.steps) for _ in range(s.repeats)]
        rows.append({"compile": compiled, "warmup_seconds": warm,
                     "images_per_s": s.batch * s.steps / statistics.median(times)})
    return rows


def transfer_rows(s: Settings, reps: int = 20) -> list[dict[str, Any]]:
    """Host to device with the trainer's stage: a pinned uint8 batch normalised on the
    device vs a pinned float32 batch (the old pipeline's), images/s of the copy + stage."""
    from zoo.data.device import HostBatch, Normalization, to_device

    norm = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    u8 = torch.randint(0, 256, (s.batch, 3, s.size, s.size), dtype=torch.uint8)
    f32 = u8.float()
    if s.device.type == "cuda":
        u8, f32 = u8.pin_memory(), f32.pin_memory()
    y = torch.zeros(s.batch, dtype=torch.long)
    dtype = torch.float16 if s.precision == "fp16" else None
    rows = []
    for name, batch in (("uint8 + device normalise", HostBatch(u8, norm)), ("float32", f32)):
        to_device(batch, y, s.device, dtype, True)
        sync(s.device)
        t0 = time.perf_counter()
        for _ in range(reps):
            to_device(batch, y, s.device, dtype, True)
        sync(s.device)
        rows.append({"transfer": name, "bytes_per_image": batch.pixels[0].nbytes
                     if isinstance(batch, HostBatch) else batch[0].nbytes,
                     "images_per_s": s.batch * reps / (time.perf_counter() - t0)})
    return rows


# --------------------------------------------------------------------------- real data


def _one_jpeg(job: tuple[Path, int, tuple[int, int]]) -> None:
    import numpy as np
    from PIL import Image

    path, seed, (w, h) = job
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (h // 24 + 2, w // 24 + 2, 3), dtype=np.uint8))
    img = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    img += rng.normal(0, 12, img.shape)  # grain: real photos are not smooth
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=90)


def make_jpegs(root: Path, s: Settings) -> Path:
    """An ImageFolder tree (train/, val/; 10 classes) of synthetic JPEGs, made once."""
    from multiprocessing import Pool

    done = root / ".complete"
    if done.exists():
        return root
    jobs = []
    for split, n in (("train", s.images), ("val", s.val_images)):
        for i in range(n):
            d = root / split / f"class{i % 10}"
            d.mkdir(parents=True, exist_ok=True)
            jobs.append((d / f"{i:06d}.jpg", i + (0 if split == "train" else 10**6),
                         s.jpeg_size))
    with Pool(min(16, os.cpu_count() or 1)) as pool:
        pool.map(_one_jpeg, jobs, chunksize=64)
    done.write_text("")
    return root


def real_config(tree: Path, s: Settings, channels_last: bool | None, epochs: int,
                decode: str = "cpu") -> dict[str, Any]:
    return {
        "model": {"name": "resnet50", "channels_last": channels_last},
        "data": {"train": str(tree / "train"), "val": str(tree / "val"),
                 "image_size": s.size, "preset": "imagenet", "decode": decode},
        "optim": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-5},
        "schedule": {"name": "cosine"},
        "precision": s.precision, "epochs": epochs, "batch_size": s.batch,
        "workers": s.workers, "log_every": 20, "seed": 0,
        "device": "cuda" if s.device.type == "cuda" else "cpu",
    }


def real_loader_parts(tree: Path, s: Settings, decode: str) -> dict[str, Any]:
    """The trainer's loader alone, and the bare loop fed by it (channels_last on)."""
    from zoo.distributed import DistInfo
    from zoo.train import epoch_generator, make_loaders, worker_base_seed
    from zoo.tricks import TrickSet
    from zoo.validate import build_config

    cfg = build_config(real_config(tree, s, True, 2, decode))
    info = DistInfo(rank=0, local_rank=0, world_size=1, device=s.device)
    loader, _, sampler, _ = make_loaders(cfg, info, TrickSet({}))
    out: dict[str, Any] = {"decode": decode, "steps_per_epoch": len(loader)}
    # The clock starts after the workers' first round (one batch from each): until then
    # the workers start up and fill their queues, which overstated the rate by ~40%.
    first = min(max(1, s.workers), len(loader) - 1)

    def epoch(fn: Callable[[torch.Tensor, torch.Tensor], object], e: int) -> float:
        sampler.set_epoch(e, worker_base_seed(epoch_generator(0, 0, e)))
        n, t0 = 0, 0.0
        for i, (x, y) in enumerate(loader):
            if i == first:  # the workers' first round is done
                sync(s.device)
                t0, n = time.perf_counter(), 0
            fn(x, y)
            n += len(x)
        sync(s.device)
        return n / (time.perf_counter() - t0)

    def to_device(x: Any, y: torch.Tensor) -> None:
        from zoo.data.device import to_device as stage

        stage(x, y, s.device, torch.float16 if s.precision == "fp16" else None, True)

    out["loader_images_per_s"] = [epoch(to_device, e) for e in (1, 2)][-1]
    bare = Bare(s, channels_last=s.device.type == "cuda")
    bare.run([(torch.zeros(s.batch, 3, s.size, s.size), torch.zeros(s.batch, dtype=torch.long))
              ] * s.warmup)
    bare.model.train()
    out["bare_images_per_s"] = epoch(bare.step, 3)
    return out


def real_zoo_train(tree: Path, s: Settings, channels_last: bool | None, work: Path,
                   decode: str = "cpu", timeout: float = 200) -> dict[str, Any]:
    """``python -m zoo.train`` for 2 epochs; images/s of epoch 2 from metrics.jsonl (its
    workers and pipeline are warm; at the default --images an epoch is 60 steps, so
    filling the pipeline, one batch per worker, is a few percent of it)."""
    import yaml

    name = {None: "default", True: "on", False: "off"}[channels_last] + f"_{decode}"
    run_dir = work / f"run_cl_{name}"
    cfg_path = work / f"cfg_cl_{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(real_config(tree, s, channels_last, 2, decode)))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "zoo.train", "--config", str(cfg_path), "--out",
             str(run_dir)], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1",
                 **({"OMP_NUM_THREADS": "1"} if s.device.type == "cpu" else {})})
    except subprocess.TimeoutExpired:
        return {"channels_last": channels_last, "decode": decode,
                "error": f"timed out after {timeout:.0f}s"}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"channels_last": channels_last, "decode": decode,
                "error": proc.stderr[-2000:]}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((run_dir / "config.json").read_text())
    return {"channels_last": channels_last, "decode": decode,
            "resolved_input": config.get("input"),
            "resolved_channels_last": config["channels_last"],
            "images_per_s": rows[-1]["images_per_s"], "epoch1_images_per_s":
            rows[0]["images_per_s"], "wall_seconds": wall,
            "train_seconds": [r["train_seconds"] for r in rows]}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, fp32, tiny: test the script")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30, help="steps per timed block")
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=256 * 60, help="real-data training images")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--data", type=Path, default=None, help="where the JPEG tree is made")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="skip the parts left once this much time has passed")
    p.add_argument("--skip-real", action="store_true")
    args = p.parse_args(argv)
    name = "gpu_smoke.json" if args.smoke else "gpu.json"
    out = args.out or (Path(os.environ["OUT"]) / name if os.environ.get("OUT")
                       else ROOT / "bench" / "results" / name)
    s = settings(args)
    start = time.perf_counter()
    if s.device.type == "cpu":
        # One thread: two OpenMP threads on a busy 2-core machine stall each other badly.
        torch.set_num_threads(1)
    peak = peak_tflops(args, s.device)
    result: dict[str, Any] = {
        "command": " ".join(["bench/gpu.sh", *(argv if argv is not None else sys.argv[1:])]),
        "smoke": args.smoke, "settings": {k: str(v) for k, v in vars(s).items()},
        "env": {"python": platform.python_version(), "torch": torch.__version__,
                "device": (torch.cuda.get_device_name(s.device) if s.device.type == "cuda"
                           else platform.processor() or "cpu"),
                "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                "cpus": os.cpu_count()},
        "flops_per_image": flops_per_image(s.size), "peak_fp16_tflops": peak,
        "anchors_images_per_s": ANCHORS, "warnings": [],
    }

    def report(part: dict[str, Any]) -> None:
        result.update(part)
        result["seconds"] = time.perf_counter() - start
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

    def mfu(ips: float) -> float | None:
        return ips * flops_per_image(s.size) / (peak * 1e12) if peak else None

    rows = synthetic(s, report)
    for row in rows:
        row["mfu"] = mfu(row["images_per_s"])
        if s.device.type == "cuda" and row["images_per_s"] > IMPLAUSIBLE:
            result["warnings"].append(f"{row['loop']} {row['images_per_s']:.0f} images/s is "
                                      f"above {IMPLAUSIBLE}: a measurement error")
    report({"synthetic": rows})
    print("| input | loop | channels_last | images/s | vs bare | MFU |")
    print("|---|---|---|---:|---:|---:|")
    for row in rows:
        m = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "-"
        print(f"| synthetic | {row['loop']} | {row['channels_last']} | "
              f"{row['images_per_s']:.0f} | {row['over_bare']:.3f} | {m} |", flush=True)

    if time.perf_counter() - start < args.budget_s:
        result["transfer"] = transfer_rows(s)
        report({})
        for row in result["transfer"]:
            print(f"| transfer | {row['transfer']} | True | {row['images_per_s']:.0f} | - | - |")
    if time.perf_counter() - start < args.budget_s:
        result["compile"] = compile_rows(s)
        for row in result["compile"]:
            row["mfu"] = mfu(row["images_per_s"])
        report({})
        for row in result["compile"]:
            print(f"| synthetic | bare compile={row['compile']} (warm-up "
                  f"{row['warmup_seconds']:.0f}s excluded) | True | {row['images_per_s']:.0f} "
                  f"| - | {_pct(row['mfu'])} |", flush=True)

    if not args.skip_real:
        import tempfile

        work = Path(tempfile.mkdtemp(prefix="zoo_gpu_"))
        t0 = time.perf_counter()
        tree = make_jpegs(args.data or work / "jpegs", s)
        real: dict[str, Any] = {"images": s.images, "jpeg_size": list(s.jpeg_size),
                                "make_seconds": time.perf_counter() - t0}
        report({"real": real})
        # Per-image CPU ms of each path's worker side, one thread (bench/input.py's
        # measure, on this tree's JPEGs): the feed arithmetic against this node's cores.
        sys.path.insert(0, str(ROOT / "bench"))
        from input import measure  # bench/input.py

        stages = measure(sorted((tree / "train").rglob("*.jpg"))[:64], repeats=3)
        real["cpu_ms_per_image"] = {k: v["total"] for k, v in stages.items()}
        report({"real": real})
        real["loader"] = []
        for decode in ("cpu", "gpu"):
            part = real_loader_parts(tree, s, decode)
            real["loader"].append(part)
            if decode == "cpu":  # the default path's figures, under the keys they had
                real.update(loader_images_per_s=part["loader_images_per_s"],
                            bare_images_per_s=part["bare_images_per_s"])
            report({"real": real})
            print(f"| real | loader alone, decode {decode} | - | "
                  f"{part['loader_images_per_s']:.0f} | - | - |")
            print(f"| real | bare, decode {decode} | {s.device.type == 'cuda'} | "
                  f"{part['bare_images_per_s']:.0f} | - | "
                  f"{_pct(mfu(part['bare_images_per_s']))} |", flush=True)
        real["zoo_train"] = []
        # The smoke run checks one zoo.train (tests/test_pipeline.py trains both paths).
        runs = [(None, "cpu")] if args.smoke else [(None, "gpu"), (None, "cpu"), (False, "gpu")]
        for cl, decode in runs:
            if time.perf_counter() - start > args.budget_s:
                result["warnings"].append(f"zoo.train decode={decode} skipped: budget")
                continue
            r = real_zoo_train(tree, s, cl, work, decode,
                               timeout=max(30.0, args.budget_s - (time.perf_counter() - start)))
            r["mfu"] = mfu(r["images_per_s"]) if "images_per_s" in r else None
            real["zoo_train"].append(r)
            report({"real": real})
            if "error" in r:
                print(f"zoo.train failed: {r['error']}", file=sys.stderr)
            else:
                print(f"| real | zoo.train, decode {decode} | {r['resolved_channels_last']} | "
                      f"{r['images_per_s']:.0f} | - | {_pct(r['mfu'])} |", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    report({})
    return result


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if x is not None else "-"


if __name__ == "__main__":
    main()
