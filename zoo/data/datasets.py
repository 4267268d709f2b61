"""Datasets the trainer reads: ImageFolder trees (LMDB files come with their own module)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from zoo.config import DataConfig
from zoo.data.decode import decode_rgb
from zoo.errors import ConfigError


def rgb_loader(path: str) -> torch.Tensor:
    """An image file as a ``(3, H, W)`` uint8 RGB tensor (grayscale replicated to three
    channels), decoded exactly as an LMDB record of the same file (:mod:`zoo.data.decode`)."""
    with open(path, "rb") as f:
        return decode_rgb(f.read())


def open_split(path: str, fmt: str, transform: Callable[[Any], Any] | None) -> Dataset:
    """One split as a map-style dataset with a ``classes`` attribute."""
    if fmt == "imagefolder":
        if not Path(path).is_dir():
            raise ConfigError(f"'{path}' is not a directory (data.format is imagefolder)")
        try:
            return ImageFolder(path, transform=transform, loader=rgb_loader)
        except (FileNotFoundError, RuntimeError) as exc:
            raise ConfigError(f"'{path}': {exc}") from None
    if fmt == "lmdb":
        from zoo.data import lmdb_dataset  # optional module, see the data issue

        return lmdb_dataset.LmdbDataset(path, transform=transform)
    raise ConfigError(f"data.format: unknown format '{fmt}' (imagefolder or lmdb)")


def build_datasets(
    cfg: DataConfig, train_tf: Callable[[Any], Any], eval_tf: Callable[[Any], Any]
) -> tuple[Dataset, Dataset, list[str]]:
    """Train and val datasets; their class lists must be identical."""
    train = open_split(cfg.train, cfg.format, train_tf)
    val = open_split(cfg.val, cfg.format, eval_tf)
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
