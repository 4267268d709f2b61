"""Counting what a model costs: parameters and multiply-accumulates (MACs)."""

from __future__ import annotations

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


@torch.no_grad()
def count_macs(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """MACs of one forward pass on one ``channels x image_size x image_size`` image.

    FlopCounterMode counts FLOPs of matrix products and convolutions (2 per MAC); like
    torchvision and timm we report MACs = FLOPs / 2. The model runs in eval mode on its
    own device, and its train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(1, channels, image_size, image_size, device=device)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        return counter.get_total_flops() // 2
    finally:
        model.train(was_training)
