"""ResNet and ResNeXt from torchvision, with the options tricks switch on.

- ResNet-50/101: He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition"
  (CVPR). torchvision's version places the stride on the 3x3 convolution of the bottleneck
  ("ResNet v1.5"), as fb.resnet.torch did; 25.56M / 44.55M parameters, 4.09 / 7.80 GMACs.
- ResNeXt-50 32x4d: Xie, Girshick, Dollár, Tu, He 2017, "Aggregated Residual
  Transformations for Deep Neural Networks" (CVPR); 25.03M parameters, 4.23 GMACs.
- ResNet-18: the paper's 18-layer network as torchvision builds it, 11.690M parameters,
  1.814 GMACs at 224 px.
- ResNet-18 for small images (``resnet18_cifar``, 28-32 px): the same body with the stem
  changed the way CIFAR papers do (e.g. DeVries & Taylor 2017, Zhang et al. 2018
  "mixup"): a 3x3 stride-1 convolution and no max-pool, so a 32 px input reaches the last
  stage at 4x4 instead of 1x1. 11.69M parameters at 1000 classes (11.17M at 10). Its MACs
  grow 16x against the ImageNet stem at the same input size, so its 224 px count (about
  28 G) says nothing useful: the entry has no reference numbers.

The model tweaks of Bag of Tricks (He, Zhang, Zhang, Zhang, Xie, Li 2019, "Bag of Tricks
for Image Classification with Convolutional Neural Networks", CVPR, sec. 4) are options:

- ``stride_1x1``: the original ResNet's downsampling bottleneck strides its first 1x1
  convolution, which skips three quarters of the input; ResNet-B (torchvision's "v1.5",
  the default here) strides the 3x3 instead. ``stride_1x1: true`` is the paper's baseline.
- ``stem: deep`` (ResNet-C): the 7x7 stem convolution becomes three 3x3 convolutions with
  32, 32 and 64 channels (the first with stride 2), as timm's ``resnet50c``.
- ``avg_down`` (ResNet-D): the projection shortcut averages 2x2 before a stride-1 1x1
  convolution instead of striding the 1x1, as timm's ``resnet50d`` (with ``stem: deep``).

The architecture is torchvision's ``ResNet`` with its own blocks; ``ResNet`` below adds
only what torchvision's constructor lacks: dropout before the classifier, stochastic depth
on each residual branch, a per-block zero-γ hook, the activation swap, the small-input
stem and the tweaks above. torchvision's ``zero_init_residual`` does the zero-γ init.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.models import resnet as tv
from torchvision.ops import StochasticDepth

from zoo.models._layers import act_layer, drop_path_rates, norm_layer, replace_act
from zoo.models._options import check_option


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
        stem: str = "default",
        avg_down: bool = False,
        stride_1x1: bool = False,
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
        check_option("resnet", "stem", stem)
        if stem == "deep":
            self.conv1 = _deep_stem(norm_layer(norm))  # type: ignore[assignment]
        for blk in self.modules():
            if isinstance(blk, BasicBlock | Bottleneck) and blk.downsample is not None:
                if avg_down:
                    blk.downsample = _avg_down(blk.downsample, blk.stride)
                if stride_1x1 and isinstance(blk, Bottleneck) and blk.stride != 1:
                    blk.conv1.stride, blk.conv2.stride = blk.conv2.stride, (1, 1)
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


def _deep_stem(norm: Callable[[int], nn.Module]) -> nn.Sequential:
    """ResNet-C's stem up to its last convolution (the model's ``bn1`` and ReLU follow):
    3x3/2 (32), 3x3 (32), 3x3 (64), as timm's ``stem_type='deep'``."""
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(((3, 32), (32, 32), (32, 64))):
        layers.append(nn.Conv2d(cin, cout, 3, 2 if i == 0 else 1, 1, bias=False))
        if i < 2:
            layers += [norm(cout), nn.ReLU(inplace=True)]
    stem = nn.Sequential(*layers)
    for m in stem.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return stem


def _avg_down(downsample: nn.Module, stride: int) -> nn.Sequential:
    """ResNet-D's shortcut: 2x2 average pooling (when the block strides), then the 1x1
    projection at stride 1 and its norm, as timm's ``avg_down``."""
    conv, norm = downsample[0], downsample[1]  # type: ignore[index]
    conv.stride = (1, 1)
    pool: nn.Module = (nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
                       if stride != 1 else nn.Identity())
    return nn.Sequential(pool, conv, norm)


def resnet50(num_classes: int = 1000, **options: object) -> nn.Module:
    """ResNet-50 (torchvision)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, **options)  # type: ignore[arg-type]


def resnet50c(num_classes: int = 1000, **options: object) -> nn.Module:
    """ResNet-50-C of Bag of Tricks: the deep 3x3 stem (timm ``resnet50c``)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, stem="deep",  # type: ignore[arg-type]
                  **options)


def resnet50d(num_classes: int = 1000, **options: object) -> nn.Module:
    """ResNet-50-D of Bag of Tricks: the deep stem and average-pooled projection shortcuts
    (timm ``resnet50d``)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, stem="deep",  # type: ignore[arg-type]
                  avg_down=True, **options)


def resnet101(num_classes: int = 1000, **options: object) -> nn.Module:
    """ResNet-101 (torchvision)."""
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes, **options)  # type: ignore[arg-type]


def resnext50_32x4d(num_classes: int = 1000, **options: object) -> nn.Module:
    """ResNeXt-50 with 32 groups of width 4 (torchvision)."""
    return ResNet(  # type: ignore[arg-type]
        Bottleneck, (3, 4, 6, 3), num_classes, groups=32, width_per_group=4, **options
    )


def resnet18(num_classes: int = 1000, **options: object) -> nn.Module:
    """ResNet-18 (torchvision)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, **options)  # type: ignore[arg-type]


def resnet18_cifar(num_classes: int = 10, **options: object) -> nn.Module:
    """ResNet-18 for small images: a 3x3 stride-1 stem and no max-pool (see module doc)."""
    return ResNet(  # type: ignore[arg-type]
        BasicBlock, (2, 2, 2, 2), num_classes, small_input=True, **options
    )
