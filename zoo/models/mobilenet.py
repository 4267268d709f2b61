"""MobileNets v1, v2, v3.

- MobileNet v1 1.0 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural
  Networks for Mobile Vision Applications"): a 3x3 stride-2 stem and 13 depthwise-separable
  blocks, each conv followed by BN and ReLU, no residuals; 4.23M parameters, 569M MACs
  (paper Table 1: 4.2M, 569M mult-adds). No library but timm has it (``mobilenetv1_100``);
  timm defaults to ReLU6 after TF-slim, we pass ReLU as in the paper.
- MobileNet v2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks", CVPR), torchvision ``mobilenet_v2``: 3.50M parameters, 301M MACs.
- MobileNet v3 large/small (Howard et al. 2019, "Searching for MobileNetV3", ICCV),
  torchvision ``mobilenet_v3_large``/``_small``: 5.48M / 2.54M parameters, 217M / 57M MACs.

torchvision puts dropout 0.2 before the classifier by default; the baseline here has none
(``drop_rate`` switches it on). MobileNet v3's activations are a designed mix of ReLU and
hard-swish; ``act`` replaces both (not the hard-sigmoid gates of its SE blocks), which is
the paper's own ablation of h-swish. None of these declare ``drop_path_rate``
or ``zero_init_last``: v1 has no residual branch at all, and torchvision's v2/v3 blocks
have neither stochastic depth nor a zero-γ hook.
"""

from __future__ import annotations

import timm
from torch import nn
from torchvision import models as tvm

from zoo.models._layers import act_layer, replace_act


def mobilenetv1(num_classes: int = 1000, *, act: str = "relu", drop_rate: float = 0.0
                ) -> nn.Module:
    """MobileNet v1 1.0 at 224 px (timm ``mobilenetv1_100`` with the paper's ReLU)."""
    return timm.create_model(
        "mobilenetv1_100",
        pretrained=False,
        num_classes=num_classes,
        act_layer=act_layer(act),
        drop_rate=drop_rate,
    )


def mobilenetv2(num_classes: int = 1000, *, act: str = "relu6", drop_rate: float = 0.0
                ) -> nn.Module:
    """MobileNet v2 1.0 (torchvision); ``act`` replaces its ReLU6."""
    model = tvm.mobilenet_v2(weights=None, num_classes=num_classes, dropout=drop_rate)
    return replace_act(model, act_layer(act))


def _mobilenet_v3(arch: str, num_classes: int, act: str | None, drop_rate: float
                  ) -> nn.Module:
    model = getattr(tvm, arch)(weights=None, num_classes=num_classes, dropout=drop_rate)
    return model if act is None else replace_act(model, act_layer(act))


def mobilenetv3_large(num_classes: int = 1000, *, act: str | None = None,
                      drop_rate: float = 0.0) -> nn.Module:
    """MobileNet v3 large 1.0 (torchvision); ``act=None`` keeps its ReLU/hard-swish mix."""
    return _mobilenet_v3("mobilenet_v3_large", num_classes, act, drop_rate)


def mobilenetv3_small(num_classes: int = 1000, *, act: str | None = None,
                      drop_rate: float = 0.0) -> nn.Module:
    """MobileNet v3 small 1.0 (torchvision); ``act=None`` keeps its ReLU/hard-swish mix."""
    return _mobilenet_v3("mobilenet_v3_small", num_classes, act, drop_rate)
