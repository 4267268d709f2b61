"""Synchronised BatchNorm (Peng et al. 2018, "MegDet: A Large Mini-Batch Object Detector",
CVPR; ``torch.nn.SyncBatchNorm``): batch statistics computed over the global batch of all
processes instead of each process's share. Model surgery before DDP wraps the model
(timm's converter, which also keeps the activation of its fused BatchNormAct layers).

It does nothing at world size 1, and PyTorch synchronises only GPU tensors (on CPU the
layers stay per-process); the audit then says "no effect".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.tricks.base import Audit, TrainContext, Trick, count_modules
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn

#: Device types whose tensors SyncBatchNorm synchronises.
SYNC_DEVICES = ("cuda", "xpu", "hpu")


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """Every BatchNorm of ``model`` as a SyncBatchNorm (weights and statistics kept)."""
    import timm.layers

    return timm.layers.convert_sync_batchnorm(model)


@register_trick
class SyncBN(Trick):
    name = "sync_bn"
    paper = "Peng et al. 2018, MegDet: A Large Mini-Batch Object Detector (CVPR)"
    touches = ("model",)
    conflicts = ("switchnorm",)
    conflict_reason = "SwitchNorm replaces every BatchNorm that sync_bn would synchronise"
    order = 35

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.result: tuple[int, str] | None = None

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        from torch import nn

        n = count_modules(model, nn.modules.batchnorm._BatchNorm)
        if ctx.world_size == 1:
            self.result = (n, "at world size 1")
        elif ctx.device.type not in SYNC_DEVICES:
            self.result = (n, f"on {ctx.device.type} (PyTorch synchronises GPU tensors only)")
        elif n == 0:
            self.result = (0, "the model has no BatchNorm")
        else:
            model = convert_sync_bn(model)
            self.result = (count_modules(model, nn.SyncBatchNorm), "")
        return model

    def audit(self) -> Audit:
        if self.result is None:
            return Audit(self.name, "sync_bn: not applied", effective=False)
        n, why_not = self.result
        if why_not:
            return Audit(self.name, f"sync_bn: no effect {why_not}; {n} BatchNorm layers "
                                    "left as they are", effective=False)
        return Audit(self.name, f"sync_bn: {n} BatchNorm layers converted",
                     details={"converted": n})
