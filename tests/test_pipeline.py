"""The input pipeline's two decode paths, the device stage, worker seeding, bad images,
and the syncs the GPU path avoids (EMA, Lookahead), against independent references:
torchvision's v2 transforms, torch's own DataLoader worker seeding and AveragedModel."""

from __future__ import annotations

import io
import multiprocessing
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from tests.conftest import digits_config, run_train, stop_dropped_workers, write_config
from zoo import rundir
from zoo.config import config_hash
from zoo.distributed import DistInfo
from zoo.tricks import TrickSet
from zoo.validate import build_config

CPU = torch.device("cpu")
INFO = DistInfo(rank=0, local_rank=0, world_size=1, device=CPU)
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera"]


def _jpeg(name: str, size: tuple[int, int]) -> bytes:
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, name)())
    buf = io.BytesIO()
    img.resize(size, Image.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def jpeg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet-like JPEGs (scikit-image's photos, quality 90; one grayscale) at 80x60 and
    60x80, two classes: 12 train and 6 val images."""
    root = tmp_path_factory.mktemp("jpegs")
    for split, per in (("train", 6), ("val", 3)):
        for c, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True)
            for i in range(per):
                name = PHOTOS[(i + c) % len(PHOTOS)]
                size = (80, 60) if (i + c) % 2 == 0 else (60, 80)
                (root / split / cls / f"{i}.jpg").write_bytes(_jpeg(name, size))
    return root


def _jpeg_config(root: Path, decode: str, **extra: Any) -> dict[str, Any]:
    cfg = digits_config(root, epochs=2, batch_size=4, workers=0)
    cfg["data"] = {"train": str(root / "train"), "val": str(root / "val"), "image_size": 32,
                   "preset": "imagenet", "decode": decode}
    cfg.update(extra)
    return cfg


def _epoch(cfg: dict[str, Any], epoch: int, val: bool = False) -> list[tuple[Any, Any]]:
    from zoo.data.loader import make_loaders
    from zoo.seeding import epoch_generator, seed_everything, worker_base_seed

    seed_everything(0)
    loaders = make_loaders(build_config(cfg), INFO, TrickSet({}))
    loaders.sampler.set_epoch(epoch, worker_base_seed(epoch_generator(0, 0, epoch)))
    try:
        return list(loaders.val if val else loaders.train)
    except BaseException as exc:
        traceback.clear_frames(exc.__traceback__)  # its frames hold the loader's iterator
        raise
    finally:
        del loaders
        stop_dropped_workers()


# --------------------------------------------------------------------------- seeding


class _FirstDraw(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[int, int, int]:
        info = torch.utils.data.get_worker_info()
        return info.id, info.seed, int(np.random.randint(2**31))


def test_numpy_worker_seed_is_what_torchs_worker_loop_sets() -> None:
    """zoo.seeding's public NumPy SeedSequence equals the seed torch's own worker loop
    gives NumPy (its private ``_generate_state``), observed in real workers."""
    from zoo.seeding import numpy_worker_seed

    loader = torch.utils.data.DataLoader(_FirstDraw(), batch_size=1, num_workers=2,
                                         generator=torch.Generator().manual_seed(5))
    seen = {}
    for (wid, seed, draw) in loader:
        seen.setdefault(int(wid), (int(seed), int(draw)))
    assert len(seen) == 2
    for wid, (seed, draw) in seen.items():
        base = seed - wid
        np.random.seed(numpy_worker_seed(base, wid))
        assert np.random.randint(2**31) == draw


# --------------------------------------------------------------------------- cpu path


def test_uint8_batches_normalised_on_the_device_equal_the_old_float_pipeline(
        digits_dir: Path) -> None:
    """The small preset (results.db's runs) trains on the same pixels, bit for bit in
    fp32: uint8 + device normalisation vs the workers' float normalisation (and within
    rounding of torchvision's ToDtype + Normalize)."""
    from zoo.data.device import HostBatch, to_device
    from zoo.data.transforms import train_transform

    cfg = digits_config(digits_dir, workers=0)
    for epoch in (1, 2):
        got = _epoch(cfg, epoch)
        # The old pipeline: float normalisation in the transform, default collate.
        data = build_config(cfg).data
        old_tf = train_transform(data)
        from zoo.data.datasets import build_datasets
        from zoo.seeding import seed_everything

        seed_everything(0)
        train, _, _ = build_datasets(data, old_tf, old_tf)
        sampler = torch.utils.data.DistributedSampler(train, 1, 0, seed=0, drop_last=True)
        sampler.set_epoch(epoch)
        old = torch.utils.data.DataLoader(train, batch_size=64, sampler=sampler,
                                          drop_last=True, generator=torch.Generator())
        ref = v2.Normalize(list(data.mean), list(data.std))
        for (images, targets), (want, want_t) in zip(got, old, strict=True):
            assert isinstance(images, HostBatch) and images.pixels.dtype == torch.uint8
            x, t = to_device(images, targets, CPU)
            assert torch.equal(x, want) and torch.equal(t, want_t)
            tv = ref(F.to_dtype(images.pixels, torch.float32, scale=True))
            torch.testing.assert_close(x, tv, rtol=1e-6, atol=1e-6)


def test_device_stage_casts_to_the_autocast_dtype_and_channels_last() -> None:
    from zoo.data.device import HostBatch, Normalization, to_device

    pixels = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    norm = Normalization((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    x, _ = to_device(HostBatch(pixels, norm), torch.zeros(2, dtype=torch.long), CPU,
                     torch.bfloat16, channels_last=True)
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    want = v2.Normalize(norm.mean, norm.std)(F.to_dtype(pixels, torch.float32, scale=True))
    torch.testing.assert_close(x.float(), want, rtol=1e-2, atol=1e-2)


# --------------------------------------------------------------------------- gpu path


def test_draw_crop_draws_as_torchvisions_random_resized_crop_and_flip() -> None:
    """The gpu path's worker draws (from bytes only) equal v2.RandomResizedCrop +
    RandomHorizontalFlip applied to the decoded image with the same RNG state."""
    from zoo.data.decode import Encoded, decode_rgb
    from zoo.data.device import DrawCrop

    data = _jpeg("astronaut", (80, 60))
    img = decode_rgb(data)
    ref = v2.Compose([v2.RandomResizedCrop(24, antialias=True), v2.RandomHorizontalFlip()])
    draw = DrawCrop(24, train=True)
    flips = set()
    for seed in range(40):
        torch.manual_seed(seed)
        want, next_ref = ref(img), torch.rand(1)
        torch.manual_seed(seed)
        s = draw(Encoded(data, "x.jpg"))
        assert s.box is not None
        x = F.resized_crop(img, *s.box, [24, 24], antialias=True)
        assert torch.equal(x.flip(-1) if s.flip else x, want), seed
        assert torch.equal(torch.rand(1), next_ref)  # the same draws from the RNG
        flips.add(s.flip)
    assert flips == {True, False}


@pytest.mark.parametrize("workers", [0, 2])
def test_both_decode_paths_give_the_same_samples(jpeg_dir: Path, workers: int) -> None:
    """Labels, order, boxes and flips identical; pixels close (decoders and
    interpolation may round differently; on the CPU they agree exactly)."""
    from zoo.data.device import EncodedBatch, HostBatch, to_device

    for val in (False, True):
        cpu = _epoch(_jpeg_config(jpeg_dir, "cpu", workers=workers), 2, val)
        gpu = _epoch(_jpeg_config(jpeg_dir, "gpu", workers=workers), 2, val)
        assert len(cpu) == len(gpu) > 0
        for (a, ta), (b, tb) in zip(cpu, gpu, strict=True):
            assert isinstance(a, HostBatch) and isinstance(b, EncodedBatch)
            assert torch.equal(ta, tb)
            xa, _ = to_device(a, ta, CPU)
            xb, _ = to_device(b, tb, CPU)
            assert xa.shape == xb.shape == (len(ta), 3, 32, 32)
            assert (xa - xb).abs().max() <= 2 / 255 / 0.2  # two grey levels at most
            if not val:
                assert all(box is not None for box in b.boxes)


def test_gpu_path_refuses_per_image_trick_transforms_and_auto_falls_back(
        jpeg_dir: Path) -> None:
    from zoo.data.loader import resolve_decode
    from zoo.errors import ConfigError

    cfg = build_config(_jpeg_config(jpeg_dir, "gpu", tricks={"random_rotation": {}}))
    with pytest.raises(ConfigError, match=r"data.decode: gpu cannot run with.*RandomRotation"):
        resolve_decode(cfg, CPU, TrickSet(cfg.tricks))
    auto = build_config(_jpeg_config(jpeg_dir, "auto"))
    assert resolve_decode(auto, torch.device("cuda"), TrickSet({})) == "gpu"
    assert resolve_decode(auto, CPU, TrickSet({})) == "cpu"


@pytest.mark.slow
@pytest.mark.parametrize("decode,workers", [("gpu", 0), ("gpu", 2), ("cpu", 2)])
def test_resume_equals_uninterrupted_run_on_each_decode_path(
        jpeg_dir: Path, tmp_path: Path, decode: str, workers: int) -> None:
    cfg = write_config(tmp_path / "c.yaml", _jpeg_config(
        jpeg_dir, decode, workers=workers, epochs=3, model="resnet20"))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_train(["--config", str(cfg), "--out", str(straight)]).returncode == 0
    first = run_train(["--config", str(cfg), "--out", str(resumed), "--stop-after", "1"])
    assert first.returncode == 0, first.stderr
    second = run_train(["--config", str(cfg), "--out", str(resumed)])
    assert second.returncode == 0, second.stderr
    a = rundir.load_checkpoint(straight / rundir.CHECKPOINT)
    b = rundir.load_checkpoint(resumed / rundir.CHECKPOINT)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    written = rundir.read_json(straight / rundir.CONFIG)
    assert written["input"]["decode"] == decode and written["input"]["workers"] == workers


# --------------------------------------------------------------------------- bad images


@pytest.mark.parametrize("decode", ["cpu", "gpu"])
def test_a_bad_image_names_its_file_or_is_skipped_and_counted(
        jpeg_dir: Path, tmp_path: Path, decode: str) -> None:
    import shutil

    from zoo.data.decode import BadImageError
    from zoo.data.device import BAD_IMAGES, to_device

    root = tmp_path / "data"
    shutil.copytree(jpeg_dir, root)
    bad = root / "train" / "a" / "2.jpg"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated: the header still parses
    cfg = _jpeg_config(root, decode, workers=2, batch_size=12)
    with pytest.raises(BadImageError, match=r"2\.jpg'.*data.skip_bad: true"):
        for images, targets in _epoch(cfg, 1):
            to_device(images, targets, CPU)
    BAD_IMAGES.reset()
    cfg["data"]["skip_bad"] = True
    sizes = [to_device(i, t, CPU)[0].shape[0] for i, t in _epoch(cfg, 1)]
    assert sizes == [11] and BAD_IMAGES.count == 1 and "2.jpg" in BAD_IMAGES.examples[0]
    assert BAD_IMAGES.audit()["details"]["skipped"] == 1
    BAD_IMAGES.reset()
    assert not multiprocessing.active_children()  # the workers stopped, the failed ones too


def test_a_run_with_skip_bad_reports_the_skipped_image_in_its_audit(
        digits_dir: Path, tmp_path: Path) -> None:
    """End to end: a truncated training image is skipped, counted and listed in result.json."""
    import shutil

    root = tmp_path / "digits"
    shutil.copytree(digits_dir, root)
    bad = sorted((root / "train").rglob("*.png"))[0]
    bad.write_bytes(bad.read_bytes()[:20])
    cfg = digits_config(root, epochs=1)
    cfg["data"]["skip_bad"] = True
    out = tmp_path / "run"
    proc = run_train(["--config", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    audit = {a["trick"]: a for a in rundir.read_json(out / rundir.RESULT)["audit"]}
    assert audit["data.skip_bad"]["details"]["skipped"] == 1
    assert bad.name in audit["data.skip_bad"]["details"]["examples"][0]


# --------------------------------------------------------------------------- config


def test_new_keys_keep_old_hashes_and_workers_auto_resolves(digits_dir: Path) -> None:
    from zoo.data.loader import resolve_workers

    base = digits_config(digits_dir)
    cfg = build_config(base)
    assert config_hash(build_config(base, ["data.decode=cpu", "data.skip_bad=true"])) == \
        config_hash(cfg)
    assert config_hash(build_config(base, ["data.decode=gpu"])) != config_hash(cfg)
    assert "decode" not in cfg.identity()["data"] and "skip_bad" not in cfg.identity()["data"]
    assert build_config(base, ["workers=auto"]).workers == "auto"
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="workers: expected an integer or one of 'auto'"):
        build_config(base, ["workers=many"])
    assert resolve_workers("auto", cores=16, processes=1) == 15
    assert resolve_workers("auto", cores=96, processes=8) == 11
    assert resolve_workers("auto", cores=2, processes=8) == 1
    assert resolve_workers(3) == 3


# --------------------------------------------------------------------------- EMA, Lookahead


def test_ema_averages_as_torchs_averaged_model_made_after_channels_last() -> None:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from zoo.tricks.ema import Ema, EmaParams

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = Ema(EmaParams(decay=0.9))
    ema.apply_model(model, None)  # type: ignore[arg-type]
    model = model.to(memory_format=torch.channels_last)
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(4):
        model(torch.randn(2, 3, 6, 6)).square().mean().backward()
        opt.step()
        ema.after_step(model)
        ref.update_parameters(model)
    assert ema.ema is not None
    assert ema.ema.module[0].weight.is_contiguous(memory_format=torch.channels_last)
    for (name, a), b in zip(ema.ema.module.state_dict().items(),
                            ref.module.state_dict().values(), strict=True):
        if a.is_floating_point():
            assert torch.equal(a, b), name
    # Copied, not averaged, when the average is read (evaluated or checkpointed).
    assert int(ema.eval_model(model)[1].num_batches_tracked) == 4
    assert int(ema.state_dict()["module.1.num_batches_tracked"]) == 4
    assert int(ema.ema.n_averaged) == 4 == int(ref.n_averaged)
    assert all(p.grad is None for p in ema.ema.parameters())


def test_lookahead_takes_gradscalers_device_flag_without_a_host_sync() -> None:
    """With a fused inner SGD, GradScaler hands Lookahead its found-inf flag (the fast
    path: no .item() per step) and the weights equal the non-fused path's."""
    from zoo.tricks._ops import Lookahead

    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:  # type: ignore[override]
            seen.append(hasattr(self, "found_inf"))
            return super().step(closure)

    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        opt = Lookahead(Spy(model.parameters(), lr=0.1, momentum=0.9, fused=fused or None),
                        k=2, alpha=0.5)
        scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
        for _ in range(5):
            opt.zero_grad()
            scaler.scale(model(torch.randn(3, 4)).square().sum()).backward()
            scaler.step(opt)
            scaler.update()
        results.append([p.detach().clone() for p in model.parameters()])
    assert seen == [True] * 5 + [False] * 5
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- pre-resized


def test_to_lmdb_max_side_stores_smaller_images_recorded_in_the_metadata(
        jpeg_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ablate.cli import app
    from zoo.data.decode import decode_rgb
    from zoo.data.lmdb_dataset import LmdbDataset, read_meta

    dst = tmp_path / "lmdb"
    res = CliRunner().invoke(app, ["data", "to-lmdb", str(jpeg_dir), str(dst),
                                   "--max-side", "40"])
    assert res.exit_code == 0, res.output
    meta = read_meta(dst / "train.lmdb").raw
    assert meta["max_side"] == 40
    ds = LmdbDataset(dst / "train.lmdb")
    for i in range(len(ds)):
        img, _ = ds.load(i)
        rec = ds.read(i)
        assert max(img.shape[1:]) == 40 and rec.image[:3] == b"\xff\xd8\xff"
        # Against PIL's own bilinear resize of the source file, within JPEG's rounding.
        with Image.open(jpeg_dir / "train" / rec.path) as src:
            w, h = src.size
            ref = src.convert("RGB").resize((round(w * 40 / max(w, h)), round(h * 40 / max(w, h))),
                                            Image.Resampling.BILINEAR)
        want = torch.from_numpy(np.array(ref)).permute(2, 0, 1)
        # JPEG at quality 90 on a 40 px picture: a few grey levels on average.
        assert (img.float() - want.float()).abs().mean() < 8, rec.path
        assert torch.equal(img, decode_rgb(rec.image))
    # Another --max-side is another conversion: refused without --overwrite.
    again = CliRunner().invoke(app, ["data", "to-lmdb", str(jpeg_dir), str(dst),
                                     "--max-side", "50"])
    assert again.exit_code != 0 and "--overwrite" in again.output
    # The trainer reads it like any LMDB, on both paths.
    cfg = _jpeg_config(dst, "gpu")
    cfg["data"].update(train=str(dst / "train.lmdb"), val=str(dst / "val.lmdb"), format="lmdb")
    assert sum(len(t) for _, t in _epoch(cfg, 1)) == 12
