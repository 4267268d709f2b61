"""What a trick is, and the points of the training loop where it may act.

The trainer never names a trick. It calls the hooks below, in this order, on the
:class:`TrickSet` built from the config; each trick overrides only the hooks it needs:

1. ``model_name(name)`` / ``model_options()``  choose the architecture and its options
2. ``apply_model(model, ctx)``                  model surgery after creation (before DDP)
3. ``param_groups(model, groups)``              how parameters are grouped for the optimizer
4. ``wrap_optimizer(optimizer)``                wrap the optimizer (e.g. Lookahead)
5. ``transforms(pre, post)``                    training image ops: uint8 ``pre`` and the
                                                float ``post`` after normalisation
6. ``batch(images, targets, ctx)``              per training batch on the device; may turn
                                                integer targets into soft (N, C) targets
7. ``loss_kwargs()``                            keyword arguments of CrossEntropyLoss
8. ``after_backward(model)``                    gradients are final (unscaled), before step
9. ``after_step(model)``                        after the optimizer step
10. ``eval_model(model)``                       the module evaluated (e.g. an EMA copy)
11. ``state_dict()`` / ``load_state_dict()``    trick state saved in the checkpoint
12. ``audit()``                                 what the trick did, written to result.json

Hooks return new values rather than stashing state between events.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

#: What a trick may touch, as declared by each trick and listed by ``ablate tricks``.
TOUCHES = ("model", "init", "loss", "targets", "batch", "transform", "optimizer",
           "param_groups", "gradients", "eval")


@dataclass(frozen=True)
class NoParams:
    """A trick without parameters."""


@dataclass
class TrainContext:
    """Facts about the run a hook may need."""

    num_classes: int
    world_size: int
    device: torch.device
    epochs: int
    steps_per_epoch: int
    #: CPU generator for the batch hooks, seeded from (seed, rank, epoch): reproducible
    #: and identical after a resume at an epoch boundary.
    generator: torch.Generator | None = None


@dataclass
class Audit:
    """What one trick did in one run."""

    trick: str
    summary: str
    effective: bool = True
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Trick:
    """Base class. Subclasses set the class attributes and override hooks."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    touches: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type] = NoParams
    #: Tricks that cannot be combined with this one.
    conflicts: ClassVar[tuple[str, ...]] = ()
    #: Hooks run in ascending order (then by name) when several tricks act at one point.
    order: ClassVar[int] = 100

    def __init__(self, params: Any) -> None:
        self.params = params

    @classmethod
    def check(cls, params: Any) -> None:
        """Range checks of the parameters; raise ConfigError naming trick and parameter."""

    def model_name(self, name: str) -> str:
        return name

    def model_options(self) -> dict[str, Any]:
        return {}

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        return model

    def param_groups(self, model: nn.Module, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return groups

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        return optimizer

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        return pre, post

    def batch(
        self, images: torch.Tensor, targets: torch.Tensor, ctx: TrainContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return images, targets

    def loss_kwargs(self) -> dict[str, Any]:
        return {}

    def after_backward(self, model: nn.Module) -> None:
        return None

    def after_step(self, model: nn.Module) -> None:
        return None

    def eval_model(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def audit(self) -> Audit:
        return Audit(self.name, f"{self.name}: on")
