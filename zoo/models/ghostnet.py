"""GhostNet (Han, Wang, Tian, Guo, Xu, Xu 2020, "GhostNet: More Features from Cheap
Operations", CVPR), from timm's ``ghostnet_100``/``ghostnet_130``.

Ghost bottlenecks (a 1x1 convolution makes half the channels, a cheap depthwise 3x3 makes
the other "ghost" half) in the MobileNetV3-large layout, SE with hard-sigmoid gates;
5.18M / 7.36M parameters, 141M / 227M MACs for 1.0x / 1.3x (paper: 5.2M / 7.3M, 141M /
226M FLOPs). timm's default dropout of 0.2 before the classifier (the paper's) is off in
the baseline. timm's GhostNet takes no activation argument, so ``act`` swaps the ReLU
modules (not the gates). Like the MobileNets, no ``drop_path_rate`` or ``zero_init_last``:
timm's ghost bottleneck has neither stochastic depth nor a zero-γ hook.
"""

from __future__ import annotations

import timm
from torch import nn

from zoo.models._layers import act_layer, replace_act


def ghostnet_100(num_classes: int = 1000, *, act: str = "relu", drop_rate: float = 0.0
                 ) -> nn.Module:
    """GhostNet 1.0x (timm ``ghostnet_100``)."""
    return _ghostnet("ghostnet_100", num_classes, act, drop_rate)


def ghostnet_130(num_classes: int = 1000, *, act: str = "relu", drop_rate: float = 0.0
                 ) -> nn.Module:
    """GhostNet 1.3x (timm ``ghostnet_130``)."""
    return _ghostnet("ghostnet_130", num_classes, act, drop_rate)


def _ghostnet(timm_name: str, num_classes: int, act: str, drop_rate: float) -> nn.Module:
    """timm's GhostNet without its default dropout, ``act`` swapped in."""
    model = timm.create_model(timm_name, pretrained=False, num_classes=num_classes,
                              drop_rate=drop_rate)
    return replace_act(model, act_layer(act))
