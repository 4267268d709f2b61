"""The trainer's data loaders: datasets, transforms, samplers, seeding and workers.

:func:`make_loaders` builds the training and validation loaders of one process for the
decode path the config asks for (:func:`resolve_decode`) with ``workers`` resolved
(:func:`resolve_workers`); their batches go to the device through
:func:`zoo.data.device.to_device`. Every random draw of the workers comes from the
per-(seed, rank, epoch) generator (:class:`EpochKeys`, :class:`EpochSeeded`), so a run
resumed at an epoch boundary loads exactly what an uninterrupted run loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info

from zoo.config import RunConfig
from zoo.data.datasets import build_datasets
from zoo.data.device import Collate, DrawCrop, SkipBad
from zoo.data.samplers import ShardSampler
from zoo.data.transforms import eval_resize, eval_transform, train_transform
from zoo.distributed import DistInfo
from zoo.errors import ConfigError, ZooError
from zoo.seeding import seed_worker
from zoo.tricks import TrickSet


class EpochKeys(Sampler[tuple[int, int, int]]):
    """The training sampler's indices as ``(epoch, worker base seed, index)`` keys.

    With persistent workers the DataLoader seeds each worker once, when it starts; these
    keys carry every epoch's seed to the workers instead (see :class:`EpochSeeded`).
    """

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.epoch, self.base_seed = 0, 0

    def set_epoch(self, epoch: int, base_seed: int) -> None:
        self.sampler.set_epoch(epoch)
        self.epoch, self.base_seed = epoch, base_seed

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return ((self.epoch, self.base_seed, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochSeeded(Dataset):
    """Reseeds a persistent DataLoader worker at its first sample of every epoch exactly as
    a newly started worker is seeded (``random``, ``torch`` and ``numpy`` from
    ``base + worker id``), so an epoch's augmentation does not depend on earlier epochs.

    Within an epoch the DataLoader hands batch ``k`` to worker ``k % workers`` (its
    in-order round robin restarts at worker 0 every epoch), so a run resumed at epoch
    ``e``, whose workers start fresh, draws the same augmentation as one that kept its
    workers from epoch 1. In the main process (``workers: 0``) nothing is reseeded: the
    transforms use the process's RNG, which the checkpoint holds.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        epoch, base_seed, index = key
        if epoch != self.epoch:
            self.epoch = epoch
            worker = get_worker_info()
            if worker is not None:
                seed_worker(base_seed, worker.id)
        return self.dataset[index]


def local_processes() -> int:
    """Training processes on this node (torchrun's ``LOCAL_WORLD_SIZE``; 1 without it)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: a container's or SLURM's
    limit, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | str, cores: int | None = None,
                    processes: int | None = None) -> int:
    """``workers`` as a number: ``auto`` is the cores per local process minus one for the
    process itself, at least 1 (16 cores, 1 GPU: 15; 8 GPUs on 96 cores: 11)."""
    if workers != "auto":
        return int(workers)
    cores = usable_cores() if cores is None else cores
    processes = local_processes() if processes is None else processes
    return max(1, cores // processes - 1)


def gpu_decode_blockers(cfg: RunConfig, tricks: TrickSet) -> list[str]:
    """Why the ``gpu`` path cannot run this config (empty: it can)."""
    reasons = []
    if cfg.data.preset != "imagenet":
        reasons.append(f"data.preset '{cfg.data.preset}' (the gpu path does the imagenet "
                       f"preset's random resized crop)")
    pre, post = tricks.transforms([], [])
    if pre or post:
        names = ", ".join(type(op).__name__ for op in (*pre, *post))
        reasons.append(f"per-image trick transforms run in the workers ({names})")
    if tricks.train_image_size(cfg.data.image_size) != cfg.data.image_size:
        reasons.append("a train resolution other than data.image_size (the gpu path crops "
                       "one size)")
    return reasons


def resolve_decode(cfg: RunConfig, device: torch.device, tricks: TrickSet) -> str:
    """``data.decode`` as ``cpu`` or ``gpu``. ``auto`` is ``gpu`` on CUDA when nothing
    blocks it; ``gpu`` where something does is a config error naming it."""
    requested = cfg.data.decode
    if requested == "cpu":
        return "cpu"
    blockers = gpu_decode_blockers(cfg, tricks)
    if requested == "gpu" and blockers:
        raise ConfigError(f"data.decode: gpu cannot run with {'; '.join(blockers)}; "
                          f"use data.decode: cpu")
    if requested == "auto":
        return "gpu" if device.type == "cuda" and not blockers else "cpu"
    return "gpu"


@dataclass
class Loaders:
    """One process's loaders and what they resolved (written to config.json)."""

    train: DataLoader
    val: DataLoader
    sampler: EpochKeys
    classes: list[str]
    decode: str
    workers: int

    def describe(self) -> dict[str, Any]:
        """The resolved input settings, for config.json's ``input``."""
        return {"decode": self.decode, "workers": self.workers,
                "device_normalize": True}

    def __iter__(self) -> Iterator[Any]:  # unpacks as (train, val, sampler, classes)
        return iter((self.train, self.val, self.sampler, self.classes))


def make_loaders(cfg: RunConfig, info: DistInfo, tricks: TrickSet) -> Loaders:
    """The training loader (persistent workers, :class:`EpochKeys` order) and the
    validation loader (:class:`ShardSampler`: every image on exactly one rank)."""
    decode = resolve_decode(cfg, info.device, tricks)
    workers = resolve_workers(cfg.workers)
    data = cfg.data
    if decode == "gpu":
        train_tf: Any = DrawCrop(data.image_size, train=True, hflip=data.hflip)
        eval_tf: Any = DrawCrop(data.image_size, train=False)
    else:
        # The tricks may train at another image size than the evaluation's.
        train_data = replace(data, image_size=tricks.train_image_size(data.image_size))
        train_tf = train_transform(train_data, tricks.transforms, device_normalize=True)
        eval_tf = eval_transform(data, device_normalize=True)
    train_ds, val_ds, classes = build_datasets(data, train_tf, eval_tf,
                                               encoded=decode == "gpu")
    if data.skip_bad:
        train_ds, val_ds = SkipBad(train_ds), SkipBad(val_ds)
    collate = Collate(data.mean, data.std, data.image_size, eval_resize(data), data.skip_bad)
    # DistributedSampler also for one process: the same seeded order in both cases; a
    # trick may bring its own (e.g. one that repeats images).
    sampler = EpochKeys(
        tricks.train_sampler(train_ds, info.world_size, info.rank, cfg.seed)
        or DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank,
                              shuffle=True, seed=cfg.seed, drop_last=True))
    pin = info.device.type == "cuda"
    # Persistent workers: started once, not every epoch; EpochSeeded reseeds them per
    # epoch. The loader's own generator only seeds the workers' start (overridden by
    # EpochSeeded); a private one keeps that draw off the process's RNG.
    train_loader = DataLoader(
        EpochSeeded(train_ds), batch_size=cfg.batch_size, sampler=sampler,
        num_workers=workers, pin_memory=pin, drop_last=True, generator=torch.Generator(),
        persistent_workers=workers > 0, collate_fn=collate,
    )
    # With workers, persistent too, and seeded from a private generator: a DataLoader
    # without one draws its workers' base seed from the process's RNG each time it starts
    # (every epoch before), a persistent one only once per session, which would make a
    # resumed run's RNG stream differ; evaluation is deterministic, so its workers' seed
    # does not matter. Without workers it stays as it was (one draw from the process's RNG
    # per epoch), so the runs made that way (results.db's) train exactly as before.
    val_loader = DataLoader(
        val_ds, batch_size=cfg.batch_size * 2,
        sampler=ShardSampler(len(val_ds), info.rank, info.world_size),  # type: ignore[arg-type]
        num_workers=workers, pin_memory=pin, collate_fn=collate,
        persistent_workers=workers > 0, generator=torch.Generator() if workers > 0 else None,
    )
    if len(train_loader) == 0:
        raise ZooError(
            f"data.train: {len(train_ds)} images are fewer than one global batch "  # type: ignore[arg-type]
            f"({cfg.batch_size} x {info.world_size} processes); lower batch_size"
        )
    return Loaders(train_loader, val_loader, sampler, classes, decode, workers)
