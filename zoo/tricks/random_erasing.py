"""Random Erasing (Zhong, Zheng, Kang, Li, Yang 2020, "Random Erasing Data Augmentation",
AAAI).

With probability ``p`` a rectangle of area ``uniform(scale) * H * W`` and aspect ratio
log-uniform in ``ratio`` is placed inside the image and filled with random values
(``value: random``, normal noise on the normalised image) or zeros. torchvision
``v2.RandomErasing``, after normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick


@dataclass(frozen=True)
class RandomErasingParams:
    #: Probability of erasing an image (timm's common 0.25; the paper 0.5).
    p: float = 0.25
    #: Range of the erased area as a fraction of the image (paper: 0.02 to 0.4).
    scale: tuple[float, float] = (0.02, 0.33)
    #: Range of the rectangle's aspect ratio (paper: 0.3 to 1/0.3).
    ratio: tuple[float, float] = (0.3, 3.3)
    #: ``random``: normal noise per pixel (the paper's random values); ``zero``: the mean.
    value: Literal["random", "zero"] = "random"


@register_trick
class RandomErasing(Trick):
    name = "random_erasing"
    paper = "Zhong et al. 2020, Random Erasing Data Augmentation (AAAI)"
    touches = ("transform",)
    Params = RandomErasingParams
    conflicts = ("cutout",)
    conflict_reason = "both erase a random rectangle of the normalised image"
    order = 71

    @classmethod
    def check(cls, params: RandomErasingParams) -> None:
        if not 0 < params.p <= 1:
            raise ConfigError(f"tricks.random_erasing.p: must be in (0, 1], got {params.p}")
        lo, hi = params.scale
        if not 0 < lo <= hi < 1:
            raise ConfigError("tricks.random_erasing.scale: must be [min, max] with "
                              f"0 < min <= max < 1, got {list(params.scale)}")
        lo, hi = params.ratio
        if not 0 < lo <= hi:
            raise ConfigError("tricks.random_erasing.ratio: must be [min, max] with "
                              f"0 < min <= max, got {list(params.ratio)}")

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        from torchvision.transforms import v2

        p = self.params
        value: float | str = "random" if p.value == "random" else 0.0
        op = v2.RandomErasing(p=p.p, scale=p.scale, ratio=p.ratio, value=value)  # type: ignore[arg-type]
        return pre, [*post, op]

    def audit(self) -> Audit:
        p = self.params
        return Audit(self.name, f"random_erasing: {p.p:.0%} of training images, "
                                f"{p.scale[0]:g}-{p.scale[1]:g} of the area, {p.value} fill",
                     details={"p": p.p})
