"""The IDX format of MNIST and Fashion-MNIST (LeCun et al.; Xiao, Rasul, Vollgraf 2017), as
a researcher's own data format: ``data.format: idx`` reads the images file of a split
(``train-images-idx3-ubyte.gz``, gzipped or not) and the labels file beside it straight,
with no conversion to PNG. Items are decoded 28x28 uint8 arrays; the zoo's standard crop,
flip, uint8 transfer and normalisation then apply as to any format.

Not in the zoo: ``imports: [examples/idx_format.py]`` in a study brings it in.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from zoo import ConfigError, register_data_format

#: IDX magic numbers: unsigned bytes, 3 dimensions (images) or 1 (labels).
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


def read_idx(path: Path, magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    found, = struct.unpack_from(">I", data)
    if found != magic:
        raise ConfigError(f"'{path}': not an IDX file of this kind (magic {found:#010x}, "
                          f"expected {magic:#010x})")
    ndim = magic & 0xFF
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@register_data_format("idx")
class IdxReader:
    """MNIST-style IDX files: a split is its images file; its labels file lies beside it
    (``images-idx3`` replaced by ``labels-idx1`` in the name)."""

    def __init__(self, path: str) -> None:
        images = Path(path)
        labels = images.with_name(images.name.replace("images-idx3", "labels-idx1"))
        if labels == images or not labels.is_file():
            raise ConfigError(f"'{path}': expected an IDX images file (*-images-idx3-ubyte"
                              f"[.gz]) with its labels file ({labels.name}) beside it")
        self.images = read_idx(images, IMAGES_MAGIC)
        self.labels = read_idx(labels, LABELS_MAGIC)
        if len(self.images) != len(self.labels):
            raise ConfigError(f"'{path}': {len(self.images)} images but {len(self.labels)} "
                              f"labels in {labels.name}")
        self.classes = [str(c) for c in range(int(self.labels.max()) + 1)]
        self.path = path

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])

    def source(self, index: int) -> str:
        return f"{self.path}[{index}]"
