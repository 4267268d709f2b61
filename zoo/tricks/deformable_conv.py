"""Deformable convolution v2 (Zhu, Hu, Lin, Dai 2019, "Deformable ConvNets v2: More
Deformable, Better Results", CVPR) on every 3x3 convolution of the residual blocks of
ResNet stages 3-5 (conv3_x to conv5_x, the paper's setting; ``layer2``-``layer4`` in
torchvision's naming).

Each such convolution becomes a modulated deformable one
(:class:`zoo.tricks._ops.ModulatedDeformConv2d`, a ``torchvision.ops.DeformConv2d``) keeping
its weights; a plain convolution with the same kernel, stride and padding predicts, per
output position, the 2·k·k sampling offsets and k·k modulation scalars. That predictor
starts at zero: offsets 0 and modulation ``2·sigmoid(0) = 1``, so the network starts as
exactly the one it replaced. (The paper's modulation is ``sigmoid`` in [0, 1] and starts at
0.5; the factor 2 keeps the start identical, the range is then [0, 2].)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, TrainContext, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn

#: Models whose residual blocks in stages 3-5 hold 3x3 convolutions ``conv1``-``conv3``:
#: torchvision-layout ResNets (``layer2``-``layer4``) and timm's ResNetV2 (``stages[1:4]``).
SUPPORTED = ("resnet18", "resnet18_cifar", "resnet50", "resnet101", "resnext50_32x4d",
             "resnet50v2", "resnet101v2", "lip_resnet50")


def _stages(model: nn.Module) -> list[nn.Module]:
    """Stages 3-5 of a ResNet: ``layer2``-``layer4`` or timm's ``stages[1:4]``."""
    from torch import nn

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
    from torch import nn

    from zoo.tricks._ops import ModulatedDeformConv2d

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
