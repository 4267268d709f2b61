"""Samples/s of the ImageFolder tree against its LMDB file, side by side (not a test).

    .venv/bin/python bench/data_loading.py

Reads the prepared Fashion-MNIST train split (``ablate data prepare fashion-mnist --out
data/fashion-mnist``) and its LMDB conversion (written to ``data/fashion-mnist-lmdb`` on
the first run, outside the timings). Every measurement reads the same random subset of
images, in the same shuffled order, through both formats; the two formats alternate
inside each repeat (which one goes first alternates too), so load from other processes
on a shared machine hits both alike. Reported: medians over the repeats and the ratio,
of wall-clock samples/s and of CPU microseconds per sample (this process plus its
loader workers). On a machine shared with other jobs the CPU figure is the steadier one.

Measured:
- ``raw``: a loop of ``dataset[i]`` without a transform: read + decode to a uint8
  RGB tensor (:mod:`zoo.data.decode`, the trainer's decoder for both formats).
- ``to_tensor``: a DataLoader whose transform is decode + ``ToImage`` + ``ToDtype``.
- ``train``: a DataLoader with the trainer's own ``train_transform`` of the Fashion-MNIST
  config (image_size 28, preset small) and its batch size.
Loader rates count the samples after the first batch, timed from its arrival, so worker
start-up (the same for both formats) is left out of samples/s (not out of CPU time).
Then a breakdown of one sample's CPU time, step by step. Writes
``bench/results/data_loading.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import PIL.Image  # noqa: E402
import torch  # noqa: E402
import torchcodec  # noqa: E402
from torch.utils.data import DataLoader, Dataset, Subset  # noqa: E402
from torchvision.datasets import ImageFolder  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from zoo.data.datasets import rgb_loader  # noqa: E402
from zoo.data.lmdb_convert import convert_tree  # noqa: E402
from zoo.data.lmdb_dataset import LmdbDataset  # noqa: E402
from zoo.data.transforms import train_transform  # noqa: E402
from zoo.validate import load_config  # noqa: E402

FORMATS = ("imagefolder", "lmdb")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=ROOT / "data/fashion-mnist/train")
    p.add_argument("--lmdb", type=Path, default=ROOT / "data/fashion-mnist-lmdb/train.lmdb")
    p.add_argument("--config", type=Path, default=ROOT / "configs/fashion_mnist_resnet20.yaml")
    p.add_argument("--images", type=int, default=10_000, help="images per measurement")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/data_loading.json")
    return p.parse_args(argv)


def _cpu() -> float:
    """CPU seconds of this process and of its reaped children (finished loader workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def time_raw(ds: Dataset, indices: list[int]) -> tuple[float, float]:
    """Samples/s of ``ds[i]`` in a loop (ds has no transform), and CPU us per sample."""
    c0, t0 = _cpu(), time.perf_counter()
    for i in indices:
        ds[i]
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    return len(indices) / seconds, cpu / len(indices) * 1e6


def time_loader(ds: Dataset, indices: list[int], workers: int,
                batch_size: int) -> tuple[float, float]:
    """Samples/s of a DataLoader over ``indices`` after its first batch has arrived, and
    CPU us per sample of everything (main process and workers, start-up included)."""
    c0 = _cpu()
    loader = DataLoader(Subset(ds, indices), batch_size=batch_size, shuffle=False,
                        num_workers=workers)
    it = iter(loader)
    first = len(next(it)[1])
    t0 = time.perf_counter()
    n = sum(len(labels) for _, labels in it)
    seconds = time.perf_counter() - t0
    del it, loader  # workers are joined (and reaped) when the iterator is exhausted
    assert first + n == len(indices)
    return n / seconds, (_cpu() - c0) / len(indices) * 1e6


def breakdown(args: argparse.Namespace, indices: list[int],
              transforms: dict[str, Callable[[Any], Any] | None],
              repeats: int) -> dict[str, float]:
    """Where one sample's time goes: CPU microseconds per image of each step, alone.

    CPU time of this process (not wall time), so other processes' load does not count."""
    from zoo.data.decode import decode_rgb

    tree = ImageFolder(str(args.tree))
    db = LmdbDataset(args.lmdb)
    paths = [tree.samples[i][0] for i in indices]
    blobs = [db.read(i).image for i in indices]
    images = [decode_rgb(b) for b in blobs]

    def read_file(p: str) -> bytes:
        with open(p, "rb") as f:
            return f.read()

    steps: dict[str, Callable[[], object]] = {
        "imagefolder: open + read the file": lambda: [read_file(p) for p in paths],
        "imagefolder: rgb_loader(path) (read + decode)": lambda: [rgb_loader(p) for p in paths],
        "lmdb: txn.get + parse the record": lambda: [db.read(i) for i in indices],
        "lmdb: dataset[i] (read + decode)": lambda: [db[i] for i in indices],
        "decode bytes to a uint8 RGB tensor (decode_rgb)": lambda: [decode_rgb(b) for b in blobs],
    }
    for name, tf in transforms.items():
        if tf is not None:
            steps[f"transform {name} of a decoded image"] = (
                lambda tf=tf: [tf(img) for img in images])
    # The decoder before zoo.data.decode: PIL's RGB image, which ToImage then converts.
    pil_images = [_pil_rgb(b) for b in blobs]
    steps["before: PIL decode to an RGB image"] = lambda: [_pil_rgb(b) for b in blobs]
    for name, tf in transforms.items():
        if tf is not None:
            steps[f"before: transform {name} of a PIL image"] = (
                lambda tf=tf: [tf(img) for img in pil_images])
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            t0 = time.process_time()
            fn()
            times[name].append((time.process_time() - t0) / len(indices) * 1e6)
    return {k: round(statistics.median(v), 1) for k, v in times.items()}


def _pil_rgb(data: bytes) -> PIL.Image.Image:
    with PIL.Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def make(fmt: str, args: argparse.Namespace, transform: Callable[[Any], Any] | None) -> Dataset:
    if fmt == "imagefolder":
        return ImageFolder(str(args.tree), transform=transform, loader=rgb_loader)
    return LmdbDataset(args.lmdb, transform=transform)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.tree.is_dir():
        print(f"error: {args.tree} missing; run: .venv/bin/ablate data prepare fashion-mnist "
              f"--out {args.tree.parent}", file=sys.stderr)
        return 2
    if not args.lmdb.exists():
        print(f"converting {args.tree} -> {args.lmdb} (once, not timed) ...", file=sys.stderr)
        res = convert_tree(args.tree, args.lmdb)
        print(f"  {res.count} images in {res.seconds:.1f}s", file=sys.stderr)
    load_start = os.getloadavg()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in DataLoader workers; 2 shared cores here
    cfg = load_config(args.config)
    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    transforms = {"raw": None, "to_tensor": to_tensor, "train": train_transform(cfg.data)}
    datasets = {(case, fmt): make(fmt, args, tf) for case, tf in transforms.items()
                for fmt in FORMATS}
    n_total = len(datasets["raw", "lmdb"])  # type: ignore[arg-type]
    assert n_total == len(datasets["raw", "imagefolder"])  # type: ignore[arg-type]
    indices = random.Random(0).sample(range(n_total), min(args.images, n_total))

    measurements = [("raw", 0)] + [(case, w) for case in ("to_tensor", "train")
                                   for w in args.workers]
    runs: dict[str, dict[str, list[float]]] = {
        f"{case}/w{w}": {fmt: [] for fmt in FORMATS} for case, w in measurements}
    cpu: dict[str, dict[str, list[float]]] = {
        f"{case}/w{w}": {fmt: [] for fmt in FORMATS} for case, w in measurements}
    # Warm the page cache and the code paths once, untimed.
    for fmt in FORMATS:
        time_raw(datasets["raw", fmt], indices)
    t_start = time.perf_counter()
    for rep in range(args.repeats):
        for case, w in measurements:
            order = FORMATS if (rep + len(case) + w) % 2 == 0 else FORMATS[::-1]
            for fmt in order:
                ds = datasets[case, fmt]
                rate, us = (time_raw(ds, indices) if case == "raw"
                            else time_loader(ds, indices, w, cfg.batch_size))
                runs[f"{case}/w{w}"][fmt].append(rate)
                cpu[f"{case}/w{w}"][fmt].append(us)
        print(f"repeat {rep + 1}/{args.repeats} done ({time.perf_counter() - t_start:.0f}s)",
              file=sys.stderr)
    steps = breakdown(args, indices[:5000], transforms, repeats=3)
    torch.set_num_threads(threads)

    rows = []
    for name, by_fmt in runs.items():
        case, w = name.split("/w")
        folder = statistics.median(by_fmt["imagefolder"])
        lm = statistics.median(by_fmt["lmdb"])
        cpu_folder = statistics.median(cpu[name]["imagefolder"])
        cpu_lmdb = statistics.median(cpu[name]["lmdb"])
        rows.append({"measurement": case, "workers": int(w), "imagefolder": folder,
                     "lmdb": lm, "ratio": lm / folder,
                     "cpu_us_per_sample": {"imagefolder": cpu_folder, "lmdb": cpu_lmdb},
                     "cpu_ratio": cpu_folder / cpu_lmdb,
                     "runs": {k: [round(x, 1) for x in v] for k, v in by_fmt.items()},
                     "cpu_runs": {k: [round(x, 1) for x in v] for k, v in cpu[name].items()}})
    print_table(rows, args)
    print("\nWhere the time goes (CPU us per image, this process, median):\n")
    print("| step | us/image |\n|---|---:|")
    for name, us in steps.items():
        print(f"| {name} | {us:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join([".venv/bin/python", "bench/data_loading.py", *(argv or sys.argv[1:])]),
        "tree": str(args.tree), "lmdb": str(args.lmdb), "images": len(indices),
        "repeats": args.repeats, "batch_size": cfg.batch_size,
        "transform": {"image_size": cfg.data.image_size, "preset": cfg.data.preset},
        "env": {"python": platform.python_version(), "torch": torch.__version__,
                "pillow": PIL.__version__, "torchcodec": torchcodec.__version__,
                "cpus": os.cpu_count(),
                "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg()},
        "seconds": round(time.perf_counter() - t_start, 1),
        "results": rows,
        "breakdown_cpu_us_per_image": steps,
    }, indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n{args.images} images per measurement, medians of {args.repeats} interleaved "
          f"repeats. samples/s: wall clock; CPU: us of CPU per sample, all processes\n")
    print("| measurement | workers | ImageFolder samples/s | LMDB samples/s | ratio "
          "| ImageFolder CPU us | LMDB CPU us | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c = r["cpu_us_per_sample"]
        print(f"| {r['measurement']} | {r['workers']} | {r['imagefolder']:,.0f} | "
              f"{r['lmdb']:,.0f} | {r['ratio']:.2f}x | {c['imagefolder']:.1f} | "
              f"{c['lmdb']:.1f} | {r['cpu_ratio']:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
