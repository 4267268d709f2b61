"""Zero-γ (Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
sec. 5.1): the last BN of every residual branch starts with γ = 0, so every residual block
starts as the identity. Switched on through the model option ``zero_init_last``, which the
models implement as a per-block ``zero_init_last()`` hook (pre-activation blocks zero their
last convolution instead; see ``zoo/models/preact_resnet.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.tricks.base import Audit, TrainContext, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    import torch
    from torch import nn


def _norm_types() -> tuple[type[nn.Module], ...]:
    """The normalisation layers whose weight zero-γ zeroes."""
    from torch import nn

    from zoo.models.switchnorm import SwitchNorm2d

    return (nn.modules.batchnorm._NormBase, nn.GroupNorm, SwitchNorm2d)


def _all_zero(weight: torch.Tensor | None) -> bool:
    return weight is not None and not bool(weight.detach().any())


def zeroed_in_blocks(model: nn.Module) -> dict[str, int]:
    """Count residual blocks (modules with a ``zero_init_last`` hook) and, inside them, the
    norm layers whose weight is all zero (or, with none of those, the zeroed convolutions)."""
    from torch import nn

    norm_types = _norm_types()
    counts = {"blocks": 0, "zeroed_blocks": 0, "norms": 0, "convs": 0}
    for block in model.modules():
        if not callable(getattr(block, "zero_init_last", None)):
            continue
        counts["blocks"] += 1
        norms = sum(1 for m in block.modules()
                    if isinstance(m, norm_types) and _all_zero(getattr(m, "weight", None)))
        convs = 0 if norms else sum(1 for m in block.modules()
                                    if isinstance(m, nn.Conv2d) and _all_zero(m.weight))
        counts["norms"] += norms
        counts["convs"] += convs
        counts["zeroed_blocks"] += int(norms + convs > 0)
    return counts


@register_trick
class ZeroGamma(Trick):
    name = "zero_gamma"
    paper = "Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour"
    touches = ("init",)
    needs_options = ("zero_init_last",)
    order = 22

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.counts: dict[str, int] | None = None

    def model_options(self) -> dict[str, Any]:
        return {"zero_init_last": True}

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        self.counts = zeroed_in_blocks(model)
        return model

    def audit(self) -> Audit:
        c = self.counts
        if not c or not c["zeroed_blocks"]:
            return Audit(self.name, "zero_gamma: no effect, no residual block starts at zero",
                         effective=False)
        what = (f"{c['norms']} BN weights set to 0" if c["norms"]
                else f"{c['convs']} last convolutions set to 0")
        return Audit(self.name, f"zero_gamma: {what} ({c['zeroed_blocks']} of {c['blocks']} "
                                "residual blocks start as the identity)", details=dict(c))
