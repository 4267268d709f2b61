"""Deformable convolution v2 (Zhu, Hu, Lin, Dai 2019, "Deformable ConvNets v2: More
Deformable, Better Results", CVPR) on every 3x3 convolution of the residual blocks of
ResNet stages 3-5 (conv3_x to conv5_x, the paper's setting; ``layer2``-``layer4`` in
torchvision's naming).

Each such convolution becomes a modulated deformable one (``torchvision.ops.DeformConv2d``)
keeping its weights; a plain convolution with the same kernel, stride and padding predicts,
per output position, the 2·k·k sampling offsets and k·k modulation scalars. That predictor
starts at zero: offsets 0 and modulation ``2·sigmoid(0) = 1``, so the network starts as
exactly the one it replaced. (The paper's modulation is ``sigmoid`` in [0, 1] and starts at
0.5; the factor 2 keeps the start identical, the range is then [0, 2].)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.ops import DeformConv2d

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, TrainContext, Trick
from zoo.tricks.registry import register_trick

#: Models whose residual blocks in stages 3-5 hold 3x3 convolutions ``conv1``-``conv3``:
#: torchvision-layout ResNets (``layer2``-``layer4``) and timm's ResNetV2 (``stages[1:4]``).
SUPPORTED = ("resnet18", "resnet50", "resnet101", "resnext50_32x4d", "resnet50v2",
             "resnet101v2", "lip_resnet50")


class ModulatedDeformConv2d(DeformConv2d):
    """DCNv2: a deformable convolution whose offsets and modulation are predicted from its
    input by a zero-initialised convolution (see the module docstring)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride, padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation, groups=conv.groups,  # type: ignore[arg-type]
            bias=conv.bias is not None,
        )
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None and self.bias is not None:
                self.bias.copy_(conv.bias)
        kh, kw = self.kernel_size
        self.offset_mask = nn.Conv2d(
            conv.in_channels, 3 * kh * kw, conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride, padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation,  # type: ignore[arg-type]
        )
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        dy_dx_m = self.offset_mask(x)
        kk = self.kernel_size[0] * self.kernel_size[1]
        # NaN offsets (a diverged run) make torchvision's CPU kernel index out of bounds and
        # crash the process; as zeros the run fails with its non-finite loss instead.
        offset = torch.nan_to_num(dy_dx_m[:, : 2 * kk], nan=0.0)
        mask = 2.0 * torch.sigmoid(dy_dx_m[:, 2 * kk:])
        return super().forward(x, offset, mask)


def _stages(model: nn.Module) -> list[nn.Module]:
    """Stages 3-5 of a ResNet: ``layer2``-``layer4`` or timm's ``stages[1:4]``."""
    if all(hasattr(model, f"layer{i}") for i in (2, 3, 4)):
        return [getattr(model, f"layer{i}") for i in (2, 3, 4)]
    stages = getattr(model, "stages", None)
    if isinstance(stages, nn.Sequential) and len(stages) == 4:
        return list(stages)[1:]
    return []


def apply_deformable_conv(model: nn.Module) -> int:
    """Make every plain 3x3 convolution of the residual blocks of stages 3-5 deformable, in
    place (a block's ``conv1``/``conv2``/``conv3``: both convolutions of a basic block, the
    middle one of a bottleneck; shortcuts and LIP's logit modules are left alone).
    Returns how many convolutions it replaced."""
    n = 0
    for stage in _stages(model):
        for block in stage.modules():
            for attr in ("conv1", "conv2", "conv3"):
                conv = getattr(block, attr, None)
                if (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3)
                        and conv.padding_mode == "zeros"):
                    setattr(block, attr, ModulatedDeformConv2d(conv))
                    n += 1
    return n


@register_trick
class DeformableConv(Trick):
    name = "deformable_conv"
    paper = "Zhu et al. 2019, Deformable ConvNets v2: More Deformable, Better Results (CVPR)"
    touches = ("model",)
    conflicts = ("octconv",)
    conflict_reason = "OctConv's convolutions have no plain 3x3 convolution to deform"
    order = 30

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.replaced: int | None = None

    @classmethod
    def check_model(cls, model_name: str) -> None:
        if model_name not in SUPPORTED:
            raise ConfigError(f"tricks.deformable_conv: model '{model_name}' is not a ResNet "
                              f"with 3x3 convolutions in stages 3-5 (supported: "
                              f"{', '.join(SUPPORTED)})")

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        self.replaced = apply_deformable_conv(model)
        return model

    def audit(self) -> Audit:
        n = self.replaced or 0
        if not n:
            return Audit(self.name, "deformable_conv: no effect, no 3x3 convolution in "
                                    "stages 3-5 found", effective=False)
        return Audit(self.name, f"deformable_conv: {n} 3x3 convolutions of stages 3-5 made "
                                "deformable (DCNv2)", details={"replaced": n})
