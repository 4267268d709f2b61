"""What relu6 and swish share: the model option ``act`` and an audit of the activations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from zoo.tricks.base import Audit, TrainContext, Trick

if TYPE_CHECKING:
    from torch import nn

ACT_CONFLICT = "both replace the activation"


class ActivationTrick(Trick):
    """Replace the network's activations by ``act`` (model option ``act``)."""

    touches = ("model",)
    needs_options = ("act",)
    conflict_reason = ACT_CONFLICT
    order = 23
    act: ClassVar[str]
    #: The activation's class in ``torch.nn``, by name (torch is not imported to validate).
    act_class: ClassVar[str]

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.counts: tuple[int, int] | None = None

    def model_options(self) -> dict[str, Any]:
        return {"act": self.act}

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        from torch import nn

        act_class = getattr(nn, self.act_class)
        replaced = sum(1 for m in model.modules() if type(m) is act_class)
        relu_left = sum(1 for m in model.modules() if type(m) is nn.ReLU)
        self.counts = (replaced, relu_left)
        return model

    def audit(self) -> Audit:
        replaced, left = self.counts or (0, 0)
        return Audit(self.name, f"{self.name}: {replaced} activations are {self.act_class}, "
                                f"{left} plain ReLU left", effective=replaced > 0,
                     details={"replaced": replaced, "relu_left": left})
