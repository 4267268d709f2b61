"""Seeds and random states of a run: one process's RNGs, each epoch's generator and the
seeding of DataLoader workers.

Every random draw of a run comes from a stream that a checkpoint holds or that is derived
from ``(seed, rank, epoch)``, so a run resumed at an epoch boundary draws exactly what an
uninterrupted one draws (tests/test_train.py and tests/test_pipeline.py compare both).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's generator states as tensors and numbers (``weights_only`` loadable)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "gauss": float(np_state[4])},
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))


def epoch_generator(seed: int, rank: int, epoch: int) -> torch.Generator:
    """Seeds the DataLoader workers and the batch tricks of one epoch on one process."""
    return torch.Generator().manual_seed(((seed * 1009 + rank) * 100_003 + epoch) % 2**63)


def worker_base_seed(gen: torch.Generator) -> int:
    """The draw a DataLoader makes from its generator when it starts an epoch's workers;
    worker ``w`` is seeded with ``base + w``."""
    return int(torch.empty((), dtype=torch.int64).random_(generator=gen).item())


def numpy_worker_seed(base_seed: int, worker_id: int) -> list[int]:
    """The NumPy seed torch's DataLoader gives worker ``worker_id``: NumPy's own
    ``SeedSequence`` over the words ``(worker_id, base low 32 bits, base high 32 bits, 0)``,
    which is what torch's private ``_generate_state`` reimplements (tests/test_pipeline.py
    checks the two against a real worker's NumPy state)."""
    entropy = [worker_id, base_seed & 0xFFFFFFFF, base_seed >> 32, 0]
    return np.random.SeedSequence(entropy).generate_state(4).tolist()


def seed_worker(base_seed: int, worker_id: int) -> None:
    """What ``torch.utils.data``'s worker loop does when a worker starts."""
    seed = base_seed + worker_id
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(numpy_worker_seed(base_seed, worker_id))
