"""AutoAugment (Cubuk, Zoph, Mané, Vasudevan, Le 2019, "AutoAugment: Learning Augmentation
Strategies from Data", CVPR): one of the learned sub-policies (two operations each) per
image. torchvision ``v2.AutoAugment``, on the uint8 image after crop and flip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick

POLICY_CONFLICT = "both are automatic augmentation policies; choose one"


@dataclass(frozen=True)
class AutoAugmentParams:
    #: The policy learned on this data set.
    policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet"


@register_trick
class AutoAugment(Trick):
    name = "autoaugment"
    paper = "Cubuk et al. 2019, AutoAugment: Learning Augmentation Strategies from Data (CVPR)"
    touches = ("transform",)
    Params = AutoAugmentParams
    conflicts = ("randaugment", "trivialaugment")
    conflict_reason = POLICY_CONFLICT
    order = 65

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        from torchvision.transforms import v2

        policy = v2.AutoAugmentPolicy(self.params.policy)
        return [*pre, v2.AutoAugment(policy)], post

    def audit(self) -> Audit:
        return Audit(self.name, f"autoaugment: {self.params.policy} policy on training images")
