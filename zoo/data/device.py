"""The batch's last stage: from the loader's host batch to the model's input on the device.

Loader workers hand over one of two host batches (made by :class:`Collate`):

- :class:`HostBatch` (``data.decode: cpu``): decoded, cropped, flipped images as a uint8
  ``(N, 3, H, W)`` tensor. It crosses shared memory, pinned memory and PCIe as bytes, a
  quarter of float32's, and :func:`to_device` normalises it on the device:
  ``x.float() * (1 / 255)``, minus the mean, over the std, the arithmetic of
  :class:`zoo.data.transforms.FloatNormalize` (so the same pixels, bit for bit in fp32:
  tests/test_pipeline.py), then cast to the autocast dtype and channels_last. When a trick
  adds float ops after normalisation (cutout, random erasing), the workers normalise as
  before and the batch is float32.
- :class:`EncodedBatch` (``data.decode: gpu``): the images' encoded bytes in one tensor,
  with each training image's crop box and flip drawn in the worker by
  :class:`DrawCrop` from the worker's seeded RNG, in the same order and with the same
  draws as ``v2.RandomResizedCrop`` + ``v2.RandomHorizontalFlip`` of the ``cpu`` path.
  :func:`to_device` decodes the JPEGs in one batched call (``torchvision.io.decode_jpeg``
  with ``device="cuda"``: nvJPEG; TorchCodec's or torchvision's libjpeg-turbo on the CPU,
  which is how the tests run it), crops, resizes (antialiased bilinear), flips, stacks and
  normalises on the device. Other formats and JPEGs in CMYK decode through
  :func:`zoo.data.decode.decode_rgb` on the host.

Bad images: on the ``cpu`` path the worker raises :class:`zoo.data.decode.BadImageError`
(naming the file or LMDB record and the fix), or with ``data.skip_bad`` leaves the image
out of its batch; on the ``gpu`` path :func:`to_device` does the same. Skipped images are
counted in :data:`BAD_IMAGES`, whose :meth:`BadImageLog.audit` the trainer reports.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.utils.data import default_collate
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from zoo.data.decode import BadImageError, Encoded, bad_image, decode_rgb, is_jpeg
from zoo.data.lmdb_dataset import BadRecordError

#: The errors a bad image raises while it is read or decoded.
BAD_IMAGE_ERRORS = (BadImageError, BadRecordError)


# --------------------------------------------------------------------------- bad images


@dataclass
class BadImageLog:
    """Images skipped under ``data.skip_bad`` in this process (kept across a resume
    through :meth:`state_dict`)."""

    count: int = 0
    #: The first few errors, for the audit.
    examples: list[str] = field(default_factory=list)
    keep: int = 5

    def record(self, errors: Sequence[str]) -> None:
        self.count += len(errors)
        self.examples.extend(errors[: max(0, self.keep - len(self.examples))])

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "examples": list(self.examples)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.examples = int(state["count"]), list(state["examples"])

    def reset(self) -> None:
        self.count, self.examples = 0, []

    def audit(self) -> dict[str, Any]:
        """``{"trick": "skip_bad", ...}`` in the shape of a trick's audit entry."""
        return {"trick": "data.skip_bad",
                "summary": f"data.skip_bad: {self.count} bad images skipped",
                "effective": self.count > 0,
                "details": {"skipped": self.count, "examples": list(self.examples)}}


#: This process's skipped images (the main process's: the batches carry the workers').
BAD_IMAGES = BadImageLog()


@dataclass(frozen=True)
class Skipped:
    """A sample left out under ``data.skip_bad``: the error that named it."""

    error: str


class SkipBad(torch.utils.data.Dataset):
    """A dataset whose bad images become :class:`Skipped` samples instead of errors."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.dataset[key]
        except BAD_IMAGE_ERRORS as exc:
            return Skipped(str(exc)), -1

    def __getattr__(self, name: str) -> Any:  # classes, targets, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


# --------------------------------------------------------------------------- host batches


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class HostBatch:
    """Decoded images (uint8, or float32 when normalised in the workers)."""

    pixels: torch.Tensor
    norm: Normalization
    skipped: tuple[str, ...] = ()

    def pin_memory(self) -> HostBatch:  # called by the DataLoader's pin-memory thread
        return replace(self, pixels=self.pixels.pin_memory())

    def __len__(self) -> int:
        return self.pixels.shape[0]


@dataclass
class EncodedSample:
    """One image for the ``gpu`` path: its bytes and what to do with them."""

    data: torch.Tensor  # 1-D uint8
    box: tuple[int, int, int, int] | None  # top, left, height, width; None: evaluation
    flip: bool
    fast: bool  # a JPEG the device decoder reads like PIL (YCbCr or grayscale)
    source: str


@dataclass
class EncodedBatch:
    """A batch for the ``gpu`` path: every image's bytes in one tensor (one shared-memory
    transfer, not one per image), offsets, and the per-image crop boxes and flips."""

    blob: torch.Tensor
    offsets: list[int]
    boxes: list[tuple[int, int, int, int] | None]
    flips: list[bool]
    fast: list[bool]
    sources: list[str]
    size: int
    resize: int  # evaluation's shorter side before the centre crop
    norm: Normalization
    skipped: tuple[str, ...] = ()
    #: ``data.skip_bad``: an image that fails to decode here is skipped, not an error.
    skip_bad: bool = False

    def pin_memory(self) -> EncodedBatch:
        return self  # decoders read host memory; nothing to copy

    def __len__(self) -> int:
        return len(self.sources)

    def encoded(self, i: int) -> torch.Tensor:
        return self.blob[self.offsets[i]: self.offsets[i + 1]]


class DrawCrop:
    """The ``gpu`` path's worker op: from :class:`Encoded` bytes to an
    :class:`EncodedSample` with the crop box and flip drawn as ``v2.RandomResizedCrop``
    and ``v2.RandomHorizontalFlip`` draw them (the same calls on the worker's global RNG,
    in the same order), from the image size in the header; no pixel is decoded."""

    def __init__(self, size: int, train: bool, hflip: bool = True) -> None:
        self.train, self.hflip = train, hflip
        self.crop = v2.RandomResizedCrop(size, antialias=True)

    def __call__(self, item: Encoded) -> EncodedSample:
        from PIL import Image

        data, source = item
        try:
            import io

            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                fast = img.format == "JPEG" and img.mode in ("RGB", "L")
        except Exception as exc:  # PIL raises many types for a bad file
            raise bad_image(source, exc) from None
        box, flip = None, False
        if self.train:
            # An expanded 0-d tensor has the image's shape and no storage: make_params
            # reads only the size.
            params = self.crop.make_params([torch.empty(()).expand(3, height, width)])
            box = (params["top"], params["left"], params["height"], params["width"])
            flip = self.hflip and bool(torch.rand(1) < 0.5)  # v2.RandomHorizontalFlip(0.5)
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return EncodedSample(tensor, box, flip, fast, source)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.crop.size}, train={self.train})"


class Collate:
    """The loader's ``collate_fn``: ``(HostBatch | EncodedBatch, targets)``; skipped
    samples are left out and their errors travel with the batch."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: int,
                 resize: int, skip_bad: bool = False) -> None:
        self.norm = Normalization(tuple(mean), tuple(std))
        self.size, self.resize, self.skip_bad = size, resize, skip_bad

    def __call__(self, samples: list[tuple[Any, int]]) -> tuple[Any, torch.Tensor]:
        skipped = tuple(s.error for s, _ in samples if isinstance(s, Skipped))
        if skipped:
            samples = [s for s in samples if not isinstance(s[0], Skipped)]
        images = [s for s, _ in samples]
        targets = torch.tensor([t for _, t in samples], dtype=torch.int64)
        if images and isinstance(images[0], EncodedSample):
            offsets = [0]
            for s in images:
                offsets.append(offsets[-1] + s.data.numel())
            blob = torch.cat([s.data for s in images]) if images else torch.empty(0)
            return EncodedBatch(
                blob, offsets, [s.box for s in images], [s.flip for s in images],
                [s.fast for s in images], [s.source for s in images], self.size,
                self.resize, self.norm, skipped, self.skip_bad), targets
        # default_collate stacks into shared memory in a worker: no copy on the way out.
        pixels = default_collate(images) if images else torch.empty(0, 3, self.size,
                                                                    self.size, dtype=torch.uint8)
        return HostBatch(pixels, self.norm, skipped), targets


# --------------------------------------------------------------------------- device stage


@functools.lru_cache(maxsize=16)
def _stats(norm: Normalization, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Cached: a new tensor per batch would be a host-to-device copy (a sync) per batch.
    mean = torch.tensor(norm.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return mean, std


def normalize(pixels: torch.Tensor, norm: Normalization, dtype: torch.dtype | None = None
              ) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` to normalised float: FloatNormalize's arithmetic in float32,
    then ``dtype`` (the autocast dtype) if given; the memory format is kept."""
    mean, std = _stats(norm, pixels.device)
    x = pixels.to(torch.float32).mul_(1.0 / 255).sub_(mean).div_(std)
    return x if dtype is None or dtype == torch.float32 else x.to(dtype)


def _device_decoder(device: torch.device) -> Any:
    """Batched JPEG decoding on ``device``: torchvision's (nvJPEG on CUDA; the GPU image has
    it) when CUDA, else TorchCodec's or torchvision's libjpeg-turbo on the CPU."""
    if device.type == "cpu":
        from zoo.data.decode import decode_jpeg

        return lambda tensors: [decode_jpeg(t, mode="RGB") for t in tensors]
    from torchvision.io import ImageReadMode, decode_jpeg

    return lambda tensors: decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)


def decode_batch(batch: EncodedBatch, device: torch.device
                 ) -> tuple[list[torch.Tensor | None], list[str]]:
    """Every image of ``batch`` as a ``(3, H, W)`` uint8 tensor on ``device`` (None for a
    bad one), and the errors of the bad ones (naming each image)."""
    n = len(batch)
    images: list[torch.Tensor | None] = [None] * n
    fast = [i for i in range(n) if batch.fast[i] and is_jpeg(batch.encoded(i)[:3].numpy())]
    decode = _device_decoder(device)
    try:
        for i, img in zip(fast, decode([batch.encoded(i) for i in fast]), strict=True):
            images[i] = img
    except RuntimeError:  # one bad file fails the batched call: decode one by one
        for i in fast:
            with contextlib.suppress(RuntimeError):  # PIL below says what is wrong
                images[i] = decode([batch.encoded(i)])[0]
    errors = []
    for i in range(n):
        if images[i] is None:
            try:
                images[i] = decode_rgb(batch.encoded(i).numpy().tobytes()).to(device)
            except Exception as exc:
                errors.append(str(bad_image(batch.sources[i], exc)))
    return images, errors


def crop_batch(batch: EncodedBatch, images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Crop, resize and flip each image as the ``cpu`` path's ops do (training: the drawn
    box resized to ``size`` with antialiasing, then the flip; evaluation: shorter side to
    ``resize``, centre crop ``size``) and stack them."""
    out = []
    for img, box, flip in zip(images, batch.boxes, batch.flips, strict=True):
        if box is None:
            x = F.center_crop(F.resize(img, [batch.resize], antialias=True), [batch.size])
        else:
            x = F.resized_crop(img, *box, [batch.size, batch.size], antialias=True)
            if flip:
                x = x.flip(-1)
        out.append(x)
    return torch.stack(out)


def to_device(images: Any, targets: torch.Tensor, device: torch.device,
              dtype: torch.dtype | None = None, channels_last: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch as the model's input on ``device``: decoded (``gpu`` path),
    normalised (uint8 batches) in float32 then cast to ``dtype``, channels_last if asked.

    Plain tensors (float images from anything else) are moved as they are."""
    non_blocking = device.type == "cuda"
    norm = getattr(images, "norm", None)
    if isinstance(images, EncodedBatch):
        decoded, errors = decode_batch(images, device)
        if errors and not images.skip_bad:
            raise BadImageError(errors[0])
        BAD_IMAGES.record(images.skipped + tuple(errors))
        if errors:
            keep = [i for i, img in enumerate(decoded) if img is not None]
            images = replace(images, boxes=[images.boxes[i] for i in keep],
                             flips=[images.flips[i] for i in keep])
            targets = targets[keep]
            decoded = [decoded[i] for i in keep]
        x = crop_batch(images, decoded)  # type: ignore[arg-type]
    elif isinstance(images, HostBatch):
        if images.skipped:
            BAD_IMAGES.record(images.skipped)
        x = images.pixels.to(device, non_blocking=non_blocking)
    else:
        x = images.to(device, non_blocking=non_blocking)
    targets = targets.to(device, non_blocking=non_blocking)
    if channels_last:  # on uint8 first: a quarter of the bytes to reorder
        x = x.contiguous(memory_format=torch.channels_last)
    if norm is not None and x.dtype == torch.uint8:
        x = normalize(x, norm, dtype)
    return x, targets

