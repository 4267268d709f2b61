"""Octave convolution (Chen et al. 2019, "Drop an Octave: Reducing Spatial Redundancy in
Convolutional Neural Networks with Octave Convolution", ICCV): selects the OctConv version
of the model (``resnet50`` -> ``oct_resnet50``, see ``zoo/models/oct_resnet.py``), with the
share ``alpha`` of low-frequency channels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.errors import ConfigError
from zoo.tricks._select import ModelSelector
from zoo.tricks.base import Audit
from zoo.tricks.registry import register_trick


@dataclass(frozen=True)
class OctConvParams:
    #: Share of the channels stored at half resolution (the paper's best: 0.125).
    alpha: float = 0.125


@register_trick
class OctConv(ModelSelector):
    name = "octconv"
    paper = ("Chen et al. 2019, Drop an Octave: Reducing Spatial Redundancy in Convolutional "
             "Neural Networks with Octave Convolution (ICCV)")
    Params = OctConvParams
    conflicts = ("lip", "preactivation", "deformable_conv")
    variants = (("resnet50", "oct_resnet50"),)
    what = "OctConv version"

    @classmethod
    def check(cls, params: OctConvParams) -> None:
        if not 0 < params.alpha < 1:
            raise ConfigError(f"tricks.octconv.alpha: must be in (0, 1), got {params.alpha}")

    def model_options(self) -> dict[str, Any]:
        return {"alpha": self.params.alpha}

    def audit(self) -> Audit:
        base = super().audit()
        base.summary += f" (alpha {self.params.alpha})"
        return base
