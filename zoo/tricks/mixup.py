"""Mixup (Zhang, Cisse, Dauphin, Lopez-Paz 2018, "mixup: Beyond Empirical Risk
Minimization", ICLR).

Each training batch is replaced by convex combinations of pairs of samples and of their
one-hot labels, ``x = lam * x_i + (1 - lam) * x_j`` with ``lam ~ Beta(alpha, alpha)`` drawn
once per batch (torchvision ``v2.MixUp``; see :mod:`zoo.tricks._mixing` for the pairing
and the seeding). With cutmix in the same run, each batch gets one of the two, 50/50.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoo.errors import ConfigError
from zoo.tricks._mixing import MixedBatch, MixTrick, mix_with
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MixupParams:
    #: Beta(alpha, alpha) of the mixing weight; the paper uses 0.2 on ImageNet.
    alpha: float = 0.2


def mixup_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    alpha: float,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Mix each sample with the previous one of the batch by ``lam ~ Beta(alpha, alpha)``."""
    from torchvision.transforms import v2

    return mix_with(v2.MixUp(alpha=alpha, num_classes=num_classes), images, targets, generator)


@register_trick
class Mixup(MixTrick):
    name = "mixup"
    paper = "Zhang et al. 2018, mixup: Beyond Empirical Risk Minimization (ICLR)"
    Params = MixupParams

    @classmethod
    def check(cls, params: MixupParams) -> None:
        if not params.alpha > 0:
            raise ConfigError(f"tricks.mixup.alpha: must be positive, got {params.alpha}")

    def mix(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int,
            generator: torch.Generator | None) -> MixedBatch:
        return mixup_batch(images, targets, num_classes, self.params.alpha, generator)
