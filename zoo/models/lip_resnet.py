"""LIP-ResNet-50: ResNet-50 with Local Importance-based Pooling (Gao, Wang, Wu 2019, "LIP:
Local Importance-based Pooling", ICCV; arXiv:1908.04156).

LIP downsamples by a weighted average over each 3x3 window (stride 2), the weights being
``exp(logit)`` of a learned importance map computed from the input by a small fully
convolutional "logit module" (paper eq. 7):

    LIP(x) = avgpool(x * exp(G(x))) / avgpool(exp(G(x)))

``G`` ends in an affine InstanceNorm and the gate ``12 * sigmoid``, which bounds the
logits to (0, 12). The layout follows the authors' code (sebgao/LIP,
``imagenet/lip_resnet.py``), which is what the paper's ImageNet table measures:

- the stem's max-pool becomes a LIP whose logit module is one 3x3 convolution
  ("projection" logit module, paper Fig. 4d);
- in each of the three downsampling bottlenecks a shared "bottleneck" logit module
  (1x1 conv to 128 channels, IN, ReLU, 3x3 conv, IN, ReLU; Fig. 4e) runs on the block's
  input; two 1x1 heads (conv, IN, gate) turn it into logits for the residual branch and
  for the shortcut. The residual branch pools after its first 1x1 convolution, and its
  strided 3x3 becomes a 1x1 (Fig. 4b); the shortcut pools before its 1x1 projection.
  The 1x1 middle convolution is why LIP-ResNet-50 has fewer parameters than ResNet-50.
- As in the authors' code, the last convolution of each logit head starts at zero, so
  every LIP starts as plain 3x3 average pooling. That is part of LIP's initialisation,
  not a trick; zero-γ on the residual blocks (which the authors' code also switches on)
  is off by default here, as in every baseline of this zoo.

The paper's ImageNet table gives LIP-ResNet-50 23.9M parameters and 5.33 GFLOPs
(multiply-adds, 224 px); measured here: 23.86M parameters, 5.30 GMACs of convolutions and
linear layers (the pooling arithmetic of LIP itself is not counted by either).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.models._layers import act_layer, drop_path_rates, kaiming_init, norm_layer

#: Width of the shared bottleneck logit module (authors' BOTTLENECK_WIDTH).
LOGIT_WIDTH = 128
#: The gate's scale: logits are ``COEFF * sigmoid(.)`` (authors' COEFF).
COEFF = 12.0


def lip2d(x: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    """Local importance-based pooling, 3x3 windows, stride 2 (paper eq. 7)."""
    weight = logit.exp()
    return F.avg_pool2d(x * weight, 3, 2, 1) / F.avg_pool2d(weight, 3, 2, 1)


class SoftGate(nn.Module):
    """``COEFF * sigmoid(x)``: bounded logits, so ``exp`` stays finite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * COEFF


def _logit_head(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    """conv (zero-initialised, so LIP starts as average pooling), affine IN, gate."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, nn.InstanceNorm2d(out_ch, affine=True), SoftGate())


class ProjectionLIP(nn.Module):
    """LIP with a one-convolution logit module (paper Fig. 4d); replaces the max-pool."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.logit = _logit_head(channels, channels, 3)

    def init_logit(self) -> None:
        nn.init.zeros_(self.logit[0].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lip2d(x, self.logit(x))


class LIPBottleneck(nn.Module):
    """ResNet bottleneck; when ``stride == 2`` it downsamples by LIP (paper Fig. 4b, 4e)."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        act: type[nn.Module],
        norm: Callable[[int], nn.Module],
        drop_path_rate: float,
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.stride = stride
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = norm(width)
        self.shared: nn.Sequential | None = None
        if stride == 2:
            self.shared = nn.Sequential(
                nn.Conv2d(in_ch, LOGIT_WIDTH, 1, bias=False),
                nn.InstanceNorm2d(LOGIT_WIDTH, affine=True),
                act(inplace=True),
                nn.Conv2d(LOGIT_WIDTH, LOGIT_WIDTH, 3, padding=1, bias=False),
                nn.InstanceNorm2d(LOGIT_WIDTH, affine=True),
                act(inplace=True),
            )
            self.logit_branch = _logit_head(LOGIT_WIDTH, width, 1)
            self.logit_shortcut = _logit_head(LOGIT_WIDTH, in_ch, 1)
            self.conv2 = nn.Conv2d(width, width, 1, bias=False)
        elif stride == 1:
            self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        else:
            raise ValueError(f"LIP bottleneck supports stride 1 or 2, got {stride}")
        self.bn2 = norm(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = norm(out_ch)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), norm(out_ch))
        self.drop_path: nn.Module = (
            StochasticDepth(drop_path_rate, "row") if drop_path_rate > 0 else nn.Identity()
        )
        self.act = act(inplace=True)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def init_logit(self) -> None:
        if self.shared is not None:
            nn.init.zeros_(self.logit_branch[0].weight)
            nn.init.zeros_(self.logit_shortcut[0].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        shortcut = x
        if self.shared is not None:
            shared = self.shared(x)
            out = lip2d(out, self.logit_branch(shared))
            shortcut = lip2d(x, self.logit_shortcut(shared))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act(self.drop_path(out) + shortcut)


class LIPResNet(nn.Module):
    """ResNet with LIP in place of the max-pool and of every strided convolution."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        *,
        act: str = "relu",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = False,
        norm: str = "batchnorm",
    ) -> None:
        super().__init__()
        act_cls, norm_cls = act_layer(act), norm_layer(norm)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = norm_cls(64)
        self.act1 = act_cls(inplace=True)
        self.pool = ProjectionLIP(64)
        rates = iter(drop_path_rates(drop_path_rate, sum(layers)))
        stages: list[nn.Module] = []
        in_ch = 64
        for i, depth in enumerate(layers):
            width = 64 * 2**i
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(LIPBottleneck(in_ch, width, stride, act_cls, norm_cls, next(rates)))
                in_ch = width * LIPBottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes)
        kaiming_init(self)
        for m in self.modules():
            if isinstance(m, ProjectionLIP | LIPBottleneck):
                m.init_logit()
            if zero_init_last and isinstance(m, LIPBottleneck):
                m.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.drop(torch.flatten(self.avgpool(x), 1)))


def lip_resnet50(num_classes: int = 1000, **options: object) -> nn.Module:
    """LIP-ResNet-50 (authors' layout, see module doc)."""
    return LIPResNet((3, 4, 6, 3), num_classes, **options)  # type: ignore[arg-type]
