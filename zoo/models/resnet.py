"""ResNet and ResNeXt from torchvision, with the options tricks switch on.

- ResNet-50/101: He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition"
  (CVPR). torchvision's version places the stride on the 3x3 convolution of the bottleneck
  ("ResNet v1.5"), as fb.resnet.torch did; 25.56M / 44.55M parameters, 4.09 / 7.80 GMACs.
- ResNeXt-50 32x4d: Xie, Girshick, Dollár, Tu, He 2017, "Aggregated Residual
  Transformations for Deep Neural Networks" (CVPR); 25.03M parameters, 4.23 GMACs.
- ResNet-18 for small images (28-32 px): the ImageNet ResNet-18 body with the stem changed
  the way CIFAR papers do (e.g. DeVries & Taylor 2017, Zhang et al. 2018 "mixup"): a 3x3
  stride-1 convolution and no max-pool, so a 32 px input reaches the last stage at 4x4
  instead of 1x1. 11.69M parameters at 1000 classes (11.17M at 10). Its MACs grow 16x
  against the ImageNet stem at the same input size, so its 224 px count (about 28 G) says
  nothing useful: the entry has no reference numbers.

The architecture is torchvision's ``ResNet`` with its own blocks; ``ResNet`` below adds
only what torchvision's constructor lacks: dropout before the classifier, stochastic depth
on each residual branch, a per-block zero-γ hook, the activation swap and the small-input
stem. torchvision's ``zero_init_residual`` does the zero-γ init.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import resnet as tv
from torchvision.ops import StochasticDepth

from zoo.models._layers import act_layer, drop_path_rates, norm_layer, replace_act


class BasicBlock(tv.BasicBlock):
    """torchvision's basic block with stochastic depth on the branch and a zero-γ hook."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.drop_path: nn.Module = nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.drop_path(out) + shortcut)


class Bottleneck(tv.Bottleneck):
    """torchvision's bottleneck with stochastic depth on the branch and a zero-γ hook."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.drop_path: nn.Module = nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.drop_path(out) + shortcut)


class ResNet(tv.ResNet):
    """torchvision's ResNet plus the trick options; defaults are the plain baseline."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        *,
        groups: int = 1,
        width_per_group: int = 64,
        small_input: bool = False,
        act: str = "relu",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = False,
        norm: str = "batchnorm",
    ) -> None:
        super().__init__(
            block,  # type: ignore[arg-type]
            list(layers),
            num_classes=num_classes,
            zero_init_residual=zero_init_last,
            groups=groups,
            width_per_group=width_per_group,
            norm_layer=norm_layer(norm),
        )
        if small_input:
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
            self.maxpool = nn.Identity()  # type: ignore[assignment]
        self.drop = nn.Dropout(drop_rate)
        blocks = [m for m in self.modules() if isinstance(m, BasicBlock | Bottleneck)]
        for blk, rate in zip(blocks, drop_path_rates(drop_path_rate, len(blocks)), strict=True):
            if rate > 0:
                blk.drop_path = StochasticDepth(rate, mode="row")
        replace_act(self, act_layer(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.drop(torch.flatten(self.avgpool(x), 1)))


def resnet50(num_classes: int = 1000, **options: object) -> nn.Module:
    """ResNet-50 (torchvision)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, **options)  # type: ignore[arg-type]


def resnet101(num_classes: int = 1000, **options: object) -> nn.Module:
    """ResNet-101 (torchvision)."""
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes, **options)  # type: ignore[arg-type]


def resnext50_32x4d(num_classes: int = 1000, **options: object) -> nn.Module:
    """ResNeXt-50 with 32 groups of width 4 (torchvision)."""
    return ResNet(  # type: ignore[arg-type]
        Bottleneck, (3, 4, 6, 3), num_classes, groups=32, width_per_group=4, **options
    )


def resnet18(num_classes: int = 10, **options: object) -> nn.Module:
    """ResNet-18 for small images: a 3x3 stride-1 stem and no max-pool (see module doc)."""
    return ResNet(  # type: ignore[arg-type]
        BasicBlock, (2, 2, 2, 2), num_classes, small_input=True, **options
    )
