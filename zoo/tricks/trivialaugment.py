"""TrivialAugment (Müller & Hutter 2021, "TrivialAugment: Tuning-free Yet State-of-the-Art
Data Augmentation", ICCV): one operation per image, at a magnitude drawn uniformly; the
"wide" operation ranges. torchvision ``v2.TrivialAugmentWide``, on the uint8 image after
crop and flip."""

from __future__ import annotations

from typing import Any

from zoo.tricks.autoaugment import POLICY_CONFLICT
from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick


@register_trick
class TrivialAugment(Trick):
    name = "trivialaugment"
    paper = ("Müller & Hutter 2021, TrivialAugment: Tuning-free Yet State-of-the-Art Data "
             "Augmentation (ICCV)")
    touches = ("transform",)
    conflicts = ("autoaugment", "randaugment")
    conflict_reason = POLICY_CONFLICT
    order = 67

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        from torchvision.transforms import v2

        return [*pre, v2.TrivialAugmentWide()], post

    def audit(self) -> Audit:
        return Audit(self.name, "trivialaugment: one wide-range operation per training image")
