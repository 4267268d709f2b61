"""The torch classes of the tricks: Cutout's transform, DCNv2's convolution and the
Lookahead optimizer, each described in its trick's module.

They subclass torch and torchvision classes, so defining them imports torch (seconds). They
live here, imported by the hooks that use them, so that importing :mod:`zoo.tricks` to
validate a config does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision.ops import DeformConv2d
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


class Cutout(v2.Transform):
    """Zero a ``size`` x ``size`` square (or ``scale`` x the image side) centred uniformly
    at random, clipped at the image border. Acts on float (normalised) images (see
    :mod:`zoo.tricks.cutout`)."""

    def __init__(self, size: int | None = None, scale: float | None = None, p: float = 1.0
                 ) -> None:
        super().__init__()
        self.size, self.scale, self.p = size, scale, p

    def side(self, height: int, width: int) -> int:
        if self.size is not None:
            return self.size
        return max(1, round((self.scale if self.scale is not None else 0.5) * min(height, width)))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = F.get_size(flat_inputs[0])
        if torch.rand(1).item() >= self.p:
            return {"box": None}
        side = self.side(height, width)
        cy = int(torch.randint(height, (1,)))
        cx = int(torch.randint(width, (1,)))
        y1, x1 = max(0, cy - side // 2), max(0, cx - side // 2)
        y2, x2 = min(height, cy - side // 2 + side), min(width, cx - side // 2 + side)
        return {"box": (y1, x1, y2, x2)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["box"] is None:
            return inpt
        y1, x1, y2, x2 = params["box"]
        return F.erase(inpt, y1, x1, y2 - y1, x2 - x1, torch.zeros(()))


class ModulatedDeformConv2d(DeformConv2d):
    """DCNv2: a deformable convolution whose offsets and modulation are predicted from its
    input by a zero-initialised convolution (see :mod:`zoo.tricks.deformable_conv`)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride, padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation, groups=conv.groups,  # type: ignore[arg-type]
            bias=conv.bias is not None,
        )
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None and self.bias is not None:
                self.bias.copy_(conv.bias)
        kh, kw = self.kernel_size
        self.offset_mask = nn.Conv2d(
            conv.in_channels, 3 * kh * kw, conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride, padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation,  # type: ignore[arg-type]
        )
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        dy_dx_m = self.offset_mask(x)
        kk = self.kernel_size[0] * self.kernel_size[1]
        # NaN offsets (a diverged run) make torchvision's CPU kernel index out of bounds and
        # crash the process; as zeros the run fails with its non-finite loss instead.
        offset = torch.nan_to_num(dy_dx_m[:, : 2 * kk], nan=0.0)
        mask = 2.0 * torch.sigmoid(dy_dx_m[:, 2 * kk:])
        return super().forward(x, offset, mask)


class Lookahead(torch.optim.Optimizer):
    """Wrap ``optimizer``; its parameter groups and state are shared, not copied (see
    :mod:`zoo.tricks.lookahead`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5
                 ) -> None:
        if k < 1 or not 0 < alpha <= 1:
            raise ValueError(f"Lookahead: need k >= 1 and 0 < alpha <= 1, got {k}, {alpha}")
        self.optimizer = optimizer
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups  # the same dicts: lr changes reach both
        self.state = optimizer.state
        # GradScaler's fast path: with an inner optimizer that takes the scaler's found-inf
        # flag on the device (SGD with fused=True, as zoo builds it on CUDA), GradScaler
        # hands the flag to this wrapper (``found_inf``/``grad_scale`` attributes) and this
        # passes it on. Without it GradScaler checks the flag with .item(), a host sync per
        # step. The slow update then runs every k calls of step, a skipped (inf) step
        # counting as one of the k: knowing which steps were skipped would take the sync.
        self._step_supports_amp_scaling = bool(
            getattr(optimizer, "_step_supports_amp_scaling", False))
        for group in self.param_groups:
            group.setdefault("lookahead_k", k)
            group.setdefault("lookahead_alpha", alpha)
            group.setdefault("lookahead_step", 0)
            for p in group["params"]:
                self.state[p]["lookahead_slow"] = p.detach().clone()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        handed = [a for a in ("grad_scale", "found_inf") if hasattr(self, a)]
        for name in handed:  # from GradScaler (see __init__), for the inner optimizer
            setattr(self.optimizer, name, getattr(self, name))
        try:
            loss = self.optimizer.step(closure)
        finally:
            for name in handed:
                delattr(self.optimizer, name)
        for group in self.param_groups:
            group["lookahead_step"] += 1
            if group["lookahead_step"] % group["lookahead_k"] == 0:
                for p in group["params"]:
                    slow = self.state[p]["lookahead_slow"]
                    slow.add_(p - slow, alpha=group["lookahead_alpha"])
                    p.copy_(slow)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)
        # The inner optimizer rebuilt its groups and state: share the new ones.
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state

    def slow_weights(self) -> list[torch.Tensor]:
        return [self.state[p]["lookahead_slow"] for g in self.param_groups for p in g["params"]]
