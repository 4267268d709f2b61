"""Cutout (DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks
with Cutout", arXiv:1708.04552).

A square of fixed side is set to zero (the data set's mean, as the transform runs after
normalisation, as in the paper) at a centre drawn uniformly over the image; the part of the
square outside the image is lost, so squares near the border erase less (paper sec. 3.2).
torchvision's ``RandomErasing`` draws the area and keeps the box inside the image, which is
Random Erasing's rule, not Cutout's; hence a small transform of its own
(:class:`zoo.tricks._ops.Cutout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        from zoo.tricks._ops import Cutout

        p = self.params
        return pre, [*post, Cutout(p.size, p.scale, p.p)]

    def audit(self) -> Audit:
        p = self.params
        side = f"{p.size} px" if p.size is not None else f"{p.scale or 0.5:g} of the image side"
        return Audit(self.name, f"cutout: a square of side {side} zeroed in {p.p:.0%} of "
                                f"training images", details={"p": p.p})
