"""Encoded image bytes to the uint8 RGB tensor every transform pipeline starts from.

One decoder for both storage formats: the folder tree (:func:`zoo.data.datasets.rgb_loader`
reads a file's bytes and calls :func:`decode_rgb`) and the LMDB file (a record holds the
same bytes), so the two hand the transforms the same pixels by construction.

The result is what ``v2.ToImage()`` makes of ``PIL.Image.open(...).convert("RGB")``: a
``(3, H, W)`` uint8 tensor, grayscale replicated to three channels. The transforms start
with ``ToImage`` and work on tensors from there (:mod:`zoo.data.transforms`), so decoding
straight to a tensor changes no pixel downstream; it skips PIL's image object and its
conversion to a tensor, which on a 28x28 PNG cost more than the decoding itself.

Baseline and progressive JPEGs in YCbCr or grayscale (every ImageNet JPEG but 22 CMYK ones)
go through TorchCodec's ``decode_jpeg``: libjpeg-turbo with PIL's settings, the same pixels
(tests/test_data.py compares them) at 0.5 ms instead of 0.7 ms for a 500x375 photo. PIL
reads the header first (15 us: it says the colour mode and enforces the size limit);
CMYK and anything else go to PIL.

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
from typing import NamedTuple

import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from zoo.errors import ZooError

try:
    from torchcodec.decoders import decode_jpeg, decode_png
except ImportError:  # an image without TorchCodec (the GPU machine's): the same libraries
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_jpeg as _tv_jpeg
    from torchvision.io import decode_png as _tv_png

    def decode_png(data: bytes | torch.Tensor, mode: str = "RGB") -> torch.Tensor:  # type: ignore[misc]
        if not isinstance(data, torch.Tensor):
            data = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return _tv_png(data, mode=ImageReadMode.RGB)

    def decode_jpeg(data: torch.Tensor, mode: str = "RGB") -> torch.Tensor:  # type: ignore[misc]
        return _tv_jpeg(data, mode=ImageReadMode.RGB)

#: What a bad image's error says to do about it.
BAD_IMAGE_FIX = ("replace or remove the file (or the LMDB's source image, then convert "
                 "again), or set data.skip_bad: true to skip and count bad images")


class BadImageError(ZooError):
    """An image that cannot be read or decoded; the message names it and the fix."""

    retryable = False


class Encoded(NamedTuple):
    """An image file's bytes, not yet decoded, and where they came from (for errors)."""

    data: bytes
    source: str


def bad_image(source: str, exc: BaseException) -> BadImageError:
    """The error for an image that failed: its path (or LMDB key), the reason, the fix."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return BadImageError(f"bad image '{source}': {reason}; {BAD_IMAGE_FIX}")


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


_JPEG_SIGNATURE = b"\xff\xd8\xff"
#: JPEG colour modes whose RGB conversion TorchCodec and PIL do alike.
_FAST_JPEG_MODES = ("RGB", "L")


def is_jpeg(data: bytes | memoryview) -> bool:
    """Whether the bytes start like a JPEG file (SOI marker)."""
    return bytes(data[:3]) == _JPEG_SIGNATURE


def image_size(data: bytes | memoryview) -> tuple[int, int]:
    """``(height, width)`` of an encoded image from its header alone (PIL opens it lazily,
    about 15 us, and applies its decompression-bomb limit); errors are PIL's."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
    return height, width


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
        if img.format == "JPEG" and img.mode in _FAST_JPEG_MODES:
            try:
                # bytearray: a writable buffer, so torch.frombuffer does not warn.
                return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                   mode="RGB")
            except Exception:  # truncated or damaged: PIL's decoder names the problem
                pass
        return pil_to_tensor(img.convert("RGB"))
