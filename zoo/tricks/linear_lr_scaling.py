"""Linear learning-rate scaling (Goyal et al. 2017, "Accurate, Large Minibatch SGD:
Training ImageNet in 1 Hour", sec. 2.1; Bag of Tricks, He et al. 2019, sec. 3.1): the
learning rate grows with the global batch, ``lr = optim.lr * global batch / base_batch``
with ``base_batch`` 256, so ``optim.lr`` is the rate for 256 images (0.1 for ResNet-50).

The global batch is known only when the run starts (``batch_size`` x world size); the
scaled rate is recorded in ``config.json`` under ``resolved`` (the config itself, and so
the run's hash, keeps the rate as written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, Resolved, RunFacts, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LinearLRScalingParams:
    #: The batch ``optim.lr`` is meant for.
    base_batch: int = 256


def scaled_lr(lr: float, global_batch: int, base_batch: int = 256) -> float:
    """Goyal et al.'s rule: ``lr * global_batch / base_batch``."""
    return lr * global_batch / base_batch


@register_trick
class LinearLRScaling(Trick):
    name = "linear_lr_scaling"
    paper = "Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour"
    touches = ("optimizer",)
    Params = LinearLRScalingParams
    order = 5

    def __init__(self, params: LinearLRScalingParams) -> None:
        super().__init__(params)
        self.configured: float | None = None  # optim.lr, from resolve
        self.seen: tuple[float, float] | None = None  # (configured, optimizer's) lr

    @classmethod
    def check(cls, params: LinearLRScalingParams) -> None:
        if params.base_batch < 1:
            raise ConfigError(f"tricks.linear_lr_scaling.base_batch: must be at least 1, "
                              f"got {params.base_batch}")

    def resolve(self, facts: RunFacts) -> Resolved:
        self.configured = facts.lr
        return Resolved(lr=scaled_lr(facts.lr, facts.batch_size * facts.world_size,
                                     self.params.base_batch))

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        # What the optimizer was built with, before any scheduler rescales it.
        if self.configured is not None:
            self.seen = (self.configured, float(optimizer.param_groups[0]["lr"]))
        return optimizer

    def audit(self) -> Audit:
        if self.seen is None:
            return Audit(self.name, "linear_lr_scaling: not applied", effective=False)
        configured, used = self.seen
        if used == configured:
            return Audit(self.name, f"linear_lr_scaling: no effect, the global batch is "
                                    f"{self.params.base_batch} (lr {used:g})", effective=False)
        return Audit(self.name, f"linear_lr_scaling: lr {configured:g} -> {used:g}",
                     details={"configured_lr": configured, "lr": used})
