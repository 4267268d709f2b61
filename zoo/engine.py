"""The training and evaluation loops, and the pieces they are built from.

Small explicit functions in the manner of torchvision's classification reference:
``build_optimizer``, ``build_scheduler``, ``train_one_epoch``, ``evaluate``. Tricks act
only through the hooks of :class:`zoo.tricks.TrickSet`; nothing here knows a trick by name.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    SequentialLR,
)

from zoo.config import RunConfig
from zoo.data.device import to_device
from zoo.distributed import all_reduce_sum
from zoo.metrics import CORRUPTIONS, EvalSums, corruption_summary, corruption_transform
from zoo.tricks import TrainContext, TrickSet

log = logging.getLogger("zoo")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"non-finite loss at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step


# --------------------------------------------------------------------------- precision


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    dtype: torch.dtype | None  # autocast dtype, None for fp32
    device_type: str

    def autocast(self) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        # Only fp16 needs loss scaling: its 5-bit exponent underflows small gradients.
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """``auto`` is fp16 on CUDA and fp32 on CPU; fp16 on CPU works but is slow there."""
    name = requested
    if name == "auto":
        name = "fp16" if device.type == "cuda" else "fp32"
    if name == "fp16" and device.type == "cpu":
        warnings.warn(
            "precision fp16 on CPU runs 25-30x slower than fp32 (no fp16 kernels); "
            "use fp32 or bf16 on CPU",
            stacklevel=2,
        )
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RuntimeError("precision bf16: this GPU does not support bfloat16; use fp16")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    return Precision(name=name, dtype=dtype, device_type=device.type)


# --------------------------------------------------------------------------- optimisation


def build_optimizer(model: nn.Module, cfg: RunConfig, tricks: TrickSet,
                    lr: float | None = None) -> torch.optim.Optimizer:
    """SGD over the parameter groups the tricks decide (one group with weight decay by
    default), at ``lr`` (the tricks' resolved learning rate; ``optim.lr`` when None); the
    tricks may then wrap or replace it."""
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model.parameters() if p.requires_grad],
         "weight_decay": cfg.optim.weight_decay}
    ]
    groups = tricks.param_groups(model, groups)
    # On CUDA the fused kernel: one launch for all parameters, and GradScaler hands it the
    # found-inf flag on the device instead of reading it with .item() every step (a host
    # sync). The CPU keeps the default implementation: CPU results stay bitwise as before.
    fused = any(p.is_cuda for g in groups for p in g["params"]) or None
    opt = torch.optim.SGD(
        groups,
        lr=cfg.optim.lr if lr is None else lr,
        momentum=cfg.optim.momentum,
        nesterov=cfg.optim.nesterov,
        weight_decay=cfg.optim.weight_decay,
        fused=fused,
    )
    return tricks.wrap_optimizer(opt)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: RunConfig, steps_per_epoch: int
) -> LRScheduler:
    """Linear warmup then cosine (or constant, or step decay), stepped every iteration.

    The lengths come from the real number of iterations per epoch, which depends on the
    world size and the dataset, not from the config alone.
    """
    total = cfg.epochs * steps_per_epoch
    warmup = min(total - 1, round(cfg.schedule.warmup_epochs * steps_per_epoch))
    if cfg.schedule.name == "cosine":
        main: LRScheduler = CosineAnnealingLR(
            optimizer, T_max=max(1, total - warmup), eta_min=cfg.schedule.min_lr
        )
    elif cfg.schedule.name == "step":
        # At 1/4, 1/2, 3/4 of the whole run; the main schedule counts from warmup's end.
        milestones = sorted({max(1, round(total * k / 4) - warmup) for k in (1, 2, 3)})
        main = MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    else:
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup <= 0:
        return main
    warm = LinearLR(
        optimizer, start_factor=cfg.schedule.warmup_start_factor, end_factor=1.0,
        total_iters=warmup,
    )
    return SequentialLR(optimizer, schedulers=[warm, main], milestones=[warmup])


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


# --------------------------------------------------------------------------- loops


@dataclass
class EpochStats:
    loss: float
    images: int  # over all processes
    seconds: float
    steps: int
    lr: float
    grad_scale: float | None


ProgressFn = Callable[[int, int, dict[str, float]], None]


class LossWindow:
    """The losses of the last steps, kept on the device (one device op per step) and read
    on the host only at :meth:`flush`: checked for non-finite values and summed there, as
    float64 sums in step order."""

    def __init__(self, size: int, epoch: int, first_step: int) -> None:
        self.size, self.epoch, self.first_step = size, epoch, first_step
        self.values: torch.Tensor | None = None  # this window's losses, on the device
        self.sizes: list[int] = []  # this window's batch sizes
        self.loss_sum, self.seen = 0.0, 0

    def add(self, loss: torch.Tensor, batch: int) -> None:
        if self.values is None:
            self.values = torch.empty(self.size, dtype=loss.dtype, device=loss.device)
        self.values[len(self.sizes)] = loss.detach()
        self.sizes.append(batch)

    def flush(self, last_step: int) -> None:
        """Read the window (a host sync): fail on a non-finite loss, else add it up."""
        if self.values is None or not self.sizes:
            return
        values = self.values[: len(self.sizes)].tolist()
        for j, (value, n) in enumerate(zip(values, self.sizes, strict=True)):
            if not math.isfinite(value):
                raise NonFiniteLossError(self.epoch,
                                         self.first_step + last_step - len(self.sizes) + j)
            self.loss_sum += value * n
            self.seen += n
        self.sizes.clear()

    def mean(self) -> float:
        return self.loss_sum / max(self.seen, 1)


def step_closure(model: nn.Module, hooked: nn.Module, criterion: Callable[..., torch.Tensor],
                 images: torch.Tensor, targets: torch.Tensor,
                 optimizer: torch.optim.Optimizer, tricks: TrickSet, precision: Precision,
                 epoch: int) -> Callable[[], torch.Tensor]:
    """The closure of an optimizer step for tricks that set ``closure`` (e.g. SAM): the
    loss of the same batch at the weights the step has set, and its gradients (reduced
    across processes by DDP, seen by the ``after_backward`` hooks like the first ones)."""

    def closure() -> torch.Tensor:
        with precision.autocast():
            loss = criterion(model(images), targets, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        tricks.after_backward(hooked, epoch)
        return loss.detach()

    return closure


def train_step(model: nn.Module, hooked: nn.Module, images: torch.Tensor,
               targets: torch.Tensor, criterion: Callable[..., torch.Tensor],
               optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
               scaler: torch.amp.GradScaler, tricks: TrickSet, precision: Precision,
               epoch: int) -> torch.Tensor:
    """One optimizer step on one batch, the tricks' hooks around it; the batch's loss (on
    the device: reading it is a host sync)."""
    with precision.autocast():
        logits = model(images)
        loss = criterion(logits, targets, images)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if scaler.is_enabled():
        scaler.unscale_(optimizer)  # hooks see true gradients
    tricks.after_backward(hooked, epoch)
    closure = step_closure(model, hooked, criterion, images, targets, optimizer, tricks,
                           precision, epoch) if tricks.wants_closure else None
    scaler.step(optimizer, **({"closure": closure} if closure else {}))
    scaler.update()
    scheduler.step()
    tricks.after_step(hooked)
    return loss


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler,
    tricks: TrickSet,
    ctx: TrainContext,
    precision: Precision,
    epoch: int,
    first_step: int,
    log_every: int,
    channels_last: bool = False,
    progress: ProgressFn | None = None,
) -> EpochStats:
    """One pass over the training data, between the tricks' ``epoch_start`` and
    ``epoch_end``; the loss is the tricks' criterion of this epoch (``ctx.epoch``). The
    losses are read on the host only every ``log_every`` steps and at the end (the only
    host syncs, see :class:`LossWindow`). ``model`` may be DDP- and/or
    ``torch.compile``-wrapped; trick hooks get it without the compile wrapper, so
    parameter names read as in the plain module."""
    model.train()
    hooked = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule
    window = LossWindow(log_every, epoch, first_step)
    ctx.epoch = epoch
    tricks.epoch_start(ctx)
    criterion = tricks.criterion(ctx)
    start = time.perf_counter()
    i = 0
    for i, (images, targets) in enumerate(loader, start=1):
        images, targets = to_device(images, targets, ctx.device, precision.dtype,
                                    channels_last)
        images, targets = tricks.batch(images, targets, ctx)
        loss = train_step(model, hooked, images, targets, criterion, optimizer, scheduler,
                          scaler, tricks, precision, epoch)
        window.add(loss, images.shape[0])
        if i % log_every == 0 or i == steps:
            window.flush(i)  # host sync, at log points only
            if progress is not None:
                progress(i, steps, {"loss": window.mean(), "lr": current_lr(optimizer)})
    window.flush(i)
    tricks.epoch_end(ctx)
    totals = all_reduce_sum(torch.tensor([window.loss_sum, window.seen], dtype=torch.float64,
                                         device=ctx.device))
    seconds = time.perf_counter() - start
    return EpochStats(
        loss=float(totals[0] / totals[1]) if totals[1] > 0 else math.nan,
        images=int(totals[1]),
        seconds=seconds,
        steps=i,
        lr=current_lr(optimizer),
        grad_scale=float(scaler.get_scale()) if scaler.is_enabled() else None,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Any, torch.Tensor]],
    device: torch.device,
    precision: Precision,
    channels_last: bool = False,
    num_classes: int | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> dict[str, float]:
    """Loss (the NLL), top-1, top-5, ECE and worst-class accuracy (in %) over this
    process's shard, summed over all processes (:class:`zoo.metrics.EvalSums`).

    The sums are all-reduced, so with a sampler that gives every image to exactly one
    process the result counts each image once. ``num_classes``: the model's outputs (all
    processes must agree; default: read from the first batch's logits). ``transform``: a
    function of each loader batch before it reaches the device (a corruption).
    """
    model.eval()
    sums = None if num_classes is None else EvalSums(num_classes, device)
    for images, targets in loader:
        if transform is not None:
            images = transform(images)
        images, targets = to_device(images, targets, device, precision.dtype, channels_last)
        with precision.autocast():
            logits = model(images)
        if sums is None:
            sums = EvalSums(logits.shape[1], device)
        sums.add(logits.float(), targets)
    return EvalSums(1, device).metrics() if sums is None else sums.metrics()


def evaluate_corruptions(
    model: nn.Module,
    loader: Iterable[tuple[Any, torch.Tensor]],
    device: torch.device,
    precision: Precision,
    channels_last: bool,
    num_classes: int,
    rank: int,
) -> dict[str, Any]:
    """Top-1 under each corruption of :data:`zoo.metrics.CORRUPTIONS` at its five
    severities (25 passes over the evaluation set): their mean (``corruption``) and each
    corruption's mean over its severities (``corruptions``)."""
    top1 = {}
    for name in CORRUPTIONS:
        for severity in range(1, 6):
            out = evaluate(model, loader, device, precision, channels_last, num_classes,
                           corruption_transform(name, severity, rank))
            top1[(name, severity)] = out["top1"]
    return corruption_summary(top1)
