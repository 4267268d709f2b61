"""Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 7).

The target distribution becomes ``(1 - eps) * onehot + eps / K``; PyTorch's
``CrossEntropyLoss(label_smoothing=eps)`` computes exactly that, also for soft targets
(so mixed targets from mixup are smoothed the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, Trick
from zoo.tricks.registry import register_trick


@dataclass(frozen=True)
class LabelSmoothingParams:
    smoothing: float = 0.1


@register_trick
class LabelSmoothing(Trick):
    name = "label_smoothing"
    paper = "Szegedy et al. 2016, Rethinking the Inception Architecture for Computer Vision"
    touches = ("loss", "targets")
    Params = LabelSmoothingParams

    @classmethod
    def check(cls, params: LabelSmoothingParams) -> None:
        if not 0.0 <= params.smoothing < 1.0:
            raise ConfigError(
                f"tricks.label_smoothing.smoothing: must be in [0, 1), got {params.smoothing}"
            )

    def loss_kwargs(self) -> dict[str, Any]:
        return {"label_smoothing": self.params.smoothing}

    def audit(self) -> Audit:
        s = self.params.smoothing
        return Audit(self.name, f"label_smoothing: cross-entropy targets smoothed by {s}",
                     effective=s > 0, details={"smoothing": s})
