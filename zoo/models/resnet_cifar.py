"""CIFAR-style ResNets for 28-32 px images (He et al. 2016, "Deep Residual Learning for
Image Recognition", section 4.2): a 3x3 stem without pooling, three stages of 16/32/64
channels with n basic blocks each (depth = 6n + 2), global average pooling, one linear
layer. The shortcut on a stride/width change is a 1x1 convolution with BN (option B).
ResNet-20: 0.27M parameters (paper Table 6), 41M MACs at 32 px.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.models._layers import act_layer, drop_path_rates, kaiming_init, norm_layer

NormLayer = Callable[[int], nn.Module]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN; ``zero_init_last`` zeroes the second BN's weight."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int,
        act: type[nn.Module] = nn.ReLU,
        norm: NormLayer = nn.BatchNorm2d,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = norm(out_ch)
        self.act = act(inplace=True)
        self.drop_path: nn.Module = (
            StochasticDepth(drop_path_rate, mode="row") if drop_path_rate > 0 else nn.Identity()
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), norm(out_ch)
            )

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(self.drop_path(out) + self.shortcut(x))


class CifarResNet(nn.Module):
    """A CIFAR ResNet of depth 6n+2; defaults are the paper's plain baseline."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (16, 32, 64),
        drop_rate: float = 0.0,
        zero_init_last: bool = False,
        act: str = "relu",
        drop_path_rate: float = 0.0,
        norm: str = "batchnorm",
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        act_cls, norm_cls = act_layer(act), norm_layer(norm)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            norm_cls(widths[0]),
            act_cls(inplace=True),
        )
        rates = iter(drop_path_rates(drop_path_rate, n * len(widths)))
        blocks: list[nn.Module] = []
        in_ch = widths[0]
        for stage, width in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_ch, width, stride, act_cls, norm_cls, next(rates)))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes)
        kaiming_init(self)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    m.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


def resnet20(num_classes: int = 10, **options: object) -> nn.Module:
    """ResNet-20 for 28-32 px images (3 stages of 3 basic blocks)."""
    return CifarResNet(20, num_classes=num_classes, **options)  # type: ignore[arg-type]
