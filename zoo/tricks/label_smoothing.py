"""Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 7).

The target distribution becomes ``(1 - eps) * onehot + eps / K``; PyTorch's
``CrossEntropyLoss(label_smoothing=eps)`` computes exactly that, also for soft targets
(so mixed targets from mixup are smoothed the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, TrainContext, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LabelSmoothingParams:
    smoothing: float = 0.1


@register_trick
class LabelSmoothing(Trick):
    name = "label_smoothing"
    paper = "Szegedy et al. 2016, Rethinking the Inception Architecture for Computer Vision"
    touches = ("loss", "targets")
    Params = LabelSmoothingParams
    stoppable = True
    conflicts = ("bce_loss",)
    conflict_reason = "bce_loss replaces the cross-entropy; use bce_loss.smoothing"

    @classmethod
    def check(cls, params: LabelSmoothingParams) -> None:
        if not 0.0 <= params.smoothing < 1.0:
            raise ConfigError(
                f"tricks.label_smoothing.smoothing: must be in [0, 1), got {params.smoothing}"
            )

    def __init__(self, params: LabelSmoothingParams) -> None:
        super().__init__(params)
        self.steps = 0  # batches whose cross-entropy smoothed its targets

    def loss_kwargs(self) -> dict[str, Any]:
        return {"label_smoothing": self.params.smoothing}

    def loss(self, inner: Callable[..., torch.Tensor], ctx: TrainContext
             ) -> Callable[..., torch.Tensor]:
        def counted(logits: torch.Tensor, targets: torch.Tensor,
                    images: torch.Tensor) -> torch.Tensor:
            self.steps += 1
            return inner(logits, targets, images)

        return counted

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))

    def audit(self) -> Audit:
        s = self.params.smoothing
        if not self.steps or s == 0:
            return Audit(self.name, f"label_smoothing: no effect ({self.steps} batches, "
                                    f"smoothing {s})", effective=False)
        return Audit(self.name, f"label_smoothing: cross-entropy targets smoothed by {s} "
                                f"in {self.steps} batches",
                     details={"smoothing": s, "steps": self.steps})
