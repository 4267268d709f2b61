"""Data preparation writes the real images, idempotently; transforms keep their shapes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from typer.testing import CliRunner

from ablate.cli import app
from zoo.config import DataConfig
from zoo.data.datasets import build_datasets
from zoo.data.prepare import (
    DIGIT_CLASSES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    _read_idx,
    prepare,
)
from zoo.data.transforms import eval_transform, train_transform
from zoo.errors import ConfigError

runner = CliRunner()


def test_digits_tree_holds_the_real_pixels(digits_dir: Path) -> None:
    from sklearn.datasets import load_digits

    meta = json.loads((digits_dir / "dataset.json").read_text())
    assert meta["classes"] == DIGIT_CLASSES
    assert sum(meta["counts"]["train"].values()) == 1433
    assert sum(meta["counts"]["val"].values()) == 364
    # Each class is split 4:1, stratified.
    for cls in DIGIT_CLASSES:
        n_train, n_val = meta["counts"]["train"][cls], meta["counts"]["val"][cls]
        assert abs(n_val - (n_train + n_val) / 5) <= 1
    # Validation image 0 of class 'zero' is digits sample 0 (every 5th goes to val).
    img = np.asarray(Image.open(digits_dir / "val" / "zero" / "00000.png"))
    ref = np.clip(np.rint(load_digits().images[0] * 255 / 16), 0, 255).astype(np.uint8)
    assert img.shape == (8, 8) and np.array_equal(img, ref)


def test_prepare_is_idempotent_and_cli_says_so(digits_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "d"
    first = runner.invoke(app, ["data", "prepare", "digits", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "wrote digits" in first.output
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    second = runner.invoke(app, ["data", "prepare", "digits", "--out", str(out)])
    assert second.exit_code == 0 and "already prepared" in second.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamp
    assert not out.with_name("d.partial").exists()


def test_prepare_refuses_a_foreign_directory(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    res = runner.invoke(app, ["data", "prepare", "digits", "--out", str(out)])
    assert res.exit_code == 2
    assert "is not a prepared dataset" in res.output
    assert (out / "notes.txt").read_text() == "keep me"


def test_fashion_mnist_missing_source_says_how_to_install(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "prepare", "fashion-mnist", "--out", str(tmp_path / "f"),
                              "--source", str(tmp_path / "none")])
    assert res.exit_code == 2
    assert "apt-get install -y dataset-fashion-mnist" in res.output


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                    reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_fashion_mnist_subset_matches_the_idx_files(tmp_path: Path) -> None:
    out = tmp_path / "fm"
    counts, written = prepare("fashion-mnist", out, train_per_class=3, val_per_class=2)
    assert written
    assert counts["train"] == dict.fromkeys(FASHION_MNIST_CLASSES, 3)
    assert counts["val"] == dict.fromkeys(FASHION_MNIST_CLASSES, 2)
    images = _read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    with gzip.open(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    first = int(np.flatnonzero(labels == 0)[0])
    png = np.asarray(Image.open(out / "val" / FASHION_MNIST_CLASSES[0] / f"{first:05d}.png"))
    assert np.array_equal(png, images[first])


def test_transforms_shapes_and_normalisation(digits_dir: Path) -> None:
    cfg = DataConfig(train=str(digits_dir / "train"), val=str(digits_dir / "val"),
                     image_size=8, preset="small", mean=(0.5,) * 3, std=(0.5,) * 3)
    _, val, classes = build_datasets(cfg, train_transform(cfg), eval_transform(cfg))
    assert classes == sorted(DIGIT_CLASSES)
    x, _ = val[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    raw = np.array(Image.open(val.reader.source(0)))  # type: ignore[attr-defined]
    assert torch.allclose(x[0], torch.from_numpy(raw).float() / 255 * 2 - 1, atol=1e-6)
    big = DataConfig(image_size=32, preset="imagenet")
    img = Image.new("RGB", (50, 40))
    assert train_transform(big)(img).shape == (3, 32, 32)
    assert eval_transform(big)(img).shape == (3, 32, 32)


def test_train_and_val_with_different_classes_is_an_error(digits_dir: Path,
                                                          tmp_path: Path) -> None:
    import shutil

    val = tmp_path / "val"
    shutil.copytree(digits_dir / "val", val)
    shutil.rmtree(val / "nine")
    cfg = DataConfig(train=str(digits_dir / "train"), val=str(val), image_size=8, preset="small")
    with pytest.raises(ConfigError, match=r"only in train \['nine'\]"):
        build_datasets(cfg, train_transform(cfg), eval_transform(cfg))


def _encoded(img: Image.Image, fmt: str = "PNG", **save: object) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def _pil_reference(data: bytes) -> torch.Tensor:
    """What the transforms' ToImage makes of PIL's RGB conversion: the pixels to match."""
    import io

    from torchvision.transforms import v2

    with Image.open(io.BytesIO(data)) as img:
        return v2.ToImage()(img.convert("RGB")).as_subclass(torch.Tensor)


@pytest.mark.parametrize("mode,save,fast", [
    ("L", {}, True), ("RGB", {}, True),  # what prepare writes, and most PNGs
    ("L", {"transparency": 7}, False), ("P", {}, False), ("RGBA", {}, False),
    ("LA", {}, False), ("I;16", {}, False), ("1", {}, False),
])
def test_decode_matches_pil_for_every_png_kind(mode: str, save: dict[str, object],
                                               fast: bool) -> None:
    from zoo.data.decode import _plain_png, decode_rgb

    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (13, 17, 4), dtype=np.uint8), "RGBA")
    img = rgba.convert(mode) if mode != "P" else rgba.convert("RGB").quantize(16)
    data = _encoded(img, **save)
    assert _plain_png(data) is fast  # which decoder reads it
    out = decode_rgb(data)
    assert out.dtype == torch.uint8 and out.shape == (3, 13, 17)
    assert torch.equal(out, _pil_reference(data))
    assert torch.equal(decode_rgb(memoryview(data)), out)  # an LMDB buffer reads the same


def test_decode_jpeg_and_errors_are_pils(tmp_path: Path) -> None:
    from zoo.data.datasets import rgb_loader
    from zoo.data.decode import decode_rgb

    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), "RGB")
    jpeg = _encoded(rgb, "JPEG", quality=90)
    assert torch.equal(decode_rgb(jpeg), _pil_reference(jpeg))
    png = _encoded(rgb)
    (tmp_path / "ok.png").write_bytes(png)
    assert torch.equal(rgb_loader(str(tmp_path / "ok.png")), _pil_reference(png))
    # A damaged PNG that passes the header check: decode_png fails, PIL reports it; the
    # error names the file and the fix.
    from zoo.data.decode import BadImageError

    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    with pytest.raises(BadImageError, match=r"cut\.png': image file is truncated.*skip_bad"):
        rgb_loader(str(tmp_path / "cut.png"))
    with pytest.raises(Image.UnidentifiedImageError):
        decode_rgb(b"not an image at all")


@pytest.mark.parametrize("preset,size", [("small", 8), ("small", 16), ("imagenet", 12)])
def test_transforms_give_the_same_tensors_from_decoded_bytes_as_from_pil(
        digits_dir: Path, preset: str, size: int) -> None:
    """The trainer's transforms turn a PIL image into the tensor ToImage makes of it, so
    decoding to a tensor changes no input of any run: the same random crops and flips of
    the same pixels, bit for bit."""
    from zoo.data.decode import decode_rgb

    cfg = DataConfig(image_size=size, preset=preset)  # type: ignore[arg-type]
    paths = sorted((digits_dir / "train").rglob("*.png"))[::37]
    for make in (train_transform, eval_transform):
        tf = make(cfg)
        for i, path in enumerate(paths):
            data = path.read_bytes()
            torch.manual_seed(i)
            with Image.open(path) as img:
                want = tf(img.convert("RGB"))
            torch.manual_seed(i)
            assert torch.equal(tf(decode_rgb(data)), want), (make.__name__, path)


def _v2_reference(cfg: DataConfig, hook: Any = None) -> tuple[v2.Compose, v2.Compose]:
    """The transforms as torchvision's v2 ops alone (what the trainer ran before its fused
    ops): the independent reference the fused ones must match bit for bit."""
    size = cfg.image_size
    ops: list[Any] = [v2.ToImage()]
    if cfg.preset == "imagenet":
        ops.append(v2.RandomResizedCrop(size, antialias=True))
    else:
        ops += [v2.Resize(size, antialias=True), v2.RandomCrop(size, padding=max(1, size // 8))]
    if cfg.hflip:
        ops.append(v2.RandomHorizontalFlip())
    post: list[Any] = []
    if hook is not None:
        ops, post = hook(ops, post)
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))]
    resize = round(size / 0.875) if cfg.preset == "imagenet" else size
    return (v2.Compose([*ops, *tail, *post]),
            v2.Compose([v2.ToImage(), v2.Resize(resize, antialias=True), v2.CenterCrop(size),
                        *tail]))


@pytest.mark.parametrize("tricks", [
    {},
    {"random_rotation": {"degrees": 15}, "cutout": {}},
    {"autoaugment": {}, "random_erasing": {}},
    {"randaugment": {}},
    {"trivialaugment": {}},
])
@pytest.mark.parametrize("preset,size,hflip", [
    ("small", 28, True), ("small", 8, False), ("small", 24, True), ("imagenet", 20, True),
])
def test_fused_transforms_match_torchvisions_ops_bit_for_bit(
        preset: str, size: int, hflip: bool, tricks: dict[str, Any]) -> None:
    """PadCropFlip, FloatNormalize and ImageTensor replace v2 ops for speed: on images
    already at the size, smaller, larger and not square, with the tricks that add ops
    before and after them, they give the same tensors and leave torch's generator where
    the v2 ops leave it (the next draw is the same)."""
    from zoo.tricks import TrickSet

    cfg = DataConfig(image_size=size, preset=preset, hflip=hflip,  # type: ignore[arg-type]
                     mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    hook = TrickSet(tricks).transforms if tricks else None
    ours = (train_transform(cfg, hook), eval_transform(cfg))
    ref = _v2_reference(cfg, hook)
    gen = torch.Generator().manual_seed(size)
    shapes = [(size, size), (size - 3, size - 3), (size + 5, size + 5), (size + 7, size - 2)]
    for i, (h, w) in enumerate(shapes * 4):
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
        for mine, theirs in zip(ours, ref, strict=True):
            torch.manual_seed(1000 + i)
            want = theirs(img.clone()).as_subclass(torch.Tensor)
            after = torch.rand(1)
            torch.manual_seed(1000 + i)
            got = mine(img.clone())
            assert type(got) is torch.Tensor and got.dtype == torch.float32
            assert torch.equal(got, want), (preset, size, (h, w), tricks)
            assert torch.equal(torch.rand(1), after), "a different number of draws"
