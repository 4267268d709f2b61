"""Image transforms for training and evaluation, parameterised by image size.

Built with ``torchvision.transforms.v2``: images are decoded to uint8 tensors first, the
geometric and colour augmentation works on uint8, and conversion to float and
normalisation come last, where tensor-level tricks (random erasing) act.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from zoo.config import DataConfig

#: A trick's hook receives the uint8 augmentation ops and the float (post-normalise) ops.
TransformHook = Callable[[list[v2.Transform], list[v2.Transform]],
                         tuple[list[v2.Transform], list[v2.Transform]]]


def train_transform(cfg: DataConfig, hook: TransformHook | None = None) -> v2.Compose:
    """ImageNet preset: RandomResizedCrop + flip. Small preset: pad size/8, random crop, flip."""
    size = cfg.image_size
    ops: list[v2.Transform] = [v2.ToImage()]
    if cfg.preset == "imagenet":
        ops.append(v2.RandomResizedCrop(size, antialias=True))
    else:
        ops += [v2.Resize(size, antialias=True), v2.RandomCrop(size, padding=max(1, size // 8))]
    if cfg.hflip:
        ops.append(v2.RandomHorizontalFlip())
    post: list[v2.Transform] = []
    if hook is not None:
        ops, post = hook(ops, post)
    return v2.Compose([*ops, *_to_float(cfg), *post])


def eval_transform(cfg: DataConfig) -> v2.Compose:
    """ImageNet preset: resize to size/0.875, centre crop. Small preset: resize to size."""
    size = cfg.image_size
    ops: list[v2.Transform] = [v2.ToImage()]
    if cfg.preset == "imagenet":
        ops += [v2.Resize(round(size / 0.875), antialias=True), v2.CenterCrop(size)]
    else:
        ops += [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    return v2.Compose([*ops, *_to_float(cfg)])


def _to_float(cfg: DataConfig) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))]
