"""Oct-ResNet-50: ResNet-50 with octave convolutions (Chen, Fan, Xu, Yan, Kalantidis,
Rohrbach, Yan, Feng 2019, "Drop an Octave: Reducing Spatial Redundancy in Convolutional
Neural Networks with Octave Convolution", ICCV; arXiv:1904.05049).

An octave feature map is a pair ``(x_h, x_l)``: a fraction ``alpha`` of the channels is
stored at half resolution (low frequency), the rest at full resolution. An octave
convolution (paper eq. 3, Fig. 2) computes four paths and sums them per output frequency:

    y_h = conv_hh(x_h) + upsample(conv_lh(x_l))
    y_l = conv_ll(x_l) + conv_hl(avgpool(x_h))

Its weights are exactly the vanilla convolution's, split four ways, so the parameter count
is ResNet-50's (25.56M) for every ``alpha``; the MACs fall as ``alpha`` grows.

Layout, as in the authors' code (facebookresearch/OctConv, ``resnet50_v1b`` with
``ratio=[a, a, a, 0]``): the stem (7x7 conv, max-pool) is vanilla; the first block turns
the single-frequency input into an octave map (``alpha_in = 0``); stages 1-3 are octave with
ratio ``alpha``; the first block of stage 4 merges back (``alpha_out = 0``) and stage 4 is
vanilla. The stride sits on the 3x3 convolution, as in torchvision's ResNet-50, so
``alpha = 0`` gives exactly torchvision's ResNet-50. Strided octave convolutions
downsample by 2x2 average pooling before the convolution (not a strided convolution, which
would misalign the two frequencies, paper section 3.3); the low-to-high path upsamples by
nearest neighbour. Each frequency has its own BN. Channel split as in the authors' code:
``c_l = int(alpha * c)``, ``c_h = c - c_l``.

Measured at 224 px (MACs of convolutions and linear layers; pooling and upsampling are
free), alpha 0 / 0.125 / 0.25 / 0.5 / 0.75: 4.09 / 3.57 / 3.10 / 2.37 / 1.88 GMACs, with
25.56M parameters throughout. This is the paper's ImageNet ablation of Oct-ResNet-50 (its
GFLOPs are multiply-adds: 4.1 / 3.6 / 3.1 / 2.4 / 1.9 for the same alphas), to the one
decimal it reports; the registry's reference is the default alpha's 3.6.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.models._layers import act_layer, drop_path_rates, kaiming_init, norm_layer

Octave = tuple[torch.Tensor, torch.Tensor | None]


def _split(channels: int, alpha: float) -> tuple[int, int]:
    low = int(alpha * channels)
    return channels - low, low


def _pool(x: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return x
    return F.avg_pool2d(x, factor, factor, ceil_mode=True, count_include_pad=False)


class OctaveConv(nn.Module):
    """Octave convolution (paper eq. 3) from ``alpha_in`` to ``alpha_out``.

    ``alpha_in = 0`` takes a single-frequency input, ``alpha_out = 0`` produces one.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        alpha_in: float = 0.5,
        alpha_out: float = 0.5,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"octave convolution supports stride 1 or 2, got {stride}")
        self.stride = stride
        in_h, in_l = _split(in_ch, alpha_in)
        out_h, out_l = _split(out_ch, alpha_out)

        def conv(i: int, o: int) -> nn.Conv2d | None:
            if not (i and o):
                return None
            return nn.Conv2d(i, o, kernel_size, 1, kernel_size // 2, bias=False)

        self.conv_hh = conv(in_h, out_h)
        self.conv_hl = conv(in_h, out_l)
        self.conv_lh = conv(in_l, out_h)
        self.conv_ll = conv(in_l, out_l)

    def forward(self, x: Octave) -> Octave:
        x_h, x_l = x
        s = self.stride
        y_h = self.conv_hh(_pool(x_h, s)) if self.conv_hh is not None else None
        y_l = self.conv_hl(_pool(x_h, 2 * s)) if self.conv_hl is not None else None
        if x_l is not None and self.conv_ll is not None:
            ll = self.conv_ll(_pool(x_l, s))
            y_l = ll if y_l is None else y_l + ll
        assert y_h is not None  # alpha < 1: there is always a high-frequency part
        if x_l is not None and self.conv_lh is not None:
            # With stride 2 the low input already has the output's resolution; the size is
            # taken from y_h so that odd sides (ceil-mode pooling) line up.
            lh = self.conv_lh(x_l)
            if lh.shape[-2:] != y_h.shape[-2:]:
                lh = F.interpolate(lh, size=y_h.shape[-2:], mode="nearest")
            y_h = y_h + lh
        return y_h, y_l


class OctaveNorm(nn.Module):
    """One norm layer per frequency, optionally followed by the activation."""

    def __init__(
        self,
        channels: int,
        alpha: float,
        norm: Callable[[int], nn.Module],
        act: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        ch_h, ch_l = _split(channels, alpha)
        self.norm_h = norm(ch_h)
        self.norm_l = norm(ch_l) if ch_l else None
        self.act = act(inplace=True) if act is not None else None

    def forward(self, x: Octave) -> Octave:
        x_h, x_l = x
        x_h = self.norm_h(x_h)
        if x_l is not None and self.norm_l is not None:
            x_l = self.norm_l(x_l)
        if self.act is not None:
            x_h = self.act(x_h)
            x_l = self.act(x_l) if x_l is not None else None
        return x_h, x_l

    def zero_weight(self) -> None:
        nn.init.zeros_(self.norm_h.weight)
        if self.norm_l is not None:
            nn.init.zeros_(self.norm_l.weight)


class OctaveStochasticDepth(StochasticDepth):
    """Stochastic depth on an octave map: one keep/drop draw per sample for both
    frequencies (they are halves of one feature map)."""

    def forward(self, x: Octave) -> Octave:  # type: ignore[override]
        x_h, x_l = x
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x_h.new_empty(x_h.shape[0], 1, 1, 1).bernoulli_(keep).div_(keep)
        return x_h * mask, (x_l * mask if x_l is not None else None)


class OctBottleneck(nn.Module):
    """ResNet bottleneck of octave convolutions (stride on the 3x3)."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        alpha_in: float,
        alpha_out: float,
        act: type[nn.Module],
        norm: Callable[[int], nn.Module],
        drop_path_rate: float,
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = OctaveConv(in_ch, width, 1, 1, alpha_in, alpha_out)
        self.bn1 = OctaveNorm(width, alpha_out, norm, act)
        self.conv2 = OctaveConv(width, width, 3, stride, alpha_out, alpha_out)
        self.bn2 = OctaveNorm(width, alpha_out, norm, act)
        self.conv3 = OctaveConv(width, out_ch, 1, 1, alpha_out, alpha_out)
        self.bn3 = OctaveNorm(out_ch, alpha_out, norm)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch or alpha_in != alpha_out:
            self.downsample = nn.Sequential(
                OctaveConv(in_ch, out_ch, 1, stride, alpha_in, alpha_out),
                OctaveNorm(out_ch, alpha_out, norm),
            )
        self.drop_path: nn.Module = (
            OctaveStochasticDepth(drop_path_rate, "row") if drop_path_rate > 0 else nn.Identity()
        )
        self.act = act(inplace=True)

    def zero_init_last(self) -> None:
        self.bn3.zero_weight()

    def forward(self, x: Octave) -> Octave:
        out = self.bn3(self.conv3(self.bn2(self.conv2(self.bn1(self.conv1(x))))))
        out_h, out_l = self.drop_path(out)
        short_h, short_l = x if self.downsample is None else self.downsample(x)
        y_h = self.act(out_h + short_h)
        y_l = self.act(out_l + short_l) if out_l is not None and short_l is not None else None
        return y_h, y_l


class OctResNet(nn.Module):
    """ResNet with octave convolutions in stages 1-3 (see module doc)."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        *,
        alpha: float = 0.125,
        act: str = "relu",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = False,
        norm: str = "batchnorm",
    ) -> None:
        super().__init__()
        if not 0 <= alpha < 1:
            raise ValueError(f"oct_resnet: alpha must be in [0, 1), got {alpha}")
        act_cls, norm_cls = act_layer(act), norm_layer(norm)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = norm_cls(64)
        self.act1 = act_cls(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        rates = iter(drop_path_rates(drop_path_rate, sum(layers)))
        ratios = (alpha, alpha, alpha, 0.0)
        stages: list[nn.Module] = []
        in_ch, alpha_in = 64, 0.0
        for i, (depth, ratio) in enumerate(zip(layers, ratios, strict=True)):
            width = 64 * 2**i
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(OctBottleneck(in_ch, width, stride, alpha_in, ratio, act_cls,
                                            norm_cls, next(rates)))
                in_ch, alpha_in = width * OctBottleneck.expansion, ratio
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes)
        kaiming_init(self)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, OctBottleneck):
                    m.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        octave: Octave = (x, None)
        octave = self.layer4(self.layer3(self.layer2(self.layer1(octave))))
        x_h, _ = octave  # stage 4 is single-frequency
        return self.fc(self.drop(torch.flatten(self.avgpool(x_h), 1)))


def oct_resnet50(num_classes: int = 1000, alpha: float = 0.125, **options: object
                 ) -> nn.Module:
    """Oct-ResNet-50 with low-frequency ratio ``alpha`` (default 0.125, the paper's best)."""
    return OctResNet((3, 4, 6, 3), num_classes, alpha=alpha, **options)  # type: ignore[arg-type]
