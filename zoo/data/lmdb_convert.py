"""Convert ImageFolder trees to image LMDB files, and verify or describe either.

``convert(SRC, DST)`` writes one LMDB file per split (layout in :mod:`zoo.data.lmdb_dataset`
and ``docs/lmdb.md``): the image files' bytes as they are, in ImageFolder's order, with
ImageFolder's labels and class list. Files are read and decoded (to check them) by a pool
of threads; PIL and file reads release the GIL, one thread writes.

Interruption is safe. Records go to ``DST.partial`` in transactions that also store how
far the conversion got (``__progress__``); the file gets its ``__meta__`` key (with the
record count that readers check) and its final name only at the end. Run again, a
conversion continues from the last committed transaction when the source files before
that point are unchanged, and starts over otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import lmdb
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from zoo.data.decode import decode_rgb
from zoo.data.lmdb_dataset import (
    FORMAT_NAME,
    FORMAT_VERSION,
    KEY_DIGITS,
    META_KEY,
    PROGRESS_KEY,
    RECORD_HEADER,
    LmdbFormatError,
    check_meta,
    check_size,
    describe_error,
    opened,
    pack_record,
    parse_record,
    read_meta,
    record_key,
)
from zoo.errors import ZooError

T = TypeVar("T")
R = TypeVar("R")

#: ``progress(label, total, done)`` gives a context whose value is ``advance(n)``.
ProgressFactory = Callable[[str, int, int], AbstractContextManager[Callable[[int], None]]]

DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
#: A write transaction is committed after this many records or bytes, whichever first.
COMMIT_RECORDS = 1000
COMMIT_BYTES = 64 << 20
SPLITS = ("train", "val")


class ConversionError(ZooError):
    """The source or destination of a conversion cannot be used."""


class BadImageError(ConversionError):
    """A source file that does not decode as an image; the message names it."""


@dataclass(frozen=True)
class SourceImage:
    """One image file of an ImageFolder tree, in ImageFolder's order."""

    path: str
    rel: str
    label: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ConvertResult:
    """What one split's conversion did."""

    src: Path
    dst: Path
    count: int
    classes: list[str]
    counts: dict[str, int]
    skipped: list[str]
    encoded_bytes: int
    file_bytes: int
    seconds: float
    #: False when DST already held this source's conversion and nothing was written.
    written: bool
    #: Source images already in the ``.partial`` file when this run started.
    resumed_from: int = 0


@dataclass
class Report:
    """``verify`` or ``info`` of one split: an LMDB file or an ImageFolder tree."""

    path: Path
    kind: str  # "lmdb" or "imagefolder"
    classes: list[str]
    counts: dict[str, int]
    #: ``(key or path, reason)`` of every record or file that failed.
    bad: list[tuple[str, str]] = field(default_factory=list)
    encoded_bytes: int = 0
    file_bytes: int = 0
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    meta: dict[str, Any] | None = None

    @property
    def count(self) -> int:
        return sum(self.counts.values())


@contextlib.contextmanager
def _no_progress(label: str, total: int, done: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


# ------------------------------------------------------------------------- the source


def scan_tree(src: str | Path) -> tuple[list[str], list[SourceImage]]:
    """Classes and image files of an ImageFolder tree, exactly as torchvision lists them."""
    root = str(src)
    if not os.path.isdir(root):
        raise ConversionError(f"{root}: not a directory")
    try:
        classes, class_to_idx = find_classes(root)
        samples = make_dataset(root, class_to_idx, extensions=IMG_EXTENSIONS)
    except (FileNotFoundError, RuntimeError) as exc:
        raise ConversionError(f"{root}: {exc}") from None
    images = []
    for path, label in samples:
        st = os.stat(path)
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        images.append(SourceImage(path, rel, label, st.st_size, st.st_mtime_ns))
    return classes, images


def find_splits(src: str | Path) -> dict[str, Path] | None:
    """``{"train": SRC/train, "val": SRC/val}`` when SRC holds split trees (each of them a
    directory of class directories), else None: SRC is itself one tree."""
    root = Path(src)
    dirs = {name: root / name for name in SPLITS}
    if all(d.is_dir() and any(e.is_dir() for e in os.scandir(d)) for d in dirs.values()):
        return dirs
    return None


def _hasher(classes: Sequence[str]) -> Any:
    h = hashlib.sha256()
    h.update(json.dumps(list(classes)).encode())
    return h


def _update(h: Any, img: SourceImage) -> None:
    h.update(f"{img.rel}\0{img.label}\0{img.size}\0{img.mtime_ns}\n".encode())


def fingerprint(classes: Sequence[str], images: Iterable[SourceImage]) -> str:
    """SHA-256 of the class list and each file's path, label, size and mtime."""
    h = _hasher(classes)
    for img in images:
        _update(h, img)
    return h.hexdigest()


#: JPEG quality of images re-encoded by ``max_side`` (FFCV's ImageNet files use 90).
SHRINK_QUALITY = 90


def shrink_image(data: bytes, max_side: int) -> bytes:
    """``data`` re-encoded with its longer side at most ``max_side`` (antialiased
    bilinear, as the trainer resizes; a JPEG stays a JPEG at quality 90, anything else
    becomes a PNG, lossless), or unchanged when it is no larger. Decoding 4x fewer pixels
    is most of what storing ImageNet at 256-350 px saves a loader (FFCV does it)."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        if max(width, height) <= max_side:
            return data
        fmt = "JPEG" if img.format == "JPEG" else "PNG"
        scale = max_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode)
        out = io.BytesIO()
        rgb.resize(size, Image.Resampling.BILINEAR).save(
            out, fmt, **({"quality": SHRINK_QUALITY} if fmt == "JPEG" else {}))
        return out.getvalue()


def _read_checked(img: SourceImage, max_side: int | None = None
                  ) -> tuple[bytes | None, str | None]:
    """The file's bytes (re-encoded to ``max_side`` if larger) if they decode as an image
    the way the trainer decodes them."""
    try:
        with open(img.path, "rb") as f:
            data = f.read()
        if max_side is not None:
            data = shrink_image(data, max_side)
        decode_rgb(data)
    except Exception as exc:  # PIL raises many types for a bad file
        return None, describe_error(exc)
    return data, None


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                window: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, in order, at most ``window`` ahead."""
    if workers <= 1:
        yield from map(fn, items)
        return
    window = window or workers * 8
    pool = ThreadPoolExecutor(workers, thread_name_prefix="lmdb-read")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------- conversion


def _map_size(images: Sequence[SourceImage]) -> int:
    """Room for every record with LMDB's overheads: a value over about half a page goes
    to whole overflow pages. On Linux the file grows only as pages are written."""
    total = 0
    for img in images:
        n = img.size + RECORD_HEADER.size + len(img.rel.encode()) + 64
        total += math.ceil(n / 4096) * 4096 if n > 2000 else n
    return int(total * 1.25) + (64 << 20)


@dataclass
class _State:
    """How far a conversion got; stored as ``__progress__`` with each transaction."""

    next: int = 0  # source images consumed (written or skipped)
    written: int = 0
    skipped: list[str] = field(default_factory=list)
    label_counts: list[int] = field(default_factory=list)
    encoded_bytes: int = 0

    def to_json(self, classes: list[str], prefix: str, skip_bad: bool,
                max_side: int | None = None) -> bytes:
        return json.dumps({
            "version": FORMAT_VERSION, "classes": classes, "prefix_fingerprint": prefix,
            "skip_bad": skip_bad, "max_side": max_side, "next": self.next, "written": self.written,
            "skipped": self.skipped, "label_counts": self.label_counts,
            "encoded_bytes": self.encoded_bytes,
        }).encode()


def _open_writer(partial: Path, map_size: int) -> lmdb.Environment:
    # lock=False: no lock file next to DST; the flock on the partial file keeps other
    # writers out. sync stays on: each commit is durable, so a resume can trust it.
    # lib_version=0: LMDB 0.9's data format, which every LMDB binding reads (py-lmdb 3
    # could otherwise write LMDB 1.0's when LMDB_DEFAULT_LIB_VERSION says so).
    return lmdb.open(str(partial), subdir=False, lock=False, readahead=False, meminit=False,
                     map_size=map_size, lib_version=0)


def _resume(partial: Path, fd: int, map_size: int, classes: list[str],
            images: Sequence[SourceImage], skip_bad: bool, max_side: int | None = None
            ) -> tuple[lmdb.Environment, _State]:
    """Open ``partial``: continue what it holds if it matches the source, else start over."""
    if os.fstat(fd).st_size > 0:
        env = None
        try:
            env = _open_writer(partial, map_size)
            check_size(partial, env)
            with env.begin() as txn:
                raw = txn.get(PROGRESS_KEY)
                entries = env.stat()["entries"]
            prog = json.loads(raw) if raw is not None else None
            if (prog is not None and prog["version"] == FORMAT_VERSION
                    and prog["classes"] == classes and 0 < prog["next"] <= len(images)
                    and entries == prog["written"] + 1
                    and (skip_bad or not prog["skipped"])
                    and prog.get("max_side") == max_side
                    and prog["prefix_fingerprint"] == fingerprint(classes, images[:prog["next"]])):
                return env, _State(prog["next"], prog["written"], list(prog["skipped"]),
                                   list(prog["label_counts"]), prog["encoded_bytes"])
        except (lmdb.Error, LmdbFormatError, ValueError, KeyError, TypeError):
            pass
        if env is not None:
            env.close()
        os.ftruncate(fd, 0)
    return _open_writer(partial, map_size), _State(label_counts=[0] * len(classes))


def _commit(env: lmdb.Environment, batch: list[tuple[bytes, bytes]], progress: bytes) -> None:
    """Append ``batch`` and replace ``__progress__`` in one transaction; grow the map if
    it is full. Keys only increase and sort before ``__progress__``, so ``append=True``
    (LMDB's bulk-load mode: full pages, no search) applies once that key is removed."""
    while True:
        try:
            with env.begin(write=True) as txn:
                txn.delete(PROGRESS_KEY)
                for key, value in batch:
                    txn.put(key, value, append=True)
                txn.put(PROGRESS_KEY, progress, append=True)
            break
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)
    batch.clear()


def _existing(dst: Path) -> dict[str, Any] | None:
    """The metadata of a complete image LMDB at ``dst``, or None if it is anything else."""
    try:
        return read_meta(dst).raw
    except LmdbFormatError:
        return None


def _done_already(dst: Path, source_fp: str, max_side: int | None, overwrite: bool
                  ) -> dict[str, Any] | None:
    """The metadata of ``dst`` when it is this conversion, done; None when it is to be
    written (absent, or another file that ``overwrite`` replaces)."""
    if dst.is_dir():
        raise ConversionError(f"{dst}: is a directory; give the .lmdb file to write")
    if not dst.exists():
        return None
    meta = _existing(dst)
    if (meta is not None and meta.get("source_fingerprint") == source_fp
            and meta.get("max_side") == max_side):
        return meta
    if not overwrite:
        what = "a conversion of other files" if meta else "not a complete image LMDB"
        raise ConversionError(f"{dst}: exists ({what}); pass --overwrite to replace it")
    return None


def convert_tree(
    src: str | Path,
    dst: str | Path,
    *,
    skip_bad: bool = False,
    max_side: int | None = None,
    workers: int = DEFAULT_WORKERS,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
    progress_label: str | None = None,
    commit_records: int = COMMIT_RECORDS,
) -> ConvertResult:
    """Convert the ImageFolder tree ``src`` to the image LMDB file ``dst``.

    A corrupt or non-image file (one with an image extension that does not decode)
    stops the conversion with :class:`BadImageError` naming it, after committing the
    records before it; with ``skip_bad`` it is left out and listed in the result. With
    ``max_side``, images larger than that are re-encoded once (:func:`shrink_image`) and
    the metadata records it (``max_side``)."""
    if max_side is not None and max_side < 1:
        raise ConversionError(f"--max-side: must be at least 1, got {max_side}")
    src, dst = Path(src), Path(dst)
    classes, images = scan_tree(src)
    source_fp = fingerprint(classes, images)
    done = _done_already(dst, source_fp, max_side, overwrite)
    if done is not None:
        return _result(src, dst, done, 0.0, written=False)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConversionError(f"{partial}: another conversion is writing it") from None
        env, state = _resume(partial, fd, _map_size(images), classes, images, skip_bad,
                             max_side)
        try:
            resumed_from = state.next
            t0 = time.perf_counter()
            _write(env, src, classes, images, state, skip_bad, workers,
                   progress or _no_progress, progress_label or dst.name, commit_records,
                   max_side)
            meta = _meta(src, classes, state, source_fp, len(images))
            meta["max_side"] = max_side
            with env.begin(write=True) as txn:
                txn.delete(PROGRESS_KEY)
                txn.put(META_KEY, json.dumps(meta, indent=1).encode(), append=True)
            env.sync(True)
        finally:
            env.close()
        read_meta(partial)  # the reader's own checks, before the file gets its name
        os.replace(partial, dst)
        _fsync_dir(dst.parent)
    finally:
        os.close(fd)
    return _result(src, dst, meta, time.perf_counter() - t0, written=True,
                   resumed_from=resumed_from)


def _write(env: lmdb.Environment, src: Path, classes: list[str],
           images: Sequence[SourceImage], state: _State, skip_bad: bool, workers: int,
           progress: ProgressFactory, label: str, commit_records: int,
           max_side: int | None = None) -> None:
    digits = max(KEY_DIGITS, len(str(max(len(images) - 1, 0))))
    h = _hasher(classes)
    for img in images[:state.next]:
        _update(h, img)
    batch: list[tuple[bytes, bytes]] = []
    batch_bytes = 0

    def commit() -> None:
        nonlocal batch_bytes
        _commit(env, batch, state.to_json(classes, h.copy().hexdigest(), skip_bad, max_side))
        batch_bytes = 0

    todo = images[state.next:]
    with progress(label, len(images), state.next) as advance:
        read = functools.partial(_read_checked, max_side=max_side)
        for img, (data, error) in zip(todo, ordered_map(read, todo, workers), strict=True):
            if data is None:
                if not skip_bad:
                    commit()  # keep the work before it; a rerun continues from here
                    raise BadImageError(
                        f"{img.path}: not a readable image ({error}); fix or remove it, "
                        f"or pass --skip-bad"
                    )
                state.skipped.append(img.rel)
            else:
                batch.append((record_key(state.written, digits),
                              pack_record(img.label, img.rel, data)))
                batch_bytes += len(data)
                state.written += 1
                state.label_counts[img.label] += 1
                state.encoded_bytes += len(data)
            state.next += 1
            _update(h, img)
            if len(batch) >= commit_records or batch_bytes >= COMMIT_BYTES:
                commit()
            advance(1)
        commit()


def _meta(src: Path, classes: list[str], state: _State, source_fp: str,
          total: int) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "count": state.written,
        "classes": classes,
        "counts": dict(zip(classes, state.label_counts, strict=True)),
        "key_digits": max(KEY_DIGITS, len(str(max(total - 1, 0)))),
        "record_header": RECORD_HEADER.format,
        "encoded_bytes": state.encoded_bytes,
        "source": str(src.resolve()),
        "source_fingerprint": source_fp,
        "skipped": state.skipped,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "writer": "zoo.data.lmdb_convert",
    }


def _result(src: Path, dst: Path, meta: dict[str, Any], seconds: float, *, written: bool,
            resumed_from: int = 0) -> ConvertResult:
    return ConvertResult(
        src=src, dst=dst, count=meta["count"], classes=meta["classes"], counts=meta["counts"],
        skipped=meta.get("skipped", []), encoded_bytes=meta.get("encoded_bytes", 0),
        file_bytes=dst.stat().st_size, seconds=seconds, written=written,
        resumed_from=resumed_from,
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def convert(src: str | Path, dst: str | Path, **kwargs: Any) -> list[ConvertResult]:
    """Convert SRC to DST: one tree (SRC/<class>/<files>) to the file DST (or to
    DST/<SRC name>.lmdb when DST is a directory), or SRC/train and SRC/val to
    DST/train.lmdb and DST/val.lmdb. Keyword arguments go to :func:`convert_tree`."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ConversionError(
            f"{src}: not a directory (expected SRC/<class>/<images> or SRC/train/ and SRC/val/)"
        )
    splits = find_splits(src)
    if splits is None:
        target = dst / f"{src.name}.lmdb" if dst.is_dir() else dst
        return [convert_tree(src, target, **kwargs)]
    if dst.exists() and not dst.is_dir():
        raise ConversionError(
            f"{dst}: not a directory; {src} holds train/ and val/, which become "
            f"DST/train.lmdb and DST/val.lmdb"
        )
    return [convert_tree(path, dst / f"{name}.lmdb", progress_label=name, **kwargs)
            for name, path in splits.items()]


# ------------------------------------------------------------------------- verify and info


def resolve(path: str | Path) -> list[tuple[Path, str]]:
    """The splits at ``path`` as ``(path, kind)``: an LMDB file; a tree; a directory of
    train/ and val/ trees; or a directory of .lmdb files (as ``convert`` writes)."""
    p = Path(path)
    if p.is_file():
        return [(p, "lmdb")]
    if not p.is_dir():
        raise ConversionError(f"{p}: no such file or directory")
    splits = find_splits(p)
    if splits is not None:
        return [(s, "imagefolder") for s in splits.values()]
    lmdbs = sorted(e for e in p.iterdir() if e.suffix == ".lmdb" and e.is_file())
    if lmdbs and not any(e.is_dir() for e in p.iterdir()):
        return [(f, "lmdb") for f in lmdbs]
    return [(p, "imagefolder")]


def _check_record(item: tuple[bytes, bytes]) -> tuple[bytes, Any, str | None]:
    key, value = item
    try:
        rec = parse_record(value)
    except ValueError as exc:
        return key, None, str(exc)
    try:
        decode_rgb(rec.image)
    except Exception as exc:
        return key, rec, describe_error(exc)
    return key, rec, None


def verify(path: str | Path, *, workers: int = DEFAULT_WORKERS,
           progress: ProgressFactory | None = None) -> list[Report]:
    """Decode every record (or file) at ``path``; count per class, list every bad one.

    A file that is not a complete image LMDB raises :class:`LmdbFormatError`."""
    progress = progress or _no_progress
    return [_verify_lmdb(p, workers, progress) if kind == "lmdb"
            else _verify_tree(p, workers, progress) for p, kind in resolve(path)]


def _verify_lmdb(path: Path, workers: int, progress: ProgressFactory) -> Report:
    with opened(path) as env:
        meta = check_meta(path, env)
        report = Report(path, "lmdb", meta.classes, dict.fromkeys(meta.classes, 0),
                        file_bytes=path.stat().st_size, meta=meta.raw)
        # Records are sorted by label: position i must hold the label the counts give it.
        expected = [i for i, c in enumerate(meta.classes) for _ in range(meta.counts[c])]
        with env.begin() as txn, progress(path.name, meta.count, 0) as advance:
            items = ((k, v) for k, v in txn.cursor() if k != META_KEY)
            checked = ordered_map(_check_record, items, workers)
            for i, (key, rec, error) in enumerate(checked):
                where = key.decode(errors="replace") + (f" ({rec.path})" if rec else "")
                if key != record_key(i, meta.key_digits):
                    report.bad.append((where, f"unexpected key, expected record {i}"))
                elif error is not None:
                    report.bad.append((where, error))
                elif not 0 <= rec.label < len(meta.classes):
                    report.bad.append((where, f"label {rec.label} out of range"))
                elif rec.label != expected[i]:
                    report.bad.append((where, f"label {rec.label} out of order "
                                              f"(the class counts put {expected[i]} here)"))
                if rec is not None:
                    report.encoded_bytes += len(rec.image)
                    if error is None and 0 <= rec.label < len(meta.classes):
                        report.counts[meta.classes[rec.label]] += 1
                advance(1)
    return report


def _verify_tree(path: Path, workers: int, progress: ProgressFactory) -> Report:
    classes, images = scan_tree(path)
    report = Report(path, "imagefolder", classes, dict.fromkeys(classes, 0))
    with progress(path.name, len(images), 0) as advance:
        for img, (data, error) in zip(images, ordered_map(_read_checked, images, workers),
                                      strict=True):
            if data is None:
                report.bad.append((img.path, error or "unreadable"))
            else:
                report.counts[classes[img.label]] += 1
                report.encoded_bytes += len(data)
            advance(1)
    report.file_bytes = report.encoded_bytes
    return report


def _header(data: bytes | memoryview | str) -> tuple[tuple[int, int], str, str]:
    """Size, mode and format from an image's header (bytes or a file), without decoding."""
    with Image.open(data if isinstance(data, str) else io.BytesIO(data)) as img:
        return img.size, img.mode, img.format or "?"


def info(path: str | Path, *, progress: ProgressFactory | None = None) -> list[Report]:
    """Classes, counts, image sizes, modes, formats and bytes of the splits at ``path``.

    Reads every image's header (not its pixels); unreadable ones land in ``bad``."""
    progress = progress or _no_progress
    reports = []
    for p, kind in resolve(path):
        if kind == "lmdb":
            with opened(p) as env:
                meta = check_meta(p, env)
                report = Report(p, kind, meta.classes, dict(meta.counts),
                                file_bytes=p.stat().st_size, meta=meta.raw)
                with env.begin(buffers=True) as txn, progress(p.name, meta.count, 0) as adv:
                    for key, value in txn.cursor():
                        if key == META_KEY:
                            continue
                        where = bytes(key).decode(errors="replace")
                        try:
                            rec = parse_record(value)
                            report.encoded_bytes += len(rec.image)
                            _add_header(report, _header(rec.image))
                        except Exception as exc:
                            report.bad.append((where, describe_error(exc)))
                        adv(1)
        else:
            classes, images = scan_tree(p)
            counts = Counter(classes[img.label] for img in images)
            report = Report(p, kind, classes, {c: counts[c] for c in classes})
            with progress(p.name, len(images), 0) as adv:
                for img in images:
                    report.encoded_bytes += img.size
                    try:
                        _add_header(report, _header(img.path))
                    except Exception as exc:
                        report.bad.append((img.path, describe_error(exc)))
                    adv(1)
            report.file_bytes = report.encoded_bytes
        reports.append(report)
    return reports


def _add_header(report: Report, header: tuple[tuple[int, int], str, str]) -> None:
    size, mode, fmt = header
    report.sizes[size] += 1
    report.modes[mode] += 1
    report.formats[fmt] += 1
