"""Per-image CPU cost of the input pipeline's CPU side, before and after, side by side.

On ImageNet-like JPEGs the bench makes itself (scikit-image's bundled photos resized to
500x375 or 375x500, quality 90; one grayscale), full size and pre-resized as
``ablate data to-lmdb --max-side N`` stores them, it times with ``time.process_time`` on
one thread (CPU time, so other load on the machine inflates it less than wall time):

- ``before``: the trainer's pipeline before this change: PIL decode, RandomResizedCrop +
  flip on uint8, float normalisation in the worker, float32 collate.
- ``cpu``: ``data.decode: cpu`` now: TorchCodec's JPEG decode, the same crop + flip,
  uint8 collate (normalisation moves to the device).
- ``gpu``: ``data.decode: gpu``'s CPU side: read the file, parse the header, draw the
  crop box and flip (no pixel decoded), collate the bytes.

and evaluation's (resize + centre crop) for ``before`` and ``cpu``. The feed rate is
``workers / per-image seconds``: what that many loader processes give when each has a core.

    .venv/bin/python bench/input.py                  # about a minute; bench/results/input.json
    .venv/bin/python bench/input.py --max-side 350 --workers 14 --repeats 5
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.config import DataConfig  # noqa: E402
from zoo.data.datasets import bytes_loader, rgb_loader  # noqa: E402
from zoo.data.device import Collate, DrawCrop  # noqa: E402
from zoo.data.lmdb_convert import shrink_image  # noqa: E402
from zoo.data.transforms import eval_resize, eval_transform, train_transform  # noqa: E402

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina", "camera"]
BATCH = 64


def make_jpegs(root: Path, max_side: int | None) -> list[Path]:
    """16 JPEGs: each photo landscape 500x375 and portrait 375x500, quality 90; with
    ``max_side`` re-encoded as ``to-lmdb --max-side`` does."""
    import skimage.data

    paths = []
    for name in PHOTOS:
        img = Image.fromarray(getattr(skimage.data, name)())
        for size in ((500, 375), (375, 500)):
            buf = io.BytesIO()
            img.resize(size, Image.BICUBIC).save(buf, "JPEG", quality=90)
            data = buf.getvalue()
            if max_side is not None:
                data = shrink_image(data, max_side)
            path = root / f"{name}_{size[0]}x{size[1]}.jpg"
            path.write_bytes(data)
            paths.append(path)
    return paths


def _pil_decode(path: str) -> torch.Tensor:
    """The decoder before this change: PIL for every JPEG."""
    from torchvision.transforms.v2.functional import pil_to_tensor

    with Image.open(path) as img:
        return pil_to_tensor(img.convert("RGB"))


def per_image_ms(fn: Callable[[list[Any]], Any], items: list[Any], repeats: int,
                 per_call: int = 1) -> float:
    """Median over ``repeats`` of the CPU ms per image of ``fn(items)``."""
    fn(items)  # warm: first-call allocations and imports
    runs = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn(items)
        runs.append((time.process_time() - t0) / (len(items) * per_call) * 1e3)
    return sorted(runs)[len(runs) // 2]


def measure(paths: list[Path], repeats: int) -> dict[str, dict[str, float]]:
    """Per-stage CPU ms per image for each path, training and evaluation."""
    cfg = DataConfig(image_size=224, preset="imagenet")
    names = [str(p) for p in paths] * 4  # 64 images: one collate batch
    names = names[:BATCH]
    crop_flip = train_transform(cfg, device_normalize=True)
    old_train = train_transform(cfg)  # ..., FloatNormalize
    old_eval, new_eval = eval_transform(cfg), eval_transform(cfg, device_normalize=True)
    collate = Collate(cfg.mean, cfg.std, cfg.image_size, eval_resize(cfg))
    draw, draw_eval = DrawCrop(224, train=True), DrawCrop(224, train=False)
    torch.manual_seed(0)

    old_decoded = [_pil_decode(n) for n in names]
    decoded = [rgb_loader(n) for n in names]
    assert all(torch.equal(a, b) for a, b in zip(old_decoded, decoded, strict=True))
    cropped = [crop_flip(x) for x in decoded]
    floats = [old_train(x) for x in decoded]
    evals, old_evals = [new_eval(x) for x in decoded], [old_eval(x) for x in decoded]
    encoded = [bytes_loader(n) for n in names]
    drawn = [draw(e) for e in encoded]
    from torch.utils.data import default_collate

    def each(f: Callable[[Any], Any]) -> Callable[[list[Any]], None]:
        return lambda xs: [f(x) for x in xs]

    r = repeats
    stages: dict[str, dict[str, float]] = {
        "before": {
            "decode": per_image_ms(each(_pil_decode), names, r),
            "crop+flip+normalise": per_image_ms(each(old_train), decoded, r),
            "collate": per_image_ms(lambda xs: default_collate([(x, 0) for x in xs]), floats, r),
        },
        "cpu": {
            "decode": per_image_ms(each(rgb_loader), names, r),
            "crop+flip": per_image_ms(each(crop_flip), decoded, r),
            "collate": per_image_ms(lambda xs: collate([(x, 0) for x in xs]), cropped, r),
        },
        "gpu": {
            "read": per_image_ms(each(bytes_loader), names, r),
            "header+draw": per_image_ms(each(draw), encoded, r),
            "collate": per_image_ms(lambda xs: collate([(x, 0) for x in xs]), drawn, r),
        },
        "before eval": {
            "decode": per_image_ms(each(_pil_decode), names, r),
            "resize+crop+normalise": per_image_ms(each(old_eval), decoded, r),
            "collate": per_image_ms(lambda xs: default_collate([(x, 0) for x in xs]),
                                    old_evals, r),
        },
        "cpu eval": {
            "decode": per_image_ms(each(rgb_loader), names, r),
            "resize+crop": per_image_ms(each(new_eval), decoded, r),
            "collate": per_image_ms(lambda xs: collate([(x, 0) for x in xs]), evals, r),
        },
        "gpu eval": {
            "read": per_image_ms(each(bytes_loader), names, r),
            "header": per_image_ms(each(draw_eval), encoded, r),
            "collate": per_image_ms(lambda xs: collate([(x, 0) for x in xs]),
                                    [draw_eval(e) for e in encoded], r),
        },
    }
    for row in stages.values():
        row["total"] = sum(row.values())
    return stages


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-side", type=int, default=350,
                   help="the pre-resized set's longer side (to-lmdb --max-side)")
    p.add_argument("--workers", type=int, default=14, help="for the feed rate")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "input.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result: dict[str, Any] = {
        "command": " ".join(["bench/input.py", *(argv if argv is not None else sys.argv[1:])]),
        "env": {"python": platform.python_version(), "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(), "load": os.getloadavg()[0]},
        "workers": args.workers, "max_side": args.max_side, "sets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for label, side in (("full size", None), (f"max side {args.max_side}", args.max_side)):
            root = Path(tmp) / label.replace(" ", "_")
            root.mkdir()
            paths = make_jpegs(root, side)
            stages = measure(paths, args.repeats)
            result["sets"][label] = {
                "mean_bytes": sum(p.stat().st_size for p in paths) / len(paths),
                "stages": stages,
                "feed_images_per_s": {k: args.workers / (v["total"] / 1e3)
                                      for k, v in stages.items()},
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"per-image CPU ms, 1 thread; feed = {args.workers} workers / per-image time "
          f"(load average {result['env']['load']:.1f})")
    print("| images | path | stages (ms) | total ms | feed images/s |")
    print("|---|---|---|---:|---:|")
    for label, data in result["sets"].items():
        for path, row in data["stages"].items():
            parts = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "total")
            print(f"| {label} | {path} | {parts} | {row['total']:.2f} | "
                  f"{data['feed_images_per_s'][path]:,.0f} |")
    return result


if __name__ == "__main__":
    main()
