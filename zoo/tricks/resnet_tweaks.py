"""The ResNet model tweaks of Bag of Tricks (He, Zhang, Zhang, Zhang, Xie, Li 2019, "Bag of
Tricks for Image Classification with Convolutional Neural Networks", CVPR, sec. 4, Fig. 2,
Table 5: ResNet-50 75.3 -> B 75.6 -> C 75.9 -> D 76.2 top-1).

- ``resnet_b``: the downsampling bottleneck strides its 3x3 convolution instead of its
  first 1x1, which discarded three quarters of the block's input. torchvision's ResNets
  (the zoo's) already are ResNet-B ("v1.5"): the trick acts on a model built with
  ``stride_1x1: true`` (the paper's baseline) and its audit says when it found nothing to
  move.
- ``resnet_c``: the 7x7 stem convolution becomes three 3x3 convolutions (model option
  ``stem: deep``), as timm's ``resnet50c``.
- ``resnet_d``: the paper's ResNet-D, which keeps C: the projection shortcut averages 2x2
  before a stride-1 1x1 convolution (``avg_down``) on the deep stem, as timm's
  ``resnet50d``. It cannot be combined with ``resnet_c``, whose stem it includes.

Every audit compares the built network with the one built without the trick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from zoo.tricks.base import Audit, TrainContext, Trick, changed_modules
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn

BOT = "He et al. 2019, Bag of Tricks for Image Classification with Convolutional Neural " \
      "Networks (CVPR), sec. 4"


class ModelTweak(Trick):
    """A tweak switched on by model options; the audit counts the modules it changed."""

    touches = ("model",)
    order = 24
    options: ClassVar[dict[str, Any]]
    what: ClassVar[str]

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.changed: int | None = None

    def model_options(self) -> dict[str, Any]:
        return dict(self.options)

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        self.changed = changed_modules(model, ctx, self.options)
        return model

    def audit(self) -> Audit:
        if not self.changed:
            return Audit(self.name, f"{self.name}: no effect, the model already has "
                                    f"{self.what}", effective=False)
        return Audit(self.name, f"{self.name}: {self.what}, {self.changed} modules changed",
                     details={"modules_changed": self.changed})


@register_trick
class ResNetC(ModelTweak):
    name = "resnet_c"
    paper = f"{BOT}: ResNet-C"
    needs_options = ("stem",)
    conflicts = ("resnet_d",)
    conflict_reason = "resnet_d includes resnet_c's deep stem"
    options: ClassVar[dict[str, Any]] = {"stem": "deep"}
    what = "the deep 3x3 stem"


@register_trick
class ResNetD(ModelTweak):
    name = "resnet_d"
    paper = f"{BOT}: ResNet-D"
    needs_options = ("stem", "avg_down")
    conflicts = ("resnet_c",)
    conflict_reason = "resnet_d includes resnet_c's deep stem"
    options: ClassVar[dict[str, Any]] = {"stem": "deep", "avg_down": True}
    what = "the deep stem and average-pooled projection shortcuts"


@register_trick
class ResNetB(Trick):
    name = "resnet_b"
    paper = f"{BOT}: ResNet-B"
    touches = ("model",)
    #: Only bottleneck ResNets stride a 1x1 convolution; the option marks them.
    needs_options = ("stride_1x1",)
    order = 30  # surgery on the built model

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.counts: tuple[int, int] | None = None

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        """Move the stride of every bottleneck that strides its first 1x1 to its 3x3."""
        from torchvision.models.resnet import Bottleneck

        blocks = moved = 0
        for block in model.modules():
            if isinstance(block, Bottleneck) and block.downsample is not None:
                blocks += 1
                if block.conv1.stride != (1, 1):
                    block.conv1.stride, block.conv2.stride = (1, 1), block.conv1.stride
                    moved += 1
        self.counts = (moved, blocks)
        return model

    def audit(self) -> Audit:
        moved, blocks = self.counts or (0, 0)
        if not moved:
            return Audit(self.name, f"resnet_b: no effect, the {blocks} downsampling "
                                    "bottlenecks already stride their 3x3", effective=False)
        return Audit(self.name, f"resnet_b: stride moved to the 3x3 in {moved} of {blocks} "
                                "downsampling bottlenecks", details={"moved": moved})
