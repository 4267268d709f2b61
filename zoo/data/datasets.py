"""Datasets the trainer reads: ImageFolder trees (LMDB files come with their own module)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from zoo.config import DataConfig
from zoo.data.decode import Encoded, bad_image, decode_rgb
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


def open_split(path: str, fmt: str, transform: Callable[[Any], Any] | None,
               encoded: bool = False) -> Dataset:
    """One split as a map-style dataset with a ``classes`` attribute; with ``encoded``
    its items are :class:`Encoded` bytes instead of decoded images."""
    if fmt == "imagefolder":
        if not Path(path).is_dir():
            raise ConfigError(f"'{path}' is not a directory (data.format is imagefolder)")
        try:
            return ImageFolder(path, transform=transform,
                               loader=bytes_loader if encoded else rgb_loader)
        except (FileNotFoundError, RuntimeError) as exc:
            raise ConfigError(f"'{path}': {exc}") from None
    if fmt == "lmdb":
        from zoo.data import lmdb_dataset  # optional module, see the data issue

        return lmdb_dataset.LmdbDataset(path, transform=transform, encoded=encoded)
    raise ConfigError(f"data.format: unknown format '{fmt}' (imagefolder or lmdb)")


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
