"""No bias decay (Jia et al. 2018, "Highly Scalable Deep Learning Training System with
Mixed-Precision: Training ImageNet in Four Minutes", sec. 5.2; also He et al. 2019, "Bag of
Tricks for Image Classification", sec. 3.1): weight decay only on the weights of
convolutions and fully connected layers; biases and the affine parameters of normalisation
layers (BN γ and β, SwitchNorm's weights) are not decayed.

The split is by shape, as timm does: every parameter with one dimension or none is a bias
or a normalisation parameter; every weight of a convolution or linear layer has two or more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn


def split_decay(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each group becomes two: its weights (decay kept) and the rest (weight_decay 0)."""
    out = []
    for group in groups:
        params = list(group["params"])
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        if decay:
            out.append({**group, "params": decay})
        if no_decay:
            out.append({**group, "params": no_decay, "weight_decay": 0.0})
    return out


@register_trick
class NoBiasDecay(Trick):
    name = "no_bias_decay"
    paper = ("Jia et al. 2018, Highly Scalable Deep Learning Training System with "
             "Mixed-Precision: Training ImageNet in Four Minutes")
    touches = ("param_groups",)
    order = 40

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.counts: tuple[int, int, bool] | None = None

    def param_groups(self, model: nn.Module, groups: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
        new = split_decay(groups)
        with_decay = sum(len(g["params"]) for g in new if g.get("weight_decay", 0) > 0)
        without = sum(len(g["params"]) for g in new) - with_decay
        before = sum(len(g["params"]) for g in groups if g.get("weight_decay", 0) > 0)
        self.counts = (without, with_decay, with_decay < before)
        return new

    def audit(self) -> Audit:
        if self.counts is None:
            return Audit(self.name, "no_bias_decay: not applied", effective=False)
        without, with_decay, changed = self.counts
        summary = f"no_bias_decay: {without} tensors without weight decay, {with_decay} with"
        if not changed:
            summary += " (no effect: nothing was decayed that is now not)"
        return Audit(self.name, summary, effective=changed,
                     details={"without_decay": without, "with_decay": with_decay})
