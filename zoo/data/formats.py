"""Data formats: how the images of one split are stored, by name (``data.format``).

A format is registered with :func:`register_data_format`, by the zoo for its own
(``imagefolder``, ``lmdb``) and by a plugin for its own, the same call. Most formats are a
*reader*: a class built from a split's path with

- ``classes``: the class names, in label order (train and val must agree);
- ``__len__()`` and ``__getitem__(index) -> (image, label)``, where ``image`` is the
  encoded file's ``bytes`` (PNG, JPEG, ...: decoded by the zoo's decoder, and eligible
  for ``data.decode: gpu``) or a decoded uint8 array or tensor, ``(H, W)`` grayscale,
  ``(H, W, 3)`` or ``(3, H, W)`` RGB;
- optionally ``source(index) -> str``, naming an item in error messages.

The zoo turns a reader into a dataset (:class:`zoo.data.datasets.ReaderDataset`), so the
standard decode, crop, flip, uint8 transfer and normalisation apply to every format. A
format that needs more control (LMDB opens its environment lazily in each worker) is
registered with ``dataset=True``: a class ``(path, transform=..., encoded=...)`` that is
the dataset itself.

Registering needs no torch: the zoo's own formats name their class as ``module:Class``,
imported when a split is opened, so a study is checked without importing torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from zoo.errors import UnknownNameError, defined_at, did_you_mean


@dataclass(frozen=True)
class DataFormat:
    """One registered format."""

    name: str
    #: The reader (or dataset) class, or its ``module:Class``.
    reader: Any
    #: The class is a dataset (``(path, transform=, encoded=)``), not a reader.
    dataset: bool = False
    description: str = ""

    @property
    def module(self) -> str:
        """The module that defines the format (its code is part of a run's identity)."""
        if isinstance(self.reader, str):
            return self.reader.partition(":")[0]
        return self.reader.__module__

    def load(self) -> Any:
        """The class (imports its module)."""
        if isinstance(self.reader, str):
            module, _, attr = self.reader.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.reader


_FORMATS: dict[str, DataFormat] = {}


def _where(obj: Any) -> str:
    return obj if isinstance(obj, str) else defined_at(obj)


def register_data_format(name: str, reader: Any = None, *, dataset: bool = False,
                         description: str = "") -> Any:
    """Make a storage format available as ``data.format: NAME``.

    Use as a class decorator (``@register_data_format("idx")``) or call it with the class
    or its ``module:Class``. A name registered by another definition is an error naming
    both; the same class registered again (its module imported anew) replaces itself.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"data format name {name!r}: give a Python identifier, e.g. 'idx'")

    def add(obj: Any) -> Any:
        if not isinstance(obj, str) and not isinstance(obj, type):
            raise TypeError(f"data format '{name}': register a class (a reader), got "
                            f"{obj!r}")
        old = _FORMATS.get(name)
        if old is not None and _key(old.reader) != _key(obj):
            raise ValueError(f"data format '{name}' is defined twice: {_where(old.reader)} "
                             f"and {_where(obj)}; rename one")
        _FORMATS[name] = DataFormat(name, obj, dataset, description or _doc(obj))
        return obj

    return add if reader is None else add(reader)


def _key(obj: Any) -> str:
    return obj if isinstance(obj, str) else f"{obj.__module__}:{obj.__qualname__}"


def _doc(obj: Any) -> str:
    doc = "" if isinstance(obj, str) else (obj.__doc__ or "")
    return " ".join(doc.strip().split("\n\n")[0].split())


def get_data_format(name: str) -> DataFormat:
    try:
        return _FORMATS[name]
    except KeyError:
        raise UnknownNameError(
            f"data.format: unknown format '{name}'{did_you_mean(name, _FORMATS)} (known: "
            f"{', '.join(sorted(_FORMATS))}; a plugin's comes with imports:)") from None


def list_data_formats() -> list[str]:
    return sorted(_FORMATS)


register_data_format("imagefolder", "zoo.data.datasets:FolderReader",
                     description="a directory per class of image files (torchvision's "
                                 "ImageFolder layout)")
register_data_format("lmdb", "zoo.data.lmdb_dataset:LmdbDataset", dataset=True,
                     description="one LMDB file per split, written by 'ablate data to-lmdb' "
                                 "(docs/lmdb.md)")
