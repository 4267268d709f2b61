"""The LMDB format: interchangeable with the ImageFolder tree it came from, safe to
interrupt, strict about bad input, and read the same by the trainer."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.datasets import ImageFolder
from typer.testing import CliRunner

from ablate.cli import app
from tests.conftest import LIMIT, ROOT, digits_config, read_metrics, write_config
from zoo.config import DataConfig
from zoo.data.datasets import build_datasets, rgb_loader
from zoo.data.lmdb_convert import BadImageError, convert, convert_tree
from zoo.data.lmdb_dataset import BadRecordError, LmdbDataset, read_meta
from zoo.data.transforms import eval_transform, train_transform
from zoo.errors import ConfigError

runner = CliRunner()
HEADER = "<4sBBHi"  # written out here, independently of the reader


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Two shared cores: keep intra-op threads from oversubscribing them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_lmdb(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits tree (train/ and val/) converted: a directory of train.lmdb and val.lmdb."""
    out = tmp_path_factory.mktemp("lmdb") / "digits"
    results = convert(digits_dir, out, workers=2)
    assert [r.dst.name for r in results] == ["train.lmdb", "val.lmdb"]
    return out


def _raising_progress(after: int) -> Callable[..., object]:
    """A progress factory that interrupts the conversion after ``after`` images."""

    @contextmanager
    def progress(label: str, total: int, done: int) -> Iterator[Callable[[int], None]]:
        seen = [done]

        def advance(n: int) -> None:
            seen[0] += n
            if seen[0] >= after:
                raise KeyboardInterrupt

        yield advance

    return progress


@contextmanager
def _independent(path: Path, tmp_path: Path) -> Iterator[lmdb.Environment]:
    """Plain py-lmdb on a copy: py-lmdb refuses a second open of a file in one process,
    and this process's datasets may hold the original."""
    copy = tmp_path / f"copy-{path.name}"
    shutil.copy(path, copy)
    env = lmdb.open(str(copy), subdir=False, readonly=True, lock=False)
    try:
        yield env
    finally:
        env.close()
        copy.unlink()


def _records(path: Path, tmp_path: Path) -> list[tuple[bytes, bytes]]:
    with _independent(path, tmp_path) as env, env.begin() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor() if k != b"__meta__"]


# --------------------------------------------------------------------------- round trip


def test_lmdb_reads_like_the_imagefolder_it_came_from(digits_dir: Path,
                                                      digits_lmdb: Path) -> None:
    cfg = DataConfig(image_size=8, preset="small", hflip=True, mean=(0.5,) * 3, std=(0.5,) * 3)
    for split in ("train", "val"):
        tree = ImageFolder(str(digits_dir / split), loader=rgb_loader)
        db = LmdbDataset(digits_lmdb / f"{split}.lmdb")
        assert db.classes == tree.classes and db.class_to_idx == tree.class_to_idx
        assert len(db) == len(tree) and db.targets == tree.targets
        for i in range(len(tree)):
            (a, la), (b, lb) = tree[i], db[i]
            assert la == lb and a.dtype == b.dtype == torch.uint8 and a.shape == (3, 8, 8)
            assert torch.equal(a, b), i
            if i % 50 == 0:  # and both are PIL's own RGB pixels of the source file
                with Image.open(tree.samples[i][0]) as img:
                    ref = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
                assert np.array_equal(a.numpy(), ref), i
        assert torch.equal(db[-1][0], tree[len(tree) - 1][0])
        with pytest.raises(IndexError):
            db[len(db)]
    # The trainer's own transforms, random ones included, give identical tensors.
    for make in (train_transform, eval_transform):
        tf = make(cfg)
        tree = ImageFolder(str(digits_dir / "train"), transform=tf, loader=rgb_loader)
        db = LmdbDataset(digits_lmdb / "train.lmdb", transform=tf)
        for i in range(0, len(tree), 11):
            torch.manual_seed(i)
            x, y = tree[i]
            torch.manual_seed(i)
            u, v = db[i]
            assert y == v and torch.equal(x, u), (make.__name__, i)


def test_record_layout_parsed_by_hand(digits_dir: Path, digits_lmdb: Path,
                                     tmp_path: Path) -> None:
    tree = ImageFolder(str(digits_dir / "val"))
    with _independent(digits_lmdb / "val.lmdb", tmp_path) as env, env.begin() as txn:
        meta = json.loads(txn.get(b"__meta__"))
        keys = [bytes(k) for k in txn.cursor().iternext(keys=True, values=False)]
        values = [bytes(txn.get(b"%08d" % i)) for i in range(len(tree))]
    assert meta["format"] == "zoo-image-lmdb" and meta["version"] == 1
    assert meta["count"] == len(tree) == 364 and meta["key_digits"] == 8
    assert meta["classes"] == tree.classes
    assert meta["counts"] == {c: tree.targets.count(i) for i, c in enumerate(tree.classes)}
    assert keys == [b"%08d" % i for i in range(len(tree))] + [b"__meta__"]
    for (path, label), value in zip(tree.samples, values, strict=True):
        magic, version, reserved, path_len, got_label = struct.unpack_from(HEADER, value)
        assert (magic, version, reserved) == (b"ZREC", 1, 0)
        assert got_label == label
        rel = value[12:12 + path_len].decode("utf-8")
        assert rel == os.path.relpath(path, digits_dir / "val")
        assert value[12 + path_len:] == Path(path).read_bytes()  # the file, not re-encoded


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_workers_and_shards(digits_dir: Path, digits_lmdb: Path,
                                       workers: int) -> None:
    cfg = DataConfig(image_size=8, preset="small", mean=(0.5,) * 3, std=(0.5,) * 3)
    tf = eval_transform(cfg)
    tree = ImageFolder(str(digits_dir / "val"), transform=tf, loader=rgb_loader)
    db = LmdbDataset(digits_lmdb / "val.lmdb", transform=tf)
    db[0]  # the parent has the file open: forked workers must open their own
    ref = torch.stack([tree[i][0] for i in range(len(tree))])
    xs, ys = zip(*DataLoader(db, batch_size=50, num_workers=workers), strict=True)
    assert torch.equal(torch.cat(xs), ref)
    assert torch.cat(ys).tolist() == tree.targets
    # As under DDP: each rank's sampler picks its shard; together they cover every index.
    covered: set[int] = set()
    for rank in range(2):
        sampler = DistributedSampler(db, num_replicas=2, rank=rank, shuffle=True, seed=0)
        idx = list(sampler)
        loader = DataLoader(db, batch_size=64, sampler=sampler, num_workers=workers)
        assert torch.equal(torch.cat([x for x, _ in loader]), ref[idx])
        covered.update(idx)
    assert covered == set(range(len(db)))
    # A pickled dataset (spawn, DDP launchers) carries no LMDB handle and still reads.
    clone = pickle.loads(pickle.dumps(db))
    assert clone._txn is None and torch.equal(clone[5][0], ref[5])


# --------------------------------------------------------------------------- interruption


def test_interrupted_conversion_leaves_no_dst_and_resumes(digits_dir: Path,
                                                          digits_lmdb: Path,
                                                          tmp_path: Path) -> None:
    dst = tmp_path / "train.lmdb"
    partial = tmp_path / "train.lmdb.partial"
    with pytest.raises(KeyboardInterrupt):
        convert_tree(digits_dir / "train", dst, progress=_raising_progress(500),
                     commit_records=100, workers=2)
    assert not dst.exists() and partial.exists()
    with pytest.raises(ConfigError, match="unfinished conversion"):
        LmdbDataset(partial)
    done = convert_tree(digits_dir / "train", dst, commit_records=100)
    assert done.written and done.resumed_from == 500 and done.count == 1433
    assert not partial.exists() and not list(tmp_path.glob("*-lock"))
    # Resumed or not, the records are the same as those of an uninterrupted conversion.
    assert _records(dst, tmp_path) == _records(digits_lmdb / "train.lmdb", tmp_path)
    # A second run finds the work done.
    again = convert_tree(digits_dir / "train", dst)
    assert not again.written and again.count == 1433


def test_resume_starts_over_when_the_converted_files_changed(digits_dir: Path,
                                                             tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(digits_dir / "val", src)
    dst = tmp_path / "val.lmdb"
    with pytest.raises(KeyboardInterrupt):
        convert_tree(src, dst, progress=_raising_progress(100), commit_records=50)
    first = sorted((src / "eight").glob("*.png"))[0]  # image 0, already written
    os.utime(first, ns=(1, 1))
    done = convert_tree(src, dst, commit_records=50)
    assert done.resumed_from == 0 and done.count == 364


def test_killed_conversion_resumes(digits_dir: Path, tmp_path: Path) -> None:
    """SIGKILL in the middle: no clean-up runs at all, and a rerun still completes."""
    dst = tmp_path / "train.lmdb"
    script = (
        "import os, signal, contextlib, sys\n"
        "from zoo.data.lmdb_convert import convert_tree\n"
        "@contextlib.contextmanager\n"
        "def progress(label, total, done):\n"
        "    n = [0]\n"
        "    def advance(k):\n"
        "        n[0] += k\n"
        "        if n[0] == 350: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    yield advance\n"
        "convert_tree(sys.argv[1], sys.argv[2], progress=progress, commit_records=100)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(digits_dir / "train"), str(dst)],
                          cwd=ROOT, capture_output=True, text=True, timeout=LIMIT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not dst.exists()
    done = convert_tree(digits_dir / "train", dst, commit_records=100)
    assert done.resumed_from == 300 and done.count == 1433
    assert len(LmdbDataset(dst)) == 1433


# --------------------------------------------------------------------------- bad input


@pytest.fixture()
def bad_tree(digits_dir: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    """The val tree with a truncated PNG and a text file named .png."""
    src = tmp_path / "bad"
    shutil.copytree(digits_dir / "val", src)
    truncated = sorted((src / "four").glob("*.png"))[3]
    truncated.write_bytes(truncated.read_bytes()[:40])
    text = src / "two" / "notes.png"
    text.write_text("not an image\n")
    return src, [truncated, text]


def test_corrupt_source_file_stops_or_is_skipped(bad_tree: tuple[Path, list[Path]],
                                                 tmp_path: Path) -> None:
    src, bad = bad_tree
    dst = tmp_path / "bad.lmdb"
    with pytest.raises(BadImageError, match=str(bad[0])):
        convert_tree(src, dst)
    assert not dst.exists()
    res = runner.invoke(app, ["data", "to-lmdb", str(src), str(dst)])
    assert res.exit_code == 2 and str(bad[0]) in res.output
    assert "--skip-bad" in res.output
    res = runner.invoke(app, ["data", "to-lmdb", str(src), str(dst), "--skip-bad"])
    assert res.exit_code == 0, res.output
    assert "skipped 2 unreadable files" in res.output
    for path in bad:
        assert str(path) in res.output
    meta = read_meta(dst)
    assert meta.count == 364 - 1 and sorted(meta.raw["skipped"]) == sorted(
        os.path.relpath(p, src) for p in bad)
    # verify on the tree names both files and exits 1; the LMDB of the good ones is clean.
    res = runner.invoke(app, ["data", "verify", str(src)])
    assert res.exit_code == 1
    assert all(str(p) in res.output for p in bad)
    assert runner.invoke(app, ["data", "verify", str(dst)]).exit_code == 0


def _copy_with(src: Path, dst: Path, edit: Callable[[lmdb.Transaction], None]) -> Path:
    shutil.copy(src, dst)
    env = lmdb.open(str(dst), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        edit(txn)
    env.close()
    return dst


def _bad_lmdbs(digits_lmdb: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = digits_lmdb / "val.lmdb"
    random_file = tmp_path / "random.lmdb"
    random_file.write_bytes(np.random.default_rng(0).bytes(50_000))
    plain = tmp_path / "plain.lmdb"
    env = lmdb.open(str(plain), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"00000000", b"hello")
    env.close()
    truncated = tmp_path / "truncated.lmdb"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    def wrong_count(txn: lmdb.Transaction) -> None:
        meta = json.loads(txn.get(b"__meta__"))
        meta["count"] += 5
        txn.put(b"__meta__", json.dumps(meta).encode())

    return {
        "random": (random_file, "not an LMDB file"),
        "no meta": (plain, "no __meta__ key"),
        "truncated": (truncated, "truncated LMDB"),
        "count": (_copy_with(good, tmp_path / "count.lmdb", wrong_count), "count mismatch"),
        "dropped record": (_copy_with(good, tmp_path / "dropped.lmdb",
                                      lambda t: t.delete(b"00000100")), "count mismatch"),
        "directory": (digits_lmdb, "is a directory"),
    }


def test_foreign_or_truncated_lmdb_is_a_one_line_error(digits_lmdb: Path,
                                                       tmp_path: Path) -> None:
    for name, (path, reason) in _bad_lmdbs(digits_lmdb, tmp_path).items():
        with pytest.raises(ConfigError) as info:
            LmdbDataset(path)
        msg = str(info.value)
        assert str(path) in msg and reason in msg and "\n" not in msg, (name, msg)
        if name != "directory":
            res = runner.invoke(app, ["data", "verify", str(path)])
            assert res.exit_code == 2 and reason in res.output, (name, res.output)


def test_trainer_reports_a_bad_lmdb_with_exit_code_2(
    digits_lmdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.train import main

    bad = tmp_path / "val.lmdb"
    bad.write_bytes(b"\0" * 9000)
    cfg = digits_config(digits_lmdb, epochs=1)
    cfg["data"].update(format="lmdb", train=str(digits_lmdb / "train.lmdb"), val=str(bad))
    code = main(["--config", str(write_config(tmp_path / "c.yaml", cfg)),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and str(bad) in err[-1]


def test_train_and_val_lmdb_with_different_classes(digits_dir: Path, digits_lmdb: Path,
                                                   tmp_path: Path) -> None:
    val = tmp_path / "val"
    shutil.copytree(digits_dir / "val", val)
    shutil.rmtree(val / "nine")
    convert_tree(val, tmp_path / "val.lmdb")
    cfg = DataConfig(train=str(digits_lmdb / "train.lmdb"), val=str(tmp_path / "val.lmdb"),
                     format="lmdb", image_size=8, preset="small")
    with pytest.raises(ConfigError, match=r"only in train \['nine'\]"):
        build_datasets(cfg, train_transform(cfg), eval_transform(cfg))


def test_verify_names_a_bad_record_and_info_describes(digits_lmdb: Path,
                                                      tmp_path: Path) -> None:
    def corrupt(txn: lmdb.Transaction) -> None:
        value = txn.get(b"00000007")
        txn.put(b"00000007", value[:-60])  # the PNG loses its end

    bad = _copy_with(digits_lmdb / "val.lmdb", tmp_path / "val.lmdb", corrupt)
    res = runner.invoke(app, ["data", "verify", str(bad)])
    assert res.exit_code == 1
    assert "00000007 (eight/" in res.output and "1 bad" in res.output
    # The trainer's reader names the same record, and reads its neighbours.
    with pytest.raises(BadRecordError, match=r"record 00000007 \(eight/\d+\.png\): "):
        LmdbDataset(bad)[7]
    assert LmdbDataset(bad)[8][1] == 0
    ok = runner.invoke(app, ["data", "verify", str(digits_lmdb)])
    assert ok.exit_code == 0 and ok.output.count("all decode") == 2
    assert "1433 good images" in ok.output and "364 good images" in ok.output
    for path in (digits_lmdb, digits_lmdb / "val.lmdb"):
        res = runner.invoke(app, ["data", "info", str(path)])
        assert res.exit_code == 0, res.output
        assert "8x8 (364)" in res.output and "PNG (364)" in res.output
        assert "zoo-image-lmdb v1" in res.output
    res = runner.invoke(app, ["data", "info", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such file" in res.output


def test_cli_converts_a_split_layout_and_refuses_to_clobber(digits_dir: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["data", "to-lmdb", str(digits_dir), str(out), "-j", "2"])
    assert res.exit_code == 0, res.output
    assert "train.lmdb: wrote 1433 images of 10 classes" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["train.lmdb", "val.lmdb"]
    again = runner.invoke(app, ["data", "to-lmdb", str(digits_dir), str(out)])
    # One message per file; the console may wrap a long path's line anywhere.
    assert again.exit_code == 0 and " ".join(again.output.split()).count("nothing to do") == 2
    # Another source into the same file: refused unless --overwrite.
    other = runner.invoke(app, ["data", "to-lmdb", str(digits_dir / "val"),
                                str(out / "train.lmdb")])
    assert other.exit_code == 2 and "--overwrite" in other.output
    assert read_meta(out / "train.lmdb").count == 1433
    assert runner.invoke(app, ["data", "to-lmdb", str(digits_dir / "val"),
                               str(out / "train.lmdb"), "--overwrite"]).exit_code == 0
    assert read_meta(out / "train.lmdb").count == 364


# --------------------------------------------------------------------------- the trainer


def test_training_on_lmdb_equals_training_on_the_tree(digits_dir: Path, digits_lmdb: Path,
                                                      tmp_path: Path) -> None:
    from zoo.train import main

    outs = {}
    for fmt in ("imagefolder", "lmdb"):
        cfg = digits_config(digits_dir, epochs=1, workers=0, device="cpu")
        if fmt == "lmdb":
            cfg["data"].update(format="lmdb", train=str(digits_lmdb / "train.lmdb"),
                               val=str(digits_lmdb / "val.lmdb"))
        outs[fmt] = tmp_path / fmt
        code = main(["--config", str(write_config(tmp_path / f"{fmt}.yaml", cfg)),
                     "--out", str(outs[fmt])])
        assert code == 0
    a, b = read_metrics(outs["imagefolder"]), read_metrics(outs["lmdb"])
    keys = ("epoch", "step", "train_loss", "lr", "val_loss", "top1", "top5", "eval_images")
    assert [{k: r[k] for k in keys} for r in a] == [{k: r[k] for k in keys} for r in b]
    assert b[0]["eval_images"] == 364

