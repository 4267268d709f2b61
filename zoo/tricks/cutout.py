"""Cutout (DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks
with Cutout", arXiv:1708.04552).

A square of fixed side is set to zero (the data set's mean, as the transform runs after
normalisation, as in the paper) at a centre drawn uniformly over the image; the part of the
square outside the image is lost, so squares near the border erase less (paper sec. 3.2).
torchvision's ``RandomErasing`` draws the area and keeps the box inside the image, which is
Random Erasing's rule, not Cutout's; hence this small transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick


@dataclass(frozen=True)
class CutoutParams:
    #: Side of the square in pixels; or
    size: int | None = None
    #: side as a fraction of the image side (default 0.5: the paper's 16 px on CIFAR-10).
    scale: float | None = None
    #: Probability of applying it to an image (the paper: always).
    p: float = 1.0


class Cutout(v2.Transform):
    """Zero a ``size`` x ``size`` square (or ``scale`` x the image side) centred uniformly
    at random, clipped at the image border. Acts on float (normalised) images."""

    def __init__(self, size: int | None = None, scale: float | None = None, p: float = 1.0
                 ) -> None:
        super().__init__()
        self.size, self.scale, self.p = size, scale, p

    def side(self, height: int, width: int) -> int:
        if self.size is not None:
            return self.size
        return max(1, round((self.scale if self.scale is not None else 0.5) * min(height, width)))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = F.get_size(flat_inputs[0])
        if torch.rand(1).item() >= self.p:
            return {"box": None}
        side = self.side(height, width)
        cy = int(torch.randint(height, (1,)))
        cx = int(torch.randint(width, (1,)))
        y1, x1 = max(0, cy - side // 2), max(0, cx - side // 2)
        y2, x2 = min(height, cy - side // 2 + side), min(width, cx - side // 2 + side)
        return {"box": (y1, x1, y2, x2)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["box"] is None:
            return inpt
        y1, x1, y2, x2 = params["box"]
        return F.erase(inpt, y1, x1, y2 - y1, x2 - x1, torch.zeros(()))


@register_trick
class CutoutTrick(Trick):
    name = "cutout"
    paper = ("DeVries & Taylor 2017, Improved Regularization of Convolutional Neural "
             "Networks with Cutout (arXiv:1708.04552)")
    touches = ("transform",)
    Params = CutoutParams
    conflicts = ("random_erasing",)
    conflict_reason = "both erase a random rectangle of the normalised image"
    order = 70

    @classmethod
    def check(cls, params: CutoutParams) -> None:
        if params.size is not None and params.scale is not None:
            raise ConfigError("tricks.cutout: set size (pixels) or scale (fraction), not both")
        if params.size is not None and params.size < 1:
            raise ConfigError(f"tricks.cutout.size: must be at least 1, got {params.size}")
        if params.scale is not None and not 0 < params.scale <= 1:
            raise ConfigError(f"tricks.cutout.scale: must be in (0, 1], got {params.scale}")
        if not 0 < params.p <= 1:
            raise ConfigError(f"tricks.cutout.p: must be in (0, 1], got {params.p}")

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        p = self.params
        return pre, [*post, Cutout(p.size, p.scale, p.p)]

    def audit(self) -> Audit:
        p = self.params
        side = f"{p.size} px" if p.size is not None else f"{p.scale or 0.5:g} of the image side"
        return Audit(self.name, f"cutout: a square of side {side} zeroed in {p.p:.0%} of "
                                f"training images", details={"p": p.p})
