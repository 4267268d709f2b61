"""What mixup and cutmix share: torchvision's transforms driven by the run's generator, the
result of one mixed batch, and the counting behind their audit.

torchvision's ``v2.MixUp``/``v2.CutMix`` draw from the global RNG. Here their parameters
are drawn with the global RNG forked and seeded from a value drawn from ``ctx.generator``,
so a batch's mixing depends only on (seed, rank, epoch, step): reproducible and identical
after a resume. Both pair each sample with the previous one of the batch (``roll(1)``),
which is a random pairing because the sampler shuffles; targets become
``lam * onehot(y_i) + (1 - lam) * onehot(y_{i-1})``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.tricks.base import Audit, TrainContext, Trick

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torchvision.transforms import v2


@dataclass(frozen=True)
class MixedBatch:
    """One mixed batch: images and soft targets, and what was drawn for it."""

    images: torch.Tensor
    targets: torch.Tensor
    #: Weight of each sample's own image and label (cutmix: 1 - box area / image area).
    lam: float
    #: cutmix's pasted box (x1, y1, x2, y2); None for mixup.
    box: tuple[int, int, int, int] | None = None


@contextmanager
def seeded_from(generator: torch.Generator | None) -> Iterator[None]:
    """Run the block with the global CPU RNG seeded from one draw of ``generator`` (the
    global RNG's state is restored afterwards). ``None`` leaves the global RNG as it is."""
    if generator is None:
        yield
        return
    import torch

    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def mix_with(
    transform: v2.MixUp | v2.CutMix,
    images: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator | None,
) -> MixedBatch:
    """Apply torchvision's mixup/cutmix ``transform`` with parameters drawn from
    ``generator``; return the result with the drawn lambda (and box)."""
    with seeded_from(generator):
        params: dict[str, Any] = transform.make_params([images])
    params.update(labels=targets, batch_size=images.shape[0])
    mixed_images = transform.transform(images, params)
    mixed_targets = transform.transform(targets, params)
    lam = float(params.get("lam_adjusted", params.get("lam")))
    return MixedBatch(mixed_images, mixed_targets, lam, params.get("box"))


class MixTrick(Trick):
    """A batch trick that mixes pairs of samples; mixup and cutmix are its alternatives."""

    touches = ("batch", "targets")
    batch_group = "mix"
    order = 60
    stoppable = True

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.applied = 0  # batches mixed
        self.steps = 0  # training steps seen (the alternative's batches included)
        self.lam_sum = 0.0

    def mix(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int,
            generator: torch.Generator | None) -> MixedBatch:
        raise NotImplementedError

    def batch(
        self, images: torch.Tensor, targets: torch.Tensor, ctx: TrainContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.mix(images, targets, ctx.num_classes, ctx.generator)
        self.applied += 1
        self.lam_sum += out.lam
        return out.images, out.targets

    def after_step(self, model: nn.Module) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "steps": self.steps, "lam_sum": self.lam_sum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.applied = int(state["applied"])
        self.steps = int(state["steps"])
        self.lam_sum = float(state["lam_sum"])

    def audit(self) -> Audit:
        if self.applied == 0:
            return Audit(self.name, f"{self.name}: applied to no batch", effective=False)
        share = 100.0 * self.applied / max(self.steps, self.applied)
        mean = self.lam_sum / self.applied
        return Audit(
            self.name,
            f"{self.name}: applied to {share:.0f}% of batches, mean lambda {mean:.2f}",
            details={"batches": self.applied, "steps": self.steps, "mean_lambda": mean},
        )
