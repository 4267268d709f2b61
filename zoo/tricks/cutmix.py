"""CutMix (Yun, Han, Oh, Chun, Choe, Yoo 2019, "CutMix: Regularization Strategy to Train
Strong Classifiers with Localizable Features", ICCV).

A box of area ``(1 - lam) * H * W`` (``lam ~ Beta(alpha, alpha)``, centre uniform, clipped
at the border) is cut from the paired sample and pasted; the labels are mixed by the
area actually pasted (torchvision ``v2.CutMix``; see :mod:`zoo.tricks._mixing` for the
pairing and the seeding). With mixup in the same run, each batch gets one of the two.
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
class CutMixParams:
    #: Beta(alpha, alpha) of the kept area; the paper uses 1.0 (uniform).
    alpha: float = 1.0


def cutmix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    alpha: float,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Paste a box of the previous sample of the batch into each sample; ``lam`` is the
    share of the image that stays its own."""
    from torchvision.transforms import v2

    return mix_with(v2.CutMix(alpha=alpha, num_classes=num_classes), images, targets, generator)


@register_trick
class CutMix(MixTrick):
    name = "cutmix"
    paper = ("Yun et al. 2019, CutMix: Regularization Strategy to Train Strong Classifiers "
             "with Localizable Features (ICCV)")
    Params = CutMixParams
    order = 61

    @classmethod
    def check(cls, params: CutMixParams) -> None:
        if not params.alpha > 0:
            raise ConfigError(f"tricks.cutmix.alpha: must be positive, got {params.alpha}")

    def mix(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int,
            generator: torch.Generator | None) -> MixedBatch:
        return cutmix_batch(images, targets, num_classes, self.params.alpha, generator)
