"""A lower training resolution (Touvron, Vedaldi, Douze, Jégou 2019, "Fixing the train-test
resolution discrepancy", NeurIPS): random-resized crops enlarge objects by about
``1 / sqrt(mean crop area)``, so a network trained at ``size`` sees objects in evaluation
(centre crop at ``data.image_size``) at their training scale when the test side is larger
than the training side; ResNet strikes back's A3 trains at 160 px and tests at 224 px.

Training crops are ``size`` px; evaluation keeps ``data.image_size`` (the FixRes test-size
fix without fine-tuning). Training costs ``(size / image_size)^2`` of the MACs; the run's
MACs are counted at the evaluation size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, TrainContext, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TrainResolutionParams:
    #: Side of the training crops, in pixels.
    size: int = 160


@register_trick
class TrainResolution(Trick):
    name = "train_resolution"
    paper = "Touvron et al. 2019, Fixing the train-test resolution discrepancy (NeurIPS)"
    touches = ("data",)
    Params = TrainResolutionParams
    order = 6

    def __init__(self, params: TrainResolutionParams) -> None:
        super().__init__(params)
        self.seen: tuple[int, int] | None = None  # (train side seen, eval side)

    @classmethod
    def check(cls, params: TrainResolutionParams) -> None:
        if params.size < 1:
            raise ConfigError(f"tricks.train_resolution.size: must be at least 1, "
                              f"got {params.size}")

    def train_image_size(self, size: int) -> int:
        return self.params.size

    def batch(self, images: torch.Tensor, targets: torch.Tensor, ctx: TrainContext
              ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.seen is None:
            self.seen = (int(images.shape[-1]), ctx.image_size)
        return images, targets

    def state_dict(self) -> dict[str, Any]:
        return {"seen": list(self.seen) if self.seen else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = tuple(state["seen"]) if state.get("seen") else None  # type: ignore[assignment]

    def audit(self) -> Audit:
        if self.seen is None:
            return Audit(self.name, "train_resolution: no batch seen", effective=False)
        train, test = self.seen
        if train == test:
            return Audit(self.name, f"train_resolution: no effect, trained and evaluated at "
                                    f"{train} px", effective=False)
        return Audit(self.name, f"train_resolution: trained at {train} px, evaluated at "
                                f"{test} px", details={"train_size": train, "test_size": test})
