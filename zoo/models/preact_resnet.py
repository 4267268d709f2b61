"""Pre-activation ResNets (He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual
Networks", ECCV), from timm's ``ResNetV2``.

Each block is BN-ReLU-conv three times (1x1, 3x3 with the stride, 1x1) and adds its input
unchanged; the projection shortcut takes the pre-activated input, and a final BN-ReLU
precedes the pooling, as in the paper. The stem is the plain 7x7 convolution and max-pool
(no BN in the stem: the first block's BN pre-activates it). The classifier is a 1x1
convolution, the same weights and MACs as a linear layer. ResNet-50v2: 25.55M parameters,
4.09 GMACs; ResNet-101v2: 44.54M, 7.80 GMACs (timm ``resnetv2_50``/``resnetv2_101``).

Zero-γ on a pre-activation block: the last BN of the branch is followed by a ReLU and the
last 1x1 convolution. Zeroing its γ (with β = 0) would feed ReLU exactly 0, whose gradient
is 0, so neither γ nor β could ever move and the block would stay dead. timm's per-block
hook therefore zeroes the last convolution's weight instead, which starts the block as the
identity and still trains; ``zero_init_last`` uses that hook.
"""

from __future__ import annotations

from torch import nn

from zoo.models._layers import timm_with_options

_preact_resnet = timm_with_options


def resnet50v2(num_classes: int = 1000, **options: object) -> nn.Module:
    """Pre-activation ResNet-50."""
    return _preact_resnet("resnetv2_50", num_classes, **options)  # type: ignore[arg-type]


def resnet101v2(num_classes: int = 1000, **options: object) -> nn.Module:
    """Pre-activation ResNet-101."""
    return _preact_resnet("resnetv2_101", num_classes, **options)  # type: ignore[arg-type]
