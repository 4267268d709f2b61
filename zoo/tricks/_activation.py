"""What relu6 and swish share: the model option ``act`` and an audit of the activations."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from zoo.tricks.base import Audit, TrainContext, Trick

ACT_CONFLICT = "both replace the activation"


class ActivationTrick(Trick):
    """Replace the network's activations by ``act`` (model option ``act``)."""

    touches = ("model",)
    needs_options = ("act",)
    conflict_reason = ACT_CONFLICT
    order = 23
    act: ClassVar[str]
    act_class: ClassVar[type[nn.Module]]

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.counts: tuple[int, int] | None = None

    def model_options(self) -> dict[str, Any]:
        return {"act": self.act}

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        replaced = sum(1 for m in model.modules() if type(m) is self.act_class)
        relu_left = sum(1 for m in model.modules() if type(m) is nn.ReLU)
        self.counts = (replaced, relu_left)
        return model

    def audit(self) -> Audit:
        replaced, left = self.counts or (0, 0)
        cls = self.act_class.__name__
        return Audit(self.name, f"{self.name}: {replaced} activations are {cls}, "
                                f"{left} plain ReLU left", effective=replaced > 0,
                     details={"replaced": replaced, "relu_left": left})
