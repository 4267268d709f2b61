"""Exponential moving average of the weights, evaluated in place of the trained weights
(Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by Averaging"; as in
Tan & Le 2019, EfficientNet, with decay 0.9999).

After every optimizer step ``ema = decay * ema + (1 - decay) * w`` over parameters and
buffers (BN statistics), with ``torch.optim.swa_utils.AveragedModel`` and
``get_ema_multi_avg_fn``; the first update copies the weights. Validation scores the
average; the checkpoint holds it (the trick's state), so a resumed run continues it.
"""

from __future__ import annotations

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

    @classmethod
    def check(cls, params: EmaParams) -> None:
        if not 0 < params.decay < 1:
            raise ConfigError(f"tricks.ema.decay: must be in (0, 1), got {params.decay}")

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.params.decay),
                                 use_buffers=True)
        return model

    def after_step(self, model: nn.Module) -> None:
        if self.ema is not None:
            self.ema.update_parameters(unwrap(model))

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

    def audit(self) -> Audit:
        updates = 0 if self.ema is None else int(self.ema.n_averaged)
        return Audit(self.name, f"ema: evaluated on the average of {updates} updates "
                                f"(decay {self.params.decay})", effective=updates > 0,
                     details={"updates": updates, "decay": self.params.decay})
