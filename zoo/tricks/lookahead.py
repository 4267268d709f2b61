"""Lookahead (Zhang, Lucas, Hinton, Ba 2019, "Lookahead Optimizer: k steps forward, 1 step
back", NeurIPS): the inner optimizer takes ``k`` fast steps; then the slow weights move a
fraction ``alpha`` towards the fast ones, ``slow += alpha * (fast - slow)``, and the fast
weights restart from them. The slow weights start equal to the initial weights.

:class:`zoo.tricks._ops.Lookahead` is a real ``torch.optim.Optimizer`` over the inner
optimizer's own parameter groups (learning-rate schedules and ``GradScaler.unscale_``/``step``
reach both) and state (``state_dict()`` holds the slow weights and the step count, plain
tensors and numbers that load with ``torch.load(weights_only=True)``). timm's ``Lookahead``
creates the slow weights lazily at the first synchronisation, from the fast weights of that
moment, which skips the first slow update; this one follows the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    import torch

    from zoo.tricks._ops import Lookahead


@dataclass(frozen=True)
class LookaheadParams:
    #: Fast steps per slow update.
    k: int = 5
    #: Slow step size.
    alpha: float = 0.5


@register_trick
class LookaheadTrick(Trick):
    name = "lookahead"
    paper = "Zhang et al. 2019, Lookahead Optimizer: k steps forward, 1 step back (NeurIPS)"
    touches = ("optimizer",)
    Params = LookaheadParams
    order = 90

    def __init__(self, params: LookaheadParams) -> None:
        super().__init__(params)
        self.optimizer: Lookahead | None = None

    @classmethod
    def check(cls, params: LookaheadParams) -> None:
        if params.k < 1:
            raise ConfigError(f"tricks.lookahead.k: must be at least 1, got {params.k}")
        if not 0 < params.alpha <= 1:
            raise ConfigError(f"tricks.lookahead.alpha: must be in (0, 1], got {params.alpha}")

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        from zoo.tricks._ops import Lookahead

        self.optimizer = Lookahead(optimizer, self.params.k, self.params.alpha)
        return self.optimizer

    def audit(self) -> Audit:
        p = self.params
        if self.optimizer is None:
            return Audit(self.name, "lookahead: not applied", effective=False)
        steps = int(self.optimizer.param_groups[0]["lookahead_step"])
        syncs = steps // p.k
        return Audit(self.name, f"lookahead: {syncs} slow updates (k={p.k}, alpha={p.alpha}) "
                                f"over {steps} steps", effective=syncs > 0,
                     details={"slow_updates": syncs, "steps": steps})
