"""Write real image datasets to disk as ImageFolder trees of PNG files.

``OUT/train/<class>/<index>.png`` and ``OUT/val/<class>/<index>.png``, plus
``OUT/dataset.json`` (name, source, classes, counts). The tree is written under
``OUT.partial`` and renamed to ``OUT`` at the end, so an interrupted preparation never
leaves a tree that looks complete. A second call on a complete tree verifies the counts
and writes nothing.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.errors import ZooError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
]
DIGIT_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MANIFEST = "dataset.json"


class DataPrepError(ZooError):
    """The source is missing or unreadable, or the output directory is in the way."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W) uint8
    labels: np.ndarray  # (N,) int
    #: Position of each image in its source file; PNG files are named by it.
    index: np.ndarray  # (N,) int


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format: big-endian dims, then uint8 data), gzipped or not."""
    opener: Callable[..., object] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        data = f.read()  # type: ignore[attr-defined]
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DataPrepError(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataPrepError(f"{path}: truncated (expected {int(np.prod(dims))} values)")
    return arr.reshape(dims)


def _find(source: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (source / name).exists():
            return source / name
    raise DataPrepError(
        f"{source}: no {stem}(.gz); install Debian's Fashion-MNIST with "
        f"'apt-get install -y dataset-fashion-mnist' or pass --source DIR"
    )


def load_fashion_mnist(source: Path = FASHION_MNIST_DIR) -> tuple[Split, Split]:
    if not source.is_dir():
        raise DataPrepError(
            f"{source}: Fashion-MNIST not found; install it with "
            f"'apt-get update && apt-get install -y dataset-fashion-mnist' or pass --source DIR"
        )
    splits = []
    for prefix in ("train", "t10k"):
        images = _read_idx(_find(source, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_find(source, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
        if len(images) != len(labels):
            raise DataPrepError(
                f"{source}: {prefix} has {len(images)} images but {len(labels)} labels"
            )
        splits.append(Split(images, labels, np.arange(len(labels))))
    return splits[0], splits[1]


def load_digits() -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits (1,797 images), 4 of every 5 per class to train."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are 0..16; scale to the full 8-bit range.
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    val_mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        val_mask[idx[::5]] = True
    pos = np.arange(len(labels))
    return (Split(images[~val_mask], labels[~val_mask], pos[~val_mask]),
            Split(images[val_mask], labels[val_mask], pos[val_mask]))


def _limit(split: Split, per_class: int | None) -> Split:
    """The first ``per_class`` images of each class, in source order."""
    if per_class is None:
        return split
    keep = np.zeros(len(split.labels), dtype=bool)
    for c in np.unique(split.labels):
        keep[np.flatnonzero(split.labels == c)[:per_class]] = True
    return Split(split.images[keep], split.labels[keep], split.index[keep])


def _counts(split: Split, classes: list[str]) -> dict[str, int]:
    return {classes[c]: int((split.labels == c).sum()) for c in range(len(classes))}


def verify_tree(out: Path) -> dict[str, dict[str, int]] | None:
    """Counts per split and class if ``out`` is a complete prepared tree, else None."""
    manifest = out / MANIFEST
    if not manifest.exists():
        return None
    meta = json.loads(manifest.read_text())
    for split, counts in meta["counts"].items():
        for cls, n in counts.items():
            d = out / split / cls
            if not d.is_dir() or sum(1 for _ in d.glob("*.png")) != n:
                return None
    return meta["counts"]


def write_tree(
    out: Path,
    name: str,
    source: str,
    classes: list[str],
    splits: dict[str, Split],
    progress: Callable[[Iterable[int], int, str], Iterable[int]] | None = None,
) -> dict[str, dict[str, int]]:
    """Write ``splits`` as PNG files under ``out`` (atomically, via ``out.partial``)."""
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by an interrupted run: start that split over
    counts = {s: _counts(sp, classes) for s, sp in splits.items()}
    for split_name, split in splits.items():
        for cls in classes:
            (partial / split_name / cls).mkdir(parents=True, exist_ok=True)
        indices: Iterable[int] = range(len(split.labels))
        if progress is not None:
            indices = progress(indices, len(split.labels), f"{name} {split_name}")
        for i in indices:
            cls = classes[int(split.labels[i])]
            Image.fromarray(split.images[i], mode="L").save(
                partial / split_name / cls / f"{int(split.index[i]):05d}.png",
                optimize=False, compress_level=1,
            )
    meta = {"name": name, "source": source, "classes": classes, "counts": counts, "format": 1}
    (partial / MANIFEST).write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return counts


def prepare(
    dataset: str,
    out: Path,
    source: Path | None = None,
    train_per_class: int | None = None,
    val_per_class: int | None = None,
    progress: Callable[[Iterable[int], int, str], Iterable[int]] | None = None,
) -> tuple[dict[str, dict[str, int]], bool]:
    """Prepare ``dataset`` under ``out``. Returns (counts, written); written is False when
    ``out`` already held the same complete tree."""
    out = Path(out)
    if dataset == "fashion-mnist":
        src = Path(source) if source else FASHION_MNIST_DIR
        train, val = load_fashion_mnist(src)
        classes, src_name = FASHION_MNIST_CLASSES, str(src)
    elif dataset == "digits":
        train, val = load_digits()
        classes, src_name = DIGIT_CLASSES, "sklearn.datasets.load_digits"
    else:
        raise DataPrepError(f"unknown dataset '{dataset}' (fashion-mnist or digits)")
    splits = {"train": _limit(train, train_per_class), "val": _limit(val, val_per_class)}
    expected = {s: _counts(sp, classes) for s, sp in splits.items()}
    existing = verify_tree(out)
    if existing == expected:
        return existing, False
    if out.exists() and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise DataPrepError(
            f"{out}: exists and is not a prepared dataset; remove it or choose another --out"
        )
    return write_tree(out, dataset, src_name, classes, splits, progress), True
