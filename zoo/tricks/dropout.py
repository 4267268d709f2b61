"""Dropout before the classifier (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent
Neural Networks from Overfitting", JMLR): the pooled features are dropped with probability
``rate`` in training. Switched on through the model option ``drop_rate``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, TrainContext, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class DropoutParams:
    #: Probability of dropping each pooled feature.
    rate: float = 0.3


@register_trick
class Dropout(Trick):
    name = "dropout"
    paper = ("Srivastava et al. 2014, Dropout: A Simple Way to Prevent Neural Networks from "
             "Overfitting (JMLR)")
    touches = ("model",)
    Params = DropoutParams
    needs_options = ("drop_rate",)
    order = 20

    def __init__(self, params: DropoutParams) -> None:
        super().__init__(params)
        self.found: int | None = None

    @classmethod
    def check(cls, params: DropoutParams) -> None:
        if not 0 < params.rate < 1:
            raise ConfigError(f"tricks.dropout.rate: must be in (0, 1), got {params.rate}")

    def model_options(self) -> dict[str, Any]:
        return {"drop_rate": self.params.rate}

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        from torch import nn

        # torchvision-style models hold an nn.Dropout; timm heads apply F.dropout with the
        # model's ``drop_rate`` attribute.
        layers = sum(1 for m in model.modules()
                     if isinstance(m, nn.Dropout) and m.p == self.params.rate)
        functional = int(getattr(model, "drop_rate", 0.0) == self.params.rate and layers == 0)
        self.found = layers + functional
        return model

    def audit(self) -> Audit:
        rate = self.params.rate
        if not self.found:
            return Audit(self.name, f"dropout: no effect, the model has no dropout at {rate} "
                                    "before its classifier", effective=False)
        return Audit(self.name, f"dropout: p={rate} on the pooled features before the "
                                "classifier", details={"rate": rate})
