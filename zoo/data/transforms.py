"""Image transforms for training and evaluation, parameterised by image size.

Images arrive as uint8 tensors (:mod:`zoo.data.decode`; a PIL image is converted first),
the geometric and colour augmentation works on uint8, and conversion to float and
normalisation come last, where tensor-level tricks (random erasing) act.

The ops are ``torchvision.transforms.v2``'s, except three that the small preset and every
pipeline's ends run per image: on a 28-32 px image each v2 op costs 10-50 us of Python
dispatch, several times its arithmetic, and the pipeline ran at ~180 us an image. The
fused ops below compute the same pixels with the same random draws in the same order as
the v2 ops they replace (tests/test_data.py compares them bit for bit, random state
included), so runs made with either give identical results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from zoo.config import DataConfig

#: A trick's hook receives the uint8 augmentation ops and the float (post-normalise) ops.
TransformHook = Callable[[list[Any], list[Any]], tuple[list[Any], list[Any]]]


def train_transform(cfg: DataConfig, hook: TransformHook | None = None,
                    device_normalize: bool = False) -> v2.Compose:
    """ImageNet preset: RandomResizedCrop + flip. Small preset: pad size/8, random crop, flip.

    With ``device_normalize`` and no float ops from the tricks (``post``), the pipeline ends
    on uint8: the batch crosses to the device as bytes and is normalised there
    (:mod:`zoo.data.device`, the same arithmetic as :class:`FloatNormalize`)."""
    size = cfg.image_size
    ops: list[Any] = [ImageTensor()]
    if cfg.preset == "imagenet":
        ops.append(v2.RandomResizedCrop(size, antialias=True))
        if cfg.hflip:
            ops.append(v2.RandomHorizontalFlip())
    else:
        ops.append(PadCropFlip(size, padding=max(1, size // 8), hflip=cfg.hflip))
    post: list[Any] = []
    if hook is not None:
        ops, post = hook(ops, post)
    if device_normalize and not post:
        return v2.Compose(ops)
    return v2.Compose([*ops, FloatNormalize(cfg.mean, cfg.std), *post])


def eval_resize(cfg: DataConfig) -> int:
    """The shorter side evaluation resizes to before its centre crop."""
    return round(cfg.image_size / 0.875) if cfg.preset == "imagenet" else cfg.image_size


def eval_transform(cfg: DataConfig, device_normalize: bool = False) -> v2.Compose:
    """ImageNet preset: resize to size/0.875, centre crop. Small preset: resize to size.
    With ``device_normalize`` it ends on uint8 (see :func:`train_transform`)."""
    ops = [ImageTensor(), v2.Resize(eval_resize(cfg), antialias=True),
           v2.CenterCrop(cfg.image_size)]
    if device_normalize:
        return v2.Compose(ops)
    return v2.Compose([*ops, FloatNormalize(cfg.mean, cfg.std)])


class ImageTensor:
    """``v2.ToImage()`` for the decoder's uint8 tensors at no cost: a tensor passes as it
    is (not wrapped as a ``tv_tensors.Image``, which every later v2 op would unwrap and
    wrap again); a PIL image or an array becomes a ``(C, H, W)`` uint8 tensor as ToImage
    makes it."""

    def __call__(self, img: Any) -> torch.Tensor:
        if isinstance(img, torch.Tensor):
            return img
        return F.to_image(img).as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PadCropFlip:
    """``v2.Resize(size)``, ``v2.RandomCrop(size, padding)`` and (with ``hflip``)
    ``v2.RandomHorizontalFlip()`` in one op on a uint8 tensor: the same pixels and the
    same draws from torch's global generator (the crop's top, then its left, each only
    when the padded side exceeds ``size``; then the flip's ``torch.rand(1)``)."""

    def __init__(self, size: int, padding: int, hflip: bool = True) -> None:
        self.size, self.padding, self.hflip = size, padding, hflip

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        size, pad = self.size, self.padding
        height, width = img.shape[-2:]
        if min(height, width) != size:  # v2.Resize(size): the shorter side to size
            img = F.resize(img, [size], antialias=True)
            height, width = img.shape[-2:]
        top = int(torch.randint(0, height + 2 * pad - size + 1, size=())) \
            if height + 2 * pad > size else 0
        left = int(torch.randint(0, width + 2 * pad - size + 1, size=())) \
            if width + 2 * pad > size else 0
        # A crop reaching past the border reads zeros: RandomCrop's zero padding.
        img = F.crop(img, top - pad, left - pad, size, size)
        if self.hflip and torch.rand(1) < 0.5:
            img = img.flip(-1)
        return img

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={self.size}, padding={self.padding}, "
                f"hflip={self.hflip})")


class FloatNormalize:
    """``v2.ToDtype(torch.float32, scale=True)`` then ``v2.Normalize(mean, std)``: the
    same arithmetic (``x.float() * (1 / 255)``, minus the mean, divided by the std)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.given = (list(mean), list(std))
        self.mean = torch.as_tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(list(std), dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.dtype == torch.uint8:
            img = img.to(torch.float32).mul_(1.0 / 255)
        elif img.dtype != torch.float32:
            img = F.to_dtype(img, torch.float32, scale=True)
        else:
            img = img.clone()  # ToDtype passes float32 through; keep the input intact
        return img.sub_(self.mean).div_(self.std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.given[0]}, std={self.given[1]})"
