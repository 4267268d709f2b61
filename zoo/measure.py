"""Counting what a model costs: parameters and multiply-accumulates (MACs)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not), counting shared tensors once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _deform_conv2d_flops(input_shape: Any, weight_shape: Any, *args: Any,
                         out_shape: Any = None, **kwargs: Any) -> int:
    """torchvision's ``deform_conv2d`` counted as the convolution of the same shapes:
    2 FLOPs per multiply-accumulate of each output value with its ``C_in / groups x kh x
    kw`` weights. The bilinear sampling of the input and the modulation are not counted,
    as fvcore and mmcv count DCN; the offset convolution is a plain one, counted as such."""
    return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])


def _custom_flops() -> dict[Any, Any]:
    """FLOP formulas for the operators FlopCounterMode does not know (it counts them 0)."""
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    return {torch.ops.torchvision.deform_conv2d: _deform_conv2d_flops}


@torch.no_grad()
def count_macs(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """MACs of one forward pass on one ``channels x image_size x image_size`` image.

    FlopCounterMode counts FLOPs of matrix products and convolutions (2 per MAC), and of
    torchvision's deformable convolution (:func:`_deform_conv2d_flops`); like torchvision
    and timm we report MACs = FLOPs / 2. The model runs in eval mode on its own device,
    and its train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(1, channels, image_size, image_size, device=device)
        counter = FlopCounterMode(display=False, custom_mapping=_custom_flops())
        with counter:
            model(x)
        return counter.get_total_flops() // 2
    finally:
        model.train(was_training)
