"""What relu6 and swish share: the model option ``act`` and an audit of the activations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from zoo.tricks.base import Audit, TrainContext, Trick, changed_modules

if TYPE_CHECKING:
    from torch import nn

ACT_CONFLICT = "both replace the activation"


class ActivationTrick(Trick):
    """Replace the network's activations by ``act`` (model option ``act``).

    The audit compares the built network with the one built without the option: a model
    whose activations already are ``act`` (ReLU6 in MobileNetV2) is left unchanged, and the
    audit says so (``effective`` false)."""

    touches = ("model",)
    needs_options = ("act",)
    conflict_reason = ACT_CONFLICT
    order = 23
    act: ClassVar[str]
    #: The activation's class in ``torch.nn``, by name (torch is not imported to validate).
    act_class: ClassVar[str]

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.counts: tuple[int, int, int] | None = None

    def model_options(self) -> dict[str, Any]:
        return {"act": self.act}

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        from torch import nn

        act_class = getattr(nn, self.act_class)
        present = sum(1 for m in model.modules() if type(m) is act_class)
        relu_left = sum(1 for m in model.modules() if type(m) is nn.ReLU)
        self.counts = (changed_modules(model, ctx, self.model_options()), present, relu_left)
        return model

    def audit(self) -> Audit:
        changed, present, left = self.counts or (0, 0, 0)
        details = {"replaced": changed, "activations": present, "relu_left": left}
        if not changed:
            return Audit(self.name, f"{self.name}: no effect, the model's {present} "
                                    f"activations already are {self.act_class}",
                         effective=False, details=details)
        return Audit(self.name, f"{self.name}: {changed} modules changed, {present} "
                                f"activations are {self.act_class}, {left} plain ReLU left",
                     details=details)
