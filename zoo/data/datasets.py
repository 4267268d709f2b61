"""Datasets the trainer reads: any registered data format (:mod:`zoo.data.formats`) opened
as a dataset; the ImageFolder tree's reader (LMDB files come with their own module)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from zoo.config import DataConfig
from zoo.data.decode import Encoded, bad_image, decode_rgb
from zoo.data.formats import get_data_format
from zoo.errors import ConfigError


def rgb_loader(path: str) -> torch.Tensor:
    """An image file as a ``(3, H, W)`` uint8 RGB tensor (grayscale replicated to three
    channels), decoded exactly as an LMDB record of the same file (:mod:`zoo.data.decode`).
    A file that does not decode raises :class:`BadImageError` naming it."""
    try:
        with open(path, "rb") as f:
            return decode_rgb(f.read())
    except Exception as exc:  # PIL raises many types for a bad file
        raise bad_image(path, exc) from None


def bytes_loader(path: str) -> Encoded:
    """An image file's bytes, for the ``gpu`` decode path (decoded on the device)."""
    try:
        with open(path, "rb") as f:
            return Encoded(f.read(), path)
    except OSError as exc:
        raise bad_image(path, exc) from None


class FolderReader:
    """A directory per class of image files (torchvision's ImageFolder layout): items are
    the files' bytes, in ImageFolder's order."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_dir():
            raise ConfigError(f"'{path}' is not a directory (data.format is imagefolder)")
        try:
            # ImageFolder's own walk and order; the loader is never called.
            folder = ImageFolder(path, loader=str)
        except (FileNotFoundError, RuntimeError) as exc:
            raise ConfigError(f"'{path}': {exc}") from None
        self.classes: list[str] = folder.classes
        self.samples: list[tuple[str, int]] = folder.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        path, label = self.samples[index]
        try:
            with open(path, "rb") as f:
                return f.read(), label
        except OSError as exc:
            raise bad_image(path, exc) from None

    def source(self, index: int) -> str:
        return self.samples[index][0]


def _as_rgb(image: Any) -> torch.Tensor:
    """A decoded reader item as the ``(3, H, W)`` uint8 tensor the transforms start from."""
    # A copy: a reader's array may be a read-only view of its file (np.frombuffer).
    tensor = image if isinstance(image, torch.Tensor) else torch.tensor(np.asarray(image))
    if tensor.dtype != torch.uint8:
        raise ConfigError(f"a data format's decoded image must be uint8, got {tensor.dtype}")
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    elif tensor.ndim == 3 and tensor.shape[-1] in (1, 3) and tensor.shape[0] not in (1, 3):
        tensor = tensor.permute(2, 0, 1)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ConfigError(f"a data format's decoded image must be (H, W), (H, W, 3) or "
                          f"(3, H, W), got shape {tuple(tensor.shape)}")
    return tensor.expand(3, -1, -1).contiguous()


class ReaderDataset(Dataset):
    """A format's reader as the trainer's dataset: encoded bytes are decoded by the zoo's
    decoder (or handed over as :class:`Encoded` for the device decode path), decoded
    arrays become uint8 RGB tensors, then ``transform`` applies."""

    def __init__(self, reader: Any, transform: Callable[[Any], Any] | None,
                 encoded: bool = False) -> None:
        self.reader = reader
        self.classes = list(reader.classes)
        self.transform = transform
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.reader)

    def _source(self, index: int) -> str:
        source = getattr(self.reader, "source", None)
        return source(index) if source is not None else f"item {index}"

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.reader[index]
        if isinstance(image, (bytes, bytearray, memoryview)):
            if self.encoded:
                image = Encoded(bytes(image), self._source(index))
            else:
                try:
                    image = decode_rgb(image)
                except Exception as exc:  # PIL raises many types for a bad file
                    raise bad_image(self._source(index), exc) from None
        elif self.encoded:
            raise ConfigError("data.decode: gpu needs encoded images; this data format "
                              "yields decoded arrays, so set data.decode: cpu")
        else:
            image = _as_rgb(image)
        return (self.transform(image) if self.transform else image), int(label)


def open_split(path: str, fmt: str, transform: Callable[[Any], Any] | None,
               encoded: bool = False) -> Dataset:
    """One split of data format ``fmt`` as a map-style dataset with a ``classes``
    attribute; with ``encoded`` its items are :class:`Encoded` bytes instead of decoded
    images."""
    data_format = get_data_format(fmt)
    cls = data_format.load()
    if data_format.dataset:
        return cls(path, transform=transform, encoded=encoded)
    return ReaderDataset(cls(path), transform, encoded)


def build_datasets(
    cfg: DataConfig, train_tf: Callable[[Any], Any], eval_tf: Callable[[Any], Any],
    encoded: bool = False,
) -> tuple[Dataset, Dataset, list[str]]:
    """Train and val datasets; their class lists must be identical."""
    train = open_split(cfg.train, cfg.format, train_tf, encoded)
    val = open_split(cfg.val, cfg.format, eval_tf, encoded)
    tc, vc = list(train.classes), list(val.classes)  # type: ignore[attr-defined]
    if tc != vc:
        only_train = sorted(set(tc) - set(vc))
        only_val = sorted(set(vc) - set(tc))
        raise ConfigError(
            f"data.train and data.val have different classes: only in train {only_train}, "
            f"only in val {only_val}"
            + ("" if only_train or only_val else " (same names, different order)")
        )
    return train, val, tc
