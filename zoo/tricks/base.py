"""What a trick is, and the points of the training loop where it may act.

The trainer never names a trick. It calls the hooks below, in this order, on the
:class:`TrickSet` built from the config; each trick overrides only the hooks it needs
(when several tricks act at one point they run in ascending ``order``, see
:mod:`zoo.tricks`):

0. ``check_model(model_name)``                 at config validation: can the model take it?
1. ``model_name(name)`` / ``model_options()``  choose the architecture and its options
2. ``resolve(facts)``                           settings that depend on the run (e.g. the
                                                learning rate from the global batch); the
                                                trainer records them in config.json
3. ``train_image_size(size)`` / ``train_sampler(dataset, ...)``  the training data: its
                                                crop size and its sampler
4. ``apply_model(model, ctx)``                  model surgery after creation (before DDP)
5. ``param_groups(model, groups)``              how parameters are grouped for the optimizer
6. ``wrap_optimizer(optimizer)``                replace or wrap the optimizer (LAMB, Lookahead)
7. ``transforms(pre, post)``                    training image ops: uint8 ``pre`` and the
                                                float ``post`` after normalisation
8. ``epoch_start(ctx)``                         before an epoch's first batch (``ctx.epoch``)
9. ``batch(images, targets, ctx)``              per training batch on the device; may turn
                                                integer targets into soft (N, C) targets.
                                                Tricks of one non-empty ``batch_group`` are
                                                alternatives: per batch one of them, drawn
                                                uniformly from ``ctx.generator``, runs it
10. ``loss_kwargs()`` / ``loss(inner, ctx)``    the criterion: CrossEntropyLoss with the
                                                tricks' keyword arguments, then each
                                                ``loss`` hook may wrap or replace it (built
                                                at every epoch start)
11. ``after_backward(model)``                   gradients are final (unscaled), before step
    ``closure``: a trick whose class sets it gets the optimizer step called with a
    closure that computes the loss and the gradients again on the same batch, at the
    weights the step has set (e.g. SAM's ascent step, from ``wrap_optimizer``); not
    with fp16's GradScaler, which takes no closure (use bf16 or fp32)
12. ``after_step(model)``                       after the optimizer step
13. ``epoch_end(ctx)``                          after an epoch's last step, before evaluation
14. ``eval_model(model)``                       the module evaluated (e.g. an EMA copy)
15. ``state_dict()`` / ``load_state_dict()``    trick state saved in the checkpoint
16. ``audit()``                                 what the trick did, written to result.json

Every trick whose class sets ``stoppable`` (it acts per step: ``batch``, ``loss``,
``after_backward``) also takes the parameter ``until_epoch``: from the epoch after it on
those hooks skip it (e.g. mixup switched off for the last epochs, as in Bag of Tricks and
timm's ``--mixup-off-epoch``).

An audit reports ``effective`` from what the trick observed in this run (a count of
what changed, a difference of outputs), never from its parameters alone.

Hooks return new values rather than stashing state between events. What a trick keeps
is only what its ``audit`` reports (counts of what it changed) and what it must carry
across a resume (``state_dict``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from zoo.errors import ConfigError

if TYPE_CHECKING:  # torch is imported by the hooks that run, not by config validation
    import torch
    from torch import nn

#: What a trick may touch, as declared by each trick and listed by ``ablate tricks``.
TOUCHES = ("model", "init", "loss", "targets", "batch", "transform", "optimizer",
           "param_groups", "gradients", "eval", "data", "schedule")


@dataclass(frozen=True)
class NoParams:
    """A trick without parameters."""


@dataclass
class TrainContext:
    """Facts about the run a hook may need."""

    num_classes: int
    world_size: int
    device: torch.device
    epochs: int
    steps_per_epoch: int
    #: CPU generator for the batch hooks, seeded from (seed, rank, epoch): reproducible
    #: and identical after a resume at an epoch boundary.
    generator: torch.Generator | None = None
    #: The epoch being trained (1-based); 0 before the first.
    epoch: int = 0
    #: The model as built (after the model-selecting tricks) and its options, for tricks
    #: that observe their effect against the model built without them.
    model_name: str = ""
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Side of the images the model sees in evaluation (``data.image_size``).
    image_size: int = 224


@dataclass(frozen=True)
class RunFacts:
    """What ``resolve`` may read: the configured values and the run's size."""

    lr: float
    batch_size: int  # per process
    world_size: int


@dataclass(frozen=True)
class Resolved:
    """Settings a trick decides from :class:`RunFacts`; ``None`` keeps the configured one."""

    lr: float | None = None


@dataclass
class Audit:
    """What one trick did in one run."""

    trick: str
    summary: str
    effective: bool = True
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Trick:
    """Base class. Subclasses set the class attributes and override hooks."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    touches: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type] = NoParams
    #: Tricks that cannot be combined with this one (checked in both directions).
    conflicts: ClassVar[tuple[str, ...]] = ()
    #: Why, for the error message: "both replace the activation".
    conflict_reason: ClassVar[str] = ""
    #: Model options (from ``zoo.models.KNOWN_OPTIONS``) the trick sets; a model that does
    #: not declare one of them is a config error naming the trick and the model.
    needs_options: ClassVar[tuple[str, ...]] = ()
    #: Tricks sharing a non-empty group are per-batch alternatives (e.g. mixup and cutmix).
    batch_group: ClassVar[str] = ""
    #: Hooks run in ascending order (then by name) when several tricks act at one point.
    order: ClassVar[int] = 100
    #: Acts per step, so it takes ``until_epoch`` (see the module doc).
    stoppable: ClassVar[bool] = False
    #: Its optimizer (``wrap_optimizer``) steps with a closure: the loss and gradients of
    #: the same batch again (see the module doc, hook 11).
    closure: ClassVar[bool] = False

    def __init__(self, params: Any) -> None:
        self.params = params
        #: Last epoch the per-step hooks act in (None: every epoch); set by the registry.
        self.until_epoch: int | None = None

    def active(self, epoch: int) -> bool:
        """Whether the per-step hooks act in ``epoch`` (``until_epoch``)."""
        return self.until_epoch is None or epoch <= self.until_epoch

    @classmethod
    def check(cls, params: Any) -> None:
        """Range checks of the parameters; raise ConfigError naming trick and parameter."""

    @classmethod
    def check_model(cls, model_name: str) -> None:
        """Raise ConfigError naming trick and model when ``model_name`` cannot take the trick.

        ``model_name`` is the model after the model-selecting tricks of lower ``order``.
        The default checks ``needs_options`` against the model's declared options
        (``timm/<name>`` models declare none and are not checked).
        """
        if not cls.needs_options or model_name.startswith("timm/"):
            return
        from zoo.models import get_model_info

        declared = get_model_info(model_name).options
        for option in cls.needs_options:
            if option not in declared:
                raise ConfigError(
                    f"tricks.{cls.name}: model '{model_name}' does not support option "
                    f"'{option}', which this trick sets (its options: "
                    f"{', '.join(declared) or 'none'})"
                )

    def model_name(self, name: str) -> str:
        return name

    def model_options(self) -> dict[str, Any]:
        return {}

    def resolve(self, facts: RunFacts) -> Resolved:
        return Resolved()

    def train_image_size(self, size: int) -> int:
        return size

    def train_sampler(self, dataset: Any, num_replicas: int, rank: int,
                      seed: int) -> Any | None:
        """A sampler of the training set with ``set_epoch(epoch)``, or None for the default
        (a shuffling ``DistributedSampler``)."""
        return None

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        return model

    def param_groups(self, model: nn.Module, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return groups

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        return optimizer

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        return pre, post

    def batch(
        self, images: torch.Tensor, targets: torch.Tensor, ctx: TrainContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return images, targets

    def loss_kwargs(self) -> dict[str, Any]:
        return {}

    def loss(self, inner: Callable[..., torch.Tensor], ctx: TrainContext
             ) -> Callable[..., torch.Tensor]:
        """The criterion ``fn(logits, targets, images)``: ``inner`` (cross-entropy with the
        tricks' ``loss_kwargs``, wrapped by tricks of lower order), wrapped or replaced."""
        return inner

    def epoch_start(self, ctx: TrainContext) -> None:
        return None

    def epoch_end(self, ctx: TrainContext) -> None:
        return None

    def after_backward(self, model: nn.Module) -> None:
        return None

    def after_step(self, model: nn.Module) -> None:
        return None

    def eval_model(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def audit(self) -> Audit:
        return Audit(self.name, f"{self.name}: on")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper; hooks after ``apply_model`` may
    receive the wrapped training model."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def count_modules(model: nn.Module, types: type | tuple[type, ...]) -> int:
    """How many modules of ``model`` are instances of ``types``."""
    return sum(1 for m in model.modules() if isinstance(m, types))


def _signature(module: nn.Module) -> tuple[Any, ...]:
    """What decides a module's own computation apart from its weights' values."""
    attrs = tuple(getattr(module, a, None) for a in ("stride", "kernel_size", "padding",
                                                      "groups", "p", "drop_prob"))
    shapes = tuple(tuple(t.shape) for t in module.parameters(recurse=False))
    return (type(module).__name__, attrs, shapes)


def changed_modules(model: nn.Module, ctx: TrainContext, options: Any) -> int:
    """How many modules of ``model`` differ (in type, shape or stride; by name) from the
    model built as ``ctx`` describes without the model ``options`` of one trick: the
    observed effect of an option trick. The reference is built on the meta device, so it
    costs no memory and no arithmetic."""
    import torch

    from zoo.models import create_model

    without = {k: v for k, v in ctx.model_options.items() if k not in options}
    with torch.device("meta"):
        reference = create_model(ctx.model_name, num_classes=ctx.num_classes, **without)
    ours = {n: _signature(m) for n, m in model.named_modules()}
    ref = {n: _signature(m) for n, m in reference.named_modules()}
    return sum(1 for n in ours.keys() | ref.keys() if ours.get(n) != ref.get(n))
