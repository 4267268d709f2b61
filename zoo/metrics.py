"""Evaluation metrics beyond top-1, as sums that add up across processes.

Every metric here is a function of sums over the evaluated images, so a shard's sums,
all-reduced, give the metric of the whole set (each image counted once), as top-1 is:

- **NLL**: the mean cross-entropy of the true class, in nats (the evaluation's
  ``val_loss``: no label smoothing, whatever the training loss was).
- **ECE**: expected calibration error of the top label (Guo et al. 2017, "On Calibration
  of Modern Neural Networks", eq. 3), with 15 equal-width bins of the top-1 confidence
  (the softmax's largest probability): bin ``b`` holds confidences in ``[b/15, (b+1)/15)``,
  the last bin also 1.0. ECE = sum over bins of (images in bin / images) x |accuracy in bin
  - mean confidence in bin|, in % (points, like top-1). torchmetrics'
  ``MulticlassCalibrationError(n_bins=15, norm="l1")`` gives the same number whenever no
  confidence is exactly 1.0 (it puts those in a bin of their own).
- **worst-class accuracy**: the lowest per-class top-1 (%) over the classes that have
  images in the evaluated set.
- **corruption accuracy**: top-1 (%) on the evaluation images under a fixed set of common
  corruptions at five severities each (:data:`CORRUPTIONS`), and its mean over all 25
  (Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common
  Corruptions and Perturbations"; the severities are those of their CIFAR-10-C).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from zoo.distributed import all_reduce_sum

#: Equal-width confidence bins of the expected calibration error.
ECE_BINS = 15

#: The corruptions of ``eval.corruptions`` and their five severities: CIFAR-10-C's
#: parameters (Hendrycks & Dietterich 2019, ``make_cifar_c.py``), made for 32-pixel
#: images and applied as they are at any size (a blur of 1 pixel is mild at 224).
#: gaussian_noise: sigma on [0, 1] pixel values; gaussian_blur: sigma in pixels; contrast:
#: factor (torchvision's adjust_contrast); jpeg: quality; pixelate: the fraction of the
#: side kept (antialiased bilinear down, nearest back up).
CORRUPTIONS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "jpeg": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
}
#: The seed of the noise corruption's draws: the same noise for every run.
CORRUPTION_SEED = 20190328


# --------------------------------------------------------------------------- sums


@dataclass
class EvalSums:
    """Sums over the evaluated images, on the device: loss, top-1 and top-5 hits, count;
    per confidence bin: images, confidence, top-1 hits; per class: images, top-1 hits."""

    num_classes: int
    device: torch.device

    def __post_init__(self) -> None:
        self.sums = torch.zeros(4 + 3 * ECE_BINS + 2 * self.num_classes,
                                dtype=torch.float64, device=self.device)
        self._edges = torch.linspace(0, 1, ECE_BINS + 1, device=self.device)[1:-1]

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """One batch's float32 logits and targets (device ops only, no host sync)."""
        loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        topk = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = topk == targets[:, None]
        top1 = hits[:, 0].double()
        self.sums[:3] += torch.stack([loss.double(), top1.sum(), hits.any(dim=1).sum().double()])
        # The count is added as a Python number: a tensor made for it on the host would
        # be a blocking host-to-device copy per batch.
        self.sums[3] += targets.shape[0]
        confidence = logits.softmax(dim=1).amax(dim=1)
        bins = torch.bucketize(confidence, self._edges, right=True)
        b, c = 4, 4 + 3 * ECE_BINS
        for j, values in enumerate((torch.ones_like(top1), confidence.double(), top1)):
            self.sums[b + j * ECE_BINS: b + (j + 1) * ECE_BINS].index_add_(0, bins, values)
        self.sums[c: c + self.num_classes].index_add_(0, targets, torch.ones_like(top1))
        self.sums[c + self.num_classes:].index_add_(0, targets, top1)

    def metrics(self) -> dict[str, Any]:
        """All-reduce the sums over the processes (a collective: every process calls it);
        the metrics of the whole evaluated set (NaN without images)."""
        all_reduce_sum(self.sums)
        values = self.sums.tolist()  # one host sync
        loss, top1, top5, count = values[:4]
        if count == 0:
            return {"val_loss": math.nan, "top1": math.nan, "top5": math.nan,
                    "ece": math.nan, "worst_class": math.nan, "count": 0}
        b = 4 + 3 * ECE_BINS
        return {
            "val_loss": loss / count,
            "top1": 100.0 * top1 / count,
            "top5": 100.0 * top5 / count,
            "ece": calibration_error(values[4:4 + ECE_BINS], values[4 + ECE_BINS:4 + 2 * ECE_BINS],
                                     values[4 + 2 * ECE_BINS:b]),
            "worst_class": worst_class_accuracy(values[b:b + self.num_classes],
                                                values[b + self.num_classes:]),
            "count": int(count),
        }


def calibration_error(counts: list[float], confidence: list[float],
                      correct: list[float]) -> float:
    """ECE (%) from per-bin image counts, confidence sums and top-1 hit sums."""
    total = sum(counts)
    return 100.0 * sum(abs(h - c) for n, c, h in zip(counts, confidence, correct, strict=True)
                       if n > 0) / total


def worst_class_accuracy(images: list[float], correct: list[float]) -> float:
    """The lowest per-class top-1 (%) among the classes with images."""
    return min(100.0 * h / n for n, h in zip(images, correct, strict=True) if n > 0)


# --------------------------------------------------------------------------- corruptions


def corrupt(pixels: torch.Tensor, name: str, severity: int,
            generator: torch.Generator) -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` under corruption ``name`` at ``severity`` (1-5),
    as uint8; ``generator`` draws the noise of ``gaussian_noise``."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    level = CORRUPTIONS[name][severity - 1]
    side = pixels.shape[-1]
    if name == "jpeg":
        return F.jpeg(pixels, quality=int(level))
    if name == "pixelate":
        small = max(1, round(side * level))
        down = F.resize(pixels, [small, small], interpolation=InterpolationMode.BILINEAR,
                        antialias=True)
        return F.resize(down, list(pixels.shape[-2:]), interpolation=InterpolationMode.NEAREST)
    x = F.to_dtype(pixels, torch.float32, scale=True)
    if name == "gaussian_noise":
        # Drawn here, not by v2's gaussian_noise: that one draws from the global RNG,
        # which the data loader also draws its seeds from.
        x = (x + level * torch.randn(x.shape, generator=generator)).clamp_(0, 1)
    elif name == "gaussian_blur":
        x = F.gaussian_blur(x, kernel_size=2 * math.ceil(3 * level) + 1, sigma=level)
    elif name == "contrast":
        x = F.adjust_contrast(x, level)
    return F.to_dtype(x, torch.uint8, scale=True)


def corruption_transform(name: str, severity: int, rank: int
                         ) -> Callable[[Any], Any]:
    """A function of a loader batch (``HostBatch`` of uint8 pixels) that corrupts it, with
    the noise drawn from a generator seeded by the corruption, severity and process."""
    from zoo.data.device import HostBatch
    from zoo.errors import ConfigError

    index = list(CORRUPTIONS).index(name)
    generator = torch.Generator().manual_seed(CORRUPTION_SEED + 1000 * rank + 10 * index
                                              + severity)

    def transform(batch: Any) -> Any:
        if not isinstance(batch, HostBatch) or batch.pixels.dtype != torch.uint8:
            raise ConfigError("eval.corruptions: needs the evaluation batches as uint8 "
                              "images on the host (data.decode: cpu)")
        return replace(batch, pixels=corrupt(batch.pixels, name, severity, generator))

    return transform


def corruption_summary(top1: dict[tuple[str, int], float]) -> dict[str, Any]:
    """``corruption``: the mean top-1 over every (corruption, severity); ``corruptions``:
    each corruption's mean over its severities."""
    per = {name: sum(top1[(name, s)] for s in range(1, 6)) / 5 for name in CORRUPTIONS}
    return {"corruption": sum(per.values()) / len(per), "corruptions": per}
