"""ResNeSt-50 (Zhang, Wu, Zhang, Zhu, Lin, Zhang, Sun, He, Mueller, Manmatha, Li, Smola
2022, "ResNeSt: Split-Attention Networks", CVPR Workshops; arXiv:2004.08955 2020), from
timm's ``resnest50d``.

The ResNet-50 layout with split-attention 3x3 convolutions (radix 2, cardinality 1, base
width 64), the deep stem (three 3x3 convolutions, 32-32-64 channels), average pooling
before the strided 3x3 ("avd") and in the projection shortcut ("avg-down"), as the paper's
ResNeSt-50: 27.48M parameters, 5.37 GMACs (paper: 27.5M, 5.39 GFLOPs).

timm's ``act_layer`` does not reach the ReLUs inside split attention (after the split
convolution and in the attention MLP), so ``act`` also swaps those modules.

Defaults are the plain baseline: no dropout, no drop-path, no DropBlock, and zero-γ off
(timm's ResNet turns it on by default; we pass ``zero_init_last=False``).
"""

from __future__ import annotations

import timm
from torch import nn

from zoo.models._layers import act_layer, norm_layer, replace_act, set_drop_path


def resnest50(
    num_classes: int = 1000,
    *,
    act: str = "relu",
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    zero_init_last: bool = False,
    norm: str = "batchnorm",
) -> nn.Module:
    """ResNeSt-50 with the deep stem and avg-down shortcut (timm ``resnest50d``)."""
    model = timm.create_model(
        "resnest50d",
        pretrained=False,
        num_classes=num_classes,
        act_layer=act_layer(act),
        norm_layer=norm_layer(norm),
        drop_rate=drop_rate,
        drop_path_rate=0.0,  # set below by the zoo's rule, rate * l / L
        zero_init_last=zero_init_last,
    )
    return set_drop_path(replace_act(model, act_layer(act)), drop_path_rate)
