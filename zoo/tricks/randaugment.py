"""RandAugment (Cubuk, Zoph, Shlens, Le 2020, "RandAugment: Practical Automated Data
Augmentation with a Reduced Search Space", CVPR workshops): ``num_ops`` operations drawn
uniformly per image, all at one shared ``magnitude`` (of 30). torchvision
``v2.RandAugment``, on the uint8 image after crop and flip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.errors import ConfigError
from zoo.tricks.autoaugment import POLICY_CONFLICT
from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick

#: torchvision's magnitude scale: 31 bins, magnitudes 0..30.
MAX_MAGNITUDE = 30


@dataclass(frozen=True)
class RandAugmentParams:
    #: Operations applied to each image (the paper's N).
    num_ops: int = 2
    #: Their shared strength, 0 to 30 (the paper's M; 9 for ResNet-50 on ImageNet).
    magnitude: int = 9


@register_trick
class RandAugment(Trick):
    name = "randaugment"
    paper = ("Cubuk et al. 2020, RandAugment: Practical Automated Data Augmentation with a "
             "Reduced Search Space (CVPR workshops)")
    touches = ("transform",)
    Params = RandAugmentParams
    conflicts = ("autoaugment", "trivialaugment")
    conflict_reason = POLICY_CONFLICT
    order = 66

    @classmethod
    def check(cls, params: RandAugmentParams) -> None:
        if params.num_ops < 1:
            raise ConfigError(
                f"tricks.randaugment.num_ops: must be at least 1, got {params.num_ops}"
            )
        if not 0 <= params.magnitude <= MAX_MAGNITUDE:
            raise ConfigError(f"tricks.randaugment.magnitude: must be in [0, {MAX_MAGNITUDE}], "
                              f"got {params.magnitude}")

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        from torchvision.transforms import v2

        op = v2.RandAugment(num_ops=self.params.num_ops, magnitude=self.params.magnitude,
                            num_magnitude_bins=MAX_MAGNITUDE + 1)
        return [*pre, op], post

    def audit(self) -> Audit:
        p = self.params
        return Audit(self.name, f"randaugment: {p.num_ops} operations at magnitude "
                                f"{p.magnitude}/{MAX_MAGNITUDE} on training images")
