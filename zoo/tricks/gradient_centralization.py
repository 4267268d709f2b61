"""Gradient centralization (Yong, Huang, Hua, Zhang 2020, "Gradient Centralization: A New
Optimization Technique for Deep Neural Networks", ECCV): before the optimizer step, each
weight gradient is centred over all dimensions but the output channel,
``g -= g.mean(dim=(1, 2, 3))``. ``conv_only`` (the paper's default for ImageNet ResNets)
restricts it to convolution weights (4-d); otherwise fully connected weights are centred
too. Biases and normalisation parameters are never touched.

It runs after the gradients are final: after DDP's all-reduce and the GradScaler's unscale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class GradientCentralizationParams:
    #: Only convolution weights (4-d); false: also fully connected weights (2-d).
    conv_only: bool = True


def centralize_gradients(model: nn.Module, conv_only: bool = True) -> int:
    """Centre the gradient of every conv (and, unless ``conv_only``, linear) weight over all
    dimensions but the first. Returns how many gradients it centred."""
    import torch

    min_ndim = 4 if conv_only else 2
    n = 0
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None and p.ndim >= min_ndim:
                p.grad.sub_(p.grad.mean(dim=tuple(range(1, p.ndim)), keepdim=True))
                n += 1
    return n


@register_trick
class GradientCentralization(Trick):
    name = "gradient_centralization"
    paper = ("Yong et al. 2020, Gradient Centralization: A New Optimization Technique for "
             "Deep Neural Networks (ECCV)")
    touches = ("gradients",)
    Params = GradientCentralizationParams
    order = 80
    stoppable = True

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.tensors = 0  # centred per step (the last step's count)
        self.steps = 0

    def after_backward(self, model: nn.Module) -> None:
        self.tensors = centralize_gradients(model, self.params.conv_only)
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"tensors": self.tensors, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tensors, self.steps = int(state["tensors"]), int(state["steps"])

    def audit(self) -> Audit:
        kind = "conv" if self.params.conv_only else "conv and linear"
        return Audit(self.name, f"gradient_centralization: {self.tensors} {kind} weight "
                                f"gradients centred at each of {self.steps} steps",
                     effective=self.tensors > 0 and self.steps > 0,
                     details={"tensors": self.tensors, "steps": self.steps})
