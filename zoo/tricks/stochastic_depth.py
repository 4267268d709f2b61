"""Stochastic depth (Huang, Sun, Liu, Sedra, Weinberger 2016, "Deep Networks with Stochastic
Depth", ECCV): in training each residual branch is dropped for a whole sample with a
probability growing linearly with depth up to ``rate`` (the deepest block), and the kept
branches are scaled by 1/(1 - p); in evaluation nothing is dropped. Switched on through the
model option ``drop_path_rate`` (torchvision ``StochasticDepth``, or timm's ``DropPath``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, TrainContext, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class StochasticDepthParams:
    #: Drop probability of the deepest residual branch.
    rate: float = 0.05


def drop_rates(model: nn.Module) -> list[float]:
    """The drop probability of every stochastic-depth layer of ``model``, in module order."""
    from timm.layers import DropPath
    from torchvision.ops import StochasticDepth as TvStochasticDepth

    rates = []
    for m in model.modules():
        if isinstance(m, TvStochasticDepth) and m.p > 0:
            rates.append(float(m.p))
        elif isinstance(m, DropPath) and m.drop_prob > 0:
            rates.append(float(m.drop_prob))
    return rates


@register_trick
class StochasticDepth(Trick):
    name = "stochastic_depth"
    paper = "Huang et al. 2016, Deep Networks with Stochastic Depth (ECCV)"
    touches = ("model",)
    Params = StochasticDepthParams
    needs_options = ("drop_path_rate",)
    order = 21

    def __init__(self, params: StochasticDepthParams) -> None:
        super().__init__(params)
        self.rates: list[float] | None = None

    @classmethod
    def check(cls, params: StochasticDepthParams) -> None:
        if not 0 < params.rate < 1:
            raise ConfigError(
                f"tricks.stochastic_depth.rate: must be in (0, 1), got {params.rate}"
            )

    def model_options(self) -> dict[str, Any]:
        return {"drop_path_rate": self.params.rate}

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        self.rates = drop_rates(model)
        return model

    def audit(self) -> Audit:
        if not self.rates:
            return Audit(self.name, "stochastic_depth: no effect, the model has no droppable "
                                    "residual branch", effective=False)
        lo, hi = min(self.rates), max(self.rates)
        return Audit(self.name, f"stochastic_depth: {len(self.rates)} residual branches "
                                f"dropped with p from {lo:.3g} to {hi:.3g}",
                     details={"branches": len(self.rates), "max_rate": hi})
