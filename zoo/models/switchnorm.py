"""Switchable Normalization (Luo, Ren, Peng, Zhang, Li 2019, "Differentiable Learning-to-
Normalize via Switchable Normalization", ICLR 2019, arXiv:1806.10779).

SN normalises each channel with a learned mixture of three sets of statistics: instance
norm (per sample and channel, over H x W), layer norm (per sample, over C x H x W) and batch
norm (per channel, over N x H x W). Means and variances have separate mixing weights, each
a softmax over three logits (initialised equal, as in the paper). LN statistics are
derived from the IN ones and BN statistics from those again (paper, eq. 5), so one pass
over the tensor is enough. In eval mode the BN part uses running averages, as BN does.

No maintained library has it, so it is written here. Parameters per layer: the affine
γ and β (like BN) plus 6 mixing logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class SwitchNorm2d(nn.Module):
    """Switchable Normalization over ``(N, C, H, W)`` inputs.

    ``momentum`` follows PyTorch's BatchNorm convention (weight of the new batch in the
    running averages). ``weight`` and ``bias`` are 1-D like BatchNorm's, so a zero-γ hook
    written for BN (``nn.init.zeros_(norm.weight)``) works on it unchanged.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features, **dd))
        self.bias = nn.Parameter(torch.zeros(num_features, **dd))
        # Mixing logits for (IN, LN, BN); equal at start.
        self.mean_weight = nn.Parameter(torch.ones(3, **dd))
        self.var_weight = nn.Parameter(torch.ones(3, **dd))
        self.register_buffer("running_mean", torch.zeros(num_features, **dd))
        self.register_buffer("running_var", torch.ones(num_features, **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)
        mean_in = flat.mean(-1, keepdim=True)  # (N, C, 1)
        var_in = flat.var(-1, keepdim=True, unbiased=False)
        second_in = var_in + mean_in.square()  # E[x^2] per sample and channel
        mean_ln = mean_in.mean(1, keepdim=True)  # (N, 1, 1)
        var_ln = second_in.mean(1, keepdim=True) - mean_ln.square()
        if self.training:
            mean_bn = mean_in.mean(0, keepdim=True)  # (1, C, 1)
            var_bn = second_in.mean(0, keepdim=True) - mean_bn.square()
            with torch.no_grad():
                self.running_mean.lerp_(mean_bn.flatten(), self.momentum)
                self.running_var.lerp_(var_bn.flatten(), self.momentum)
        else:
            mean_bn = self.running_mean.view(1, c, 1)
            var_bn = self.running_var.view(1, c, 1)
        wm = torch.softmax(self.mean_weight, 0)
        wv = torch.softmax(self.var_weight, 0)
        mean = wm[0] * mean_in + wm[1] * mean_ln + wm[2] * mean_bn
        var = wv[0] * var_in + wv[1] * var_ln + wv[2] * var_bn
        out = (flat - mean) * torch.rsqrt(var.clamp_min(0) + self.eps)
        out = out * self.weight.view(1, c, 1) + self.bias.view(1, c, 1)
        return out.reshape_as(x)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class SwitchNormAct2d(SwitchNorm2d):
    """SwitchNorm followed by an activation, for timm models built from norm+act layers
    (ResNetV2, RegNet); mirrors the signature of timm's ``BatchNormAct2d``."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        apply_act: bool = True,
        act_layer: Callable[..., nn.Module] | None = nn.ReLU,
        act_kwargs: dict[str, Any] | None = None,
        inplace: bool = True,
        drop_layer: Callable[[], nn.Module] | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, device=device, dtype=dtype)
        self.drop: nn.Module = drop_layer() if drop_layer is not None else nn.Identity()
        self.act: nn.Module = nn.Identity()
        if apply_act and act_layer is not None:
            self.act = act_layer(inplace=inplace, **(act_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


def switchnorm_act_factory(act_layer: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """A plain function timm accepts as a norm+act layer, with ``act_layer`` bound.

    timm passes function-typed norm layers through unchanged (it would reject a class it
    does not know), so the activation must be bound here.
    """

    def make(num_features: int, **kwargs: Any) -> nn.Module:
        kwargs.setdefault("act_layer", act_layer)
        return SwitchNormAct2d(num_features, **kwargs)

    return make
