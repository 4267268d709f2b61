"""Encoded image bytes to the uint8 RGB tensor every transform pipeline starts from.

One decoder for both storage formats: the folder tree (:func:`zoo.data.datasets.rgb_loader`
reads a file's bytes and calls :func:`decode_rgb`) and the LMDB file (a record holds the
same bytes), so the two hand the transforms the same pixels by construction.

The result is what ``v2.ToImage()`` makes of ``PIL.Image.open(...).convert("RGB")``: a
``(3, H, W)`` uint8 tensor, grayscale replicated to three channels. The transforms start
with ``ToImage`` and work on tensors from there (:mod:`zoo.data.transforms`), so decoding
straight to a tensor changes no pixel downstream; it skips PIL's image object and its
conversion to a tensor, which on a 28x28 PNG cost more than the decoding itself.

Plain 8-bit grayscale or RGB PNGs (no palette, no alpha, no transparency key, not
interlaced: every PNG ``ablate data prepare`` writes, and most others) go through
TorchCodec's ``decode_png`` (torchvision's image decoders are deprecated since 0.29 in
its favour), which yields exactly PIL's pixels for them (PNG is
lossless; tests/test_data.py compares both). Everything else, JPEG included, is decoded by
PIL as before, so its conversion rules (palettes, alpha, CMYK, 16 bit) and its errors
hold unchanged; a PNG that the fast path cannot read falls back to PIL too, which then
reports the problem in its own words.
"""

from __future__ import annotations

import io
import struct

import torch
from PIL import Image
from torchcodec.decoders import decode_png
from torchvision.transforms.v2.functional import pil_to_tensor

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: After the signature: IHDR's length (13) and type, then width, height, bit depth,
#: colour type, compression, filter, interlace.
_IHDR = struct.Struct(">I4sIIBBBBB")
_GRAY, _RGB = 0, 2
_bomb_check = getattr(Image, "_decompression_bomb_check", None)


def _plain_png(data: bytes) -> bool:
    """Whether ``data`` is a PNG that decode_png reads exactly as PIL's convert("RGB")."""
    if data[:8] != _PNG_SIGNATURE or len(data) < 8 + _IHDR.size:
        return False
    length, kind, width, height, depth, colour, _, _, interlace = _IHDR.unpack_from(data, 8)
    if length != 13 or kind != b"IHDR" or depth != 8 or colour not in (_GRAY, _RGB):
        return False
    if interlace or b"tRNS" in data:  # a false tRNS hit in the pixels only costs speed
        return False
    if _bomb_check is not None:
        _bomb_check((width, height))  # the size limit Image.open enforces
    return True


def decode_rgb(data: bytes | memoryview) -> torch.Tensor:
    """Decode an image file's bytes to a ``(3, H, W)`` uint8 RGB tensor; errors are PIL's."""
    if not isinstance(data, bytes):
        data = bytes(data)
    if _plain_png(data):
        try:
            return decode_png(data, mode="RGB")
        except Exception:  # damaged: PIL says what is wrong, as for any other file
            pass
    with Image.open(io.BytesIO(data)) as img:
        return pil_to_tensor(img.convert("RGB"))
