"""Switchable Normalization (Luo, Ren, Peng, Zhang, Li 2019, "Differentiable Learning-to-
Normalize via Switchable Normalization", ICLR) in place of every BatchNorm: each layer
learns a softmax-weighted mix of batch, instance and layer statistics. Switched on through
the model option ``norm=switchnorm`` (see ``zoo/models/switchnorm.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.tricks.base import Audit, TrainContext, Trick, count_modules
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn


@register_trick
class SwitchNorm(Trick):
    name = "switchnorm"
    paper = ("Luo et al. 2019, Differentiable Learning-to-Normalize via Switchable "
             "Normalization (ICLR)")
    touches = ("model",)
    needs_options = ("norm",)
    conflicts = ("sync_bn",)
    conflict_reason = "SwitchNorm replaces every BatchNorm that sync_bn would synchronise"
    order = 24

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.counts: tuple[int, int] | None = None

    def model_options(self) -> dict[str, Any]:
        return {"norm": "switchnorm"}

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        from torch import nn

        from zoo.models.switchnorm import SwitchNorm2d

        self.counts = (count_modules(model, SwitchNorm2d),
                       count_modules(model, nn.modules.batchnorm._BatchNorm))
        return model

    def audit(self) -> Audit:
        sn, bn = self.counts or (0, 0)
        return Audit(self.name, f"switchnorm: {sn} normalisation layers are SwitchNorm, "
                                f"{bn} BatchNorm left", effective=sn > 0,
                     details={"switchnorm": sn, "batchnorm_left": bn})
