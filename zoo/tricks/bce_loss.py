"""Binary cross-entropy loss (Wightman, Touvron, Jégou 2021, "ResNet strikes back: An
improved training procedure in timm", sec. 3.2; Beyer et al. 2020, "Are we done with
ImageNet?").

Each class is an independent sigmoid target instead of one softmax over the classes; with
mixup or cutmix the soft targets are the mixed one-hot vectors, and ``target_threshold``
(RSB A1: 0.2) binarises them, so a pasted class counts as present. Integer targets become
one-hot vectors smoothed by ``smoothing`` (off value ``s / C``, on value ``1 - s + s / C``).
The loss is timm's ``BinaryCrossEntropy`` (mean over samples and classes), which replaces
the trainer's cross-entropy in the ``loss`` hook.
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
class BCELossParams:
    #: Label smoothing of integer targets (soft targets from mixup/cutmix pass as they are).
    smoothing: float = 0.0
    #: Targets above this value become 1, the others 0 (None: soft targets stay soft).
    target_threshold: float | None = None


@register_trick
class BCELoss(Trick):
    name = "bce_loss"
    paper = "Wightman, Touvron, Jégou 2021, ResNet strikes back: An improved training " \
            "procedure in timm (arXiv:2110.00476)"
    touches = ("loss", "targets")
    Params = BCELossParams
    conflicts = ("label_smoothing",)
    conflict_reason = "bce_loss replaces the cross-entropy; use bce_loss.smoothing"
    order = 100
    stoppable = True

    def __init__(self, params: BCELossParams) -> None:
        super().__init__(params)
        self.steps = 0  # batches whose loss was BCE
        self.soft = 0  # of them, batches with soft (mixed) targets
        self.binarised = 0.0  # target entries the threshold changed, summed

    @classmethod
    def check(cls, params: BCELossParams) -> None:
        if not 0.0 <= params.smoothing < 1.0:
            raise ConfigError(f"tricks.bce_loss.smoothing: must be in [0, 1), "
                              f"got {params.smoothing}")
        t = params.target_threshold
        if t is not None and not 0.0 <= t < 1.0:
            raise ConfigError(f"tricks.bce_loss.target_threshold: must be in [0, 1) or null, "
                              f"got {t}")

    def loss(self, inner: Callable[..., torch.Tensor], ctx: TrainContext
             ) -> Callable[..., torch.Tensor]:
        from timm.loss import BinaryCrossEntropy

        bce = BinaryCrossEntropy(smoothing=self.params.smoothing,
                                 target_threshold=self.params.target_threshold)
        threshold = self.params.target_threshold

        def bce_loss(logits: torch.Tensor, targets: torch.Tensor,
                     images: torch.Tensor) -> torch.Tensor:
            self.steps += 1
            if targets.shape == logits.shape:
                self.soft += 1
                if threshold is not None:  # a device op, read only by the audit
                    hard = targets.gt(threshold).to(targets.dtype)
                    self.binarised += float((hard != targets).float().mean())
            return bce(logits, targets)

        return bce_loss

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "soft": self.soft, "binarised": self.binarised}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.soft = int(state["steps"]), int(state["soft"])
        self.binarised = float(state["binarised"])

    def audit(self) -> Audit:
        if not self.steps:
            return Audit(self.name, "bce_loss: no batch trained with it", effective=False)
        summary = f"bce_loss: {self.steps} batches trained with binary cross-entropy, " \
                  f"{self.soft} with soft targets"
        if self.params.target_threshold is not None and self.soft:
            summary += f", {100 * self.binarised / self.soft:.1f}% of their target " \
                       "entries binarised"
        return Audit(self.name, summary, details={"steps": self.steps, "soft": self.soft})
