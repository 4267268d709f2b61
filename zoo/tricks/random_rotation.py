"""Random rotation of training images by an angle uniform in [-degrees, degrees], one of
the affine distortions of Simard, Steinkraus, Platt 2003 (torchvision ``v2.RandomRotation``,
on the uint8 image after crop and flip; the corners fill with black)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick


@dataclass(frozen=True)
class RandomRotationParams:
    #: Largest rotation either way, in degrees.
    degrees: float = 15.0


@register_trick
class RandomRotation(Trick):
    name = "random_rotation"
    paper = ("Simard, Steinkraus, Platt 2003, Best Practices for Convolutional Neural "
             "Networks Applied to Visual Document Analysis (ICDAR)")
    touches = ("transform",)
    Params = RandomRotationParams
    order = 64

    @classmethod
    def check(cls, params: RandomRotationParams) -> None:
        if not 0 < params.degrees <= 180:
            raise ConfigError(
                f"tricks.random_rotation.degrees: must be in (0, 180], got {params.degrees}"
            )

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        from torchvision.transforms import v2

        return [*pre, v2.RandomRotation(self.params.degrees)], post

    def audit(self) -> Audit:
        d = self.params.degrees
        return Audit(self.name, f"random_rotation: training images rotated by up to ±{d:g}°")
