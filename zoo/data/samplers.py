"""Samplers for sharded evaluation."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, rank + 2*world, ...``: every index on exactly one rank.

    Unlike ``DistributedSampler`` it never pads with duplicates, so summing counts over
    ranks counts every validation image exactly once, whatever the dataset size.
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))
