"""Exponential moving average of the weights, evaluated in place of the trained weights
(Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by Averaging"; as in
Tan & Le 2019, EfficientNet, with decay 0.9999).

After every optimizer step ``ema = d * ema + (1 - d) * w`` over parameters and buffers (BN
statistics), with ``torch.optim.swa_utils.AveragedModel``; the first update copies the
weights. ``d`` is ``decay``, or with ``warmup`` the rule of TensorFlow's
``ExponentialMovingAverage(num_updates=...)`` that EfficientNet's reference code uses:
the k-th average after the copy takes ``d = min(decay, (1 + k) / (10 + k))``, so a short
run averages its recent weights instead of its starting ones. Validation scores the
average; the checkpoint holds it (the trick's state), so a resumed run continues it.

The audit reports how much of the average is still the starting weights (the product of
the ``d`` used so far): at decay 0.9999 without warmup, 1,000 steps leave 90% of it, and
the trick then says it had no effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, TrainContext, Trick, unwrap
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn
    from torch.optim.swa_utils import AveragedModel


@dataclass(frozen=True)
class EmaParams:
    #: Weight of the running average at each step.
    decay: float = 0.9999
    #: Start with small decays, ``min(decay, (1 + k) / (10 + k))`` at the k-th average.
    warmup: bool = False


def ema_decay(decay: float, k: int, warmup: bool) -> float:
    """The decay of the k-th average after the initial copy (k = 1, 2, ...)."""
    return min(decay, (1 + k) / (10 + k)) if warmup else decay


def start_share(decay: float, averages: int, warmup: bool) -> float:
    """How much of the average the starting weights still hold after ``averages``
    averages: the product of their decays."""
    if not warmup:
        return decay ** averages
    return math.prod(ema_decay(decay, k, True) for k in range(1, averages + 1))


@register_trick
class Ema(Trick):
    name = "ema"
    paper = "Polyak & Juditsky 1992, Acceleration of Stochastic Approximation by Averaging"
    touches = ("eval",)
    Params = EmaParams
    #: Last: the average copies the model after every other trick's surgery.
    order = 200

    def __init__(self, params: EmaParams) -> None:
        super().__init__(params)
        self.ema: AveragedModel | None = None
        #: Averages after the initial copy (AveragedModel.n_averaged - 1, kept on the host:
        #: reading n_averaged from the device would sync every step).
        self.averages = 0
        self.started = False

    @classmethod
    def check(cls, params: EmaParams) -> None:
        if not 0 < params.decay < 1:
            raise ConfigError(f"tricks.ema.decay: must be in (0, 1), got {params.decay}")

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        from torch.optim.swa_utils import AveragedModel

        self.ema = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
        return model

    def _average(self, ema: list[Any], current: list[Any], _n: Any) -> None:
        """AveragedModel's ``multi_avg_fn``: ``ema = d * ema + (1 - d) * current``."""
        import torch

        d = ema_decay(self.params.decay, self.averages, self.params.warmup)
        with torch.no_grad():
            if torch.is_floating_point(ema[0]) or torch.is_complex(ema[0]):
                torch._foreach_lerp_(ema, current, 1 - d)
            else:  # integer buffers (BN's num_batches_tracked), as torch's EMA does
                for e, c in zip(ema, current, strict=True):
                    e.copy_(e * d + c * (1 - d))

    def after_step(self, model: nn.Module) -> None:
        if self.ema is not None:
            if self.started:
                self.averages += 1  # this update averages (the first one copies)
            self.ema.update_parameters(unwrap(model))
            self.started = True

    def eval_model(self, model: nn.Module) -> nn.Module:
        if self.ema is None or int(self.ema.n_averaged) == 0:
            return model
        from zoo.distributed import broadcast_buffers

        broadcast_buffers(self.ema.module)  # every shard scored with rank 0's statistics
        return self.ema.module

    def state_dict(self) -> dict[str, Any]:
        return {} if self.ema is None else self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ema is not None and state:
            self.ema.load_state_dict(state)
            updates = int(self.ema.n_averaged)
            self.started, self.averages = updates > 0, max(updates - 1, 0)

    def audit(self) -> Audit:
        updates = 0 if self.ema is None else int(self.ema.n_averaged)
        p = self.params
        share = start_share(p.decay, max(updates - 1, 0), p.warmup)
        warm = ", warmup" if p.warmup else ""
        return Audit(self.name, f"ema: evaluated on the average of {updates} updates "
                                f"(decay {p.decay}{warm}); the starting weights are "
                                f"{100 * share:.2g}% of it",
                     effective=updates > 0 and share < 0.5,
                     details={"updates": updates, "decay": p.decay, "warmup": p.warmup,
                              "start_share": share})
