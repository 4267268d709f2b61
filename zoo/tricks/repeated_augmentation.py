"""Repeated augmentation (Hoffer et al. 2020, "Augment Your Batch: Improving Generalization
Through Instance Repetition", CVPR; Berman et al. 2019, "MultiGrain"): every image is
drawn ``repeats`` times per epoch, each copy augmented independently; one of the recipes
of DeiT and of ResNet strikes back (``--aug-repeats 3``).

The sampler is timm's ``RepeatAugSampler`` (DeiT's ``RASampler``): the shuffled indices,
each repeated ``repeats`` times in a row, are dealt round-robin to the processes, so the
copies of one image land on different processes; each process keeps the first
``len(dataset) // 256 * 256 / world size`` (all of them below 256 images), so an epoch
stays about one pass of data. timm seeds the shuffle with the epoch alone; here it is
seeded from (seed, epoch), so the run's seed changes the order as it does without the
trick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, TrainContext, Trick
from zoo.tricks.registry import register_trick


def sampler_seed(seed: int, epoch: int) -> int:
    """The shuffle's seed of one epoch of a run seeded ``seed``."""
    return (seed * 1_000_003 + epoch) % 2**63


def repeat_aug_sampler(dataset: Any, num_replicas: int, rank: int, seed: int,
                       repeats: int) -> Any:
    """timm's ``RepeatAugSampler`` whose ``set_epoch(e)`` shuffles by (seed, e)."""
    from timm.data.distributed_sampler import RepeatAugSampler

    class SeededRepeatAugSampler(RepeatAugSampler):
        def set_epoch(self, epoch: int) -> None:
            super().set_epoch(sampler_seed(seed, epoch))

    return SeededRepeatAugSampler(dataset, num_replicas=num_replicas, rank=rank,
                                  shuffle=True, num_repeats=repeats)


@dataclass(frozen=True)
class RepeatedAugmentationParams:
    #: Copies of each image per epoch (over all processes).
    repeats: int = 3


@register_trick
class RepeatedAugmentation(Trick):
    name = "repeated_augmentation"
    paper = "Hoffer et al. 2020, Augment Your Batch: Improving Generalization Through " \
            "Instance Repetition (CVPR)"
    touches = ("data",)
    Params = RepeatedAugmentationParams
    order = 6

    def __init__(self, params: RepeatedAugmentationParams) -> None:
        super().__init__(params)
        self.sampler: Any = None
        self.observed: dict[str, int] | None = None

    @classmethod
    def check(cls, params: RepeatedAugmentationParams) -> None:
        if params.repeats < 1:
            raise ConfigError(f"tricks.repeated_augmentation.repeats: must be at least 1, "
                              f"got {params.repeats}")

    def train_sampler(self, dataset: Any, num_replicas: int, rank: int, seed: int) -> Any:
        self.sampler = repeat_aug_sampler(dataset, num_replicas, rank, seed,
                                          self.params.repeats)
        return self.sampler

    def epoch_end(self, ctx: TrainContext) -> None:
        """Count what this process drew in the epoch: the sampler's order for the epoch
        it was last set to (the host-side list, no data is read)."""
        drawn = list(iter(self.sampler)) if self.sampler is not None else []
        self.observed = {"drawn": len(drawn), "distinct": len(set(drawn)),
                         "dataset": len(self.sampler.dataset) if self.sampler else 0}

    def audit(self) -> Audit:
        o = self.observed
        if not o or o["drawn"] == o["distinct"]:
            return Audit(self.name, "repeated_augmentation: no image drawn twice in an "
                                    "epoch", effective=False)
        return Audit(self.name, f"repeated_augmentation: {o['drawn']} draws of "
                                f"{o['distinct']} distinct images (of {o['dataset']}) per "
                                f"epoch on this process", details=dict(o))
