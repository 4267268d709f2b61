"""Sharpness-Aware Minimization (Foret, Kleiner, Mobahi, Neyshabur 2021, "Sharpness-Aware
Minimization for Efficiently Improving Generalization", ICLR), as a researcher's own trick.

Each step takes two forward-backward passes on the same batch: the gradient ``g`` at the
weights ``w`` gives the ascent step ``e = rho * g / ||g||`` (the worst case within an L2 ball
of radius ``rho``, to first order); the gradient at ``w + e`` then updates ``w`` through the
base optimizer (SGD with its momentum and weight decay), after ``w`` is restored. Under DDP
both gradients are averaged across processes (the paper's m-sharpness with m = the global
batch).

Not in the zoo: ``imports: [examples/sam.py]`` in a study brings it in (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from zoo import Audit, ConfigError, Trick, register_trick


class SAMOptimizer(torch.optim.Optimizer):
    """Wraps the base optimizer; shares its parameter groups (the schedule reaches both)
    and state, so its checkpoint is the base optimizer's."""

    def __init__(self, optimizer: torch.optim.Optimizer, rho: float) -> None:
        self.optimizer = optimizer
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state
        self.rho = rho
        self.ascents = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        if closure is None:
            raise RuntimeError("SAM steps with the trainer's closure (Trick.closure = True)")
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                     for p in params]))
        scale = self.rho / (norm + 1e-12)
        ascent = [p.grad * scale for p in params]
        for p, e in zip(params, ascent, strict=True):
            p.add_(e)  # to w + e
        with torch.enable_grad():
            closure()  # the gradients at w + e
        for p, e in zip(params, ascent, strict=True):
            p.sub_(e)  # back to w
        self.ascents += 1
        return self.optimizer.step()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state


@dataclass(frozen=True)
class SAMParams:
    #: Radius of the neighbourhood (the paper's best CIFAR values: 0.05 to 0.1).
    rho: float = 0.05


@register_trick
class SAM(Trick):
    name = "sam"
    paper = ("Foret et al. 2021, Sharpness-Aware Minimization for Efficiently Improving "
             "Generalization (ICLR)")
    touches = ("optimizer", "gradients")
    Params = SAMParams
    order = 88  # wraps the base optimizer (or LAMB), inside Lookahead
    closure = True  # the trainer hands step() the second forward-backward

    def __init__(self, params: SAMParams) -> None:
        super().__init__(params)
        self.optimizer: SAMOptimizer | None = None
        self.before = 0  # ascent steps of earlier sessions (a resumed run)

    @classmethod
    def check(cls, params: SAMParams) -> None:
        if not params.rho > 0:
            raise ConfigError(f"tricks.sam.rho: must be positive, got {params.rho}")

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        self.optimizer = SAMOptimizer(optimizer, self.params.rho)
        return self.optimizer

    def _ascents(self) -> int:
        return self.before + (self.optimizer.ascents if self.optimizer else 0)

    def state_dict(self) -> dict[str, Any]:
        return {"ascents": self._ascents()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.before = int(state.get("ascents", 0))

    def audit(self) -> Audit:
        n = self._ascents()
        return Audit(self.name, f"sam: {n} steps at the worst point within rho="
                                f"{self.params.rho}", effective=n > 0,
                     details={"ascent_steps": n, "rho": self.params.rho})
