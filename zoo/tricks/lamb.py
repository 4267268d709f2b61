"""LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76
minutes", ICLR): Adam's update scaled per tensor by the trust ratio ``|w| / |update|``; the
optimizer of ResNet strikes back's A1/A2 recipes (lr 5e-3, weight decay 0.01/0.02).

timm's ``Lamb`` replaces the trainer's SGD over the same parameter groups (so
no_bias_decay's groups keep their zero decay); ``lr`` and ``weight_decay`` default to the
config's ``optim`` values, which the schedule then drives as it drives SGD's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class LambParams:
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-6
    #: Clip the global gradient norm to this before the update (timm's default 1.0).
    max_grad_norm: float | None = 1.0


@register_trick
class Lamb(Trick):
    name = "lamb"
    paper = "You et al. 2020, Large Batch Optimization for Deep Learning: Training BERT in " \
            "76 minutes (ICLR)"
    touches = ("optimizer",)
    Params = LambParams
    order = 85  # before lookahead, which wraps the optimizer it is given

    def __init__(self, params: LambParams) -> None:
        super().__init__(params)
        self.replaced: str | None = None
        self.steps = 0

    @classmethod
    def check(cls, params: LambParams) -> None:
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(params, key) < 1:
                raise ConfigError(f"tricks.lamb.{key}: must be in [0, 1), "
                                  f"got {getattr(params, key)}")
        if params.eps <= 0:
            raise ConfigError(f"tricks.lamb.eps: must be positive, got {params.eps}")

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        from timm.optim import Lamb as TimmLamb

        groups = [{"params": g["params"], "weight_decay": g["weight_decay"]}
                  for g in optimizer.param_groups]
        defaults: dict[str, Any] = optimizer.defaults
        self.replaced = type(optimizer).__name__
        p = self.params
        return TimmLamb(groups, lr=defaults["lr"], betas=(p.beta1, p.beta2), eps=p.eps,
                        weight_decay=defaults["weight_decay"], max_grad_norm=p.max_grad_norm)

    def after_step(self, model: nn.Module) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])

    def audit(self) -> Audit:
        if self.replaced is None or not self.steps:
            return Audit(self.name, "lamb: no step taken with LAMB", effective=False)
        return Audit(self.name, f"lamb: {self.replaced} replaced by LAMB for {self.steps} "
                                "steps", details={"steps": self.steps})
