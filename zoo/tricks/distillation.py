"""Knowledge distillation (Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a
Neural Network"; as used in Bag of Tricks, He et al. 2019, sec. 5.3, eq. 7).

A trained teacher's softened predictions join the loss::

    loss = inner(z, y) + weight * T^2 * CE(softmax(r / T), softmax(z / T))

with ``z`` the student's and ``r`` the teacher's logits on the same (augmented, possibly
mixed) batch, ``inner`` the run's loss of the targets and CE the cross-entropy between
distributions; ``T^2`` keeps the gradient scale of the soft term independent of ``T``
(Hinton et al., sec. 2). Bag of Tricks uses ``T = 20`` and ``weight = 1``, with a
ResNet-152 teacher.

The teacher is a finished run of the zoo: ``teacher`` is its run directory. Its model is
rebuilt from its ``config.json`` (model, options and model tricks) and its checkpoint's
weights, and the module its run evaluated is used (its EMA copy, if it had one). It runs
in evaluation mode without gradients; it must have the student's classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError, ZooError
from zoo.tricks.base import Audit, TrainContext, Trick
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class DistillationParams:
    #: Run directory of the finished teacher run.
    teacher: str = ""
    temperature: float = 20.0
    #: Weight of the soft term (Bag of Tricks: 1).
    weight: float = 1.0


def distillation_term(student: torch.Tensor, teacher: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """``T^2 * CE(softmax(teacher / T), softmax(student / T))``, averaged over the batch."""
    from torch.nn import functional as F

    t = temperature
    soft = F.softmax(teacher.float() / t, dim=1)
    return t * t * F.cross_entropy(student.float() / t, soft)


def load_teacher(run_dir: Path, num_classes: int, device: torch.device) -> nn.Module:
    """The module a finished run evaluated, rebuilt from its run directory."""
    from zoo import rundir
    from zoo.config import RunConfig, from_dict
    from zoo.tricks.registry import TrickSet

    key = "tricks.distillation.teacher"
    result = run_dir / rundir.RESULT
    if not result.exists() or rundir.read_json(result).get("status") != "succeeded":
        raise ZooError(f"{key}: '{run_dir}' holds no finished run (no result.json with "
                       f"status succeeded); train the teacher first or fix the path")
    prev = rundir.read_json(run_dir / rundir.CONFIG)
    classes = prev.get("classes") or []
    if len(classes) != num_classes:
        raise ZooError(f"{key}: the teacher in '{run_dir}' has {len(classes)} classes, this "
                       f"run {num_classes}; use a teacher trained on the same data")
    cfg = from_dict(RunConfig, prev["config"])  # checked when the teacher trained
    tricks = TrickSet(cfg.tricks)
    ctx = TrainContext(num_classes=num_classes, world_size=1, device=device,
                       epochs=cfg.epochs, steps_per_epoch=1,
                       model_name=tricks.model_name(cfg.model.name),
                       model_options={**cfg.model.options, **tricks.model_options()},
                       image_size=cfg.data.image_size)
    model = tricks.apply_model(
        tricks.build_model(cfg.model.name, cfg.model.options, num_classes).to(device), ctx)
    ckpt = rundir.load_latest_checkpoint(run_dir, map_location=device)
    if ckpt is None:
        raise ZooError(f"{key}: '{run_dir}' has no checkpoint; train the teacher again")
    model.load_state_dict(ckpt["model"])
    tricks.load_state_dict(ckpt["tricks"])
    teacher = tricks.eval_model(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@register_trick
class Distillation(Trick):
    name = "distillation"
    paper = "Hinton, Vinyals, Dean 2015, Distilling the Knowledge in a Neural Network; " \
            "He et al. 2019, Bag of Tricks (CVPR), sec. 5.3"
    touches = ("loss",)
    Params = DistillationParams
    order = 110  # after the loss tricks: it adds to the loss they define
    stoppable = True

    def __init__(self, params: DistillationParams) -> None:
        super().__init__(params)
        self.teacher: nn.Module | None = None
        self.steps = 0
        self.term_sum: Any = 0.0  # a device tensor while training: read by the audit only

    @classmethod
    def check(cls, params: DistillationParams) -> None:
        if not params.teacher:
            raise ConfigError("tricks.distillation.teacher: missing; set it to the run "
                              "directory of a finished teacher run")
        if params.temperature <= 0:
            raise ConfigError(f"tricks.distillation.temperature: must be positive, "
                              f"got {params.temperature}")
        if params.weight <= 0:
            raise ConfigError(f"tricks.distillation.weight: must be positive, "
                              f"got {params.weight}")

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        self.teacher = load_teacher(Path(self.params.teacher), ctx.num_classes, ctx.device)
        return model

    def loss(self, inner: Callable[..., torch.Tensor], ctx: TrainContext
             ) -> Callable[..., torch.Tensor]:
        import torch

        teacher, p = self.teacher, self.params
        if teacher is None:
            raise RuntimeError("distillation: the teacher was not loaded (apply_model)")

        def distilled(logits: torch.Tensor, targets: torch.Tensor,
                      images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                soft = teacher(images)
            term = distillation_term(logits, soft, p.temperature)
            self.steps += 1
            self.term_sum = self.term_sum + term.detach()
            return inner(logits, targets, images) + p.weight * term

        return distilled

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "term_sum": float(self.term_sum)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.term_sum = int(state["steps"]), float(state["term_sum"])

    def audit(self) -> Audit:
        mean = float(self.term_sum) / self.steps if self.steps else 0.0
        if not self.steps or mean <= 0:
            return Audit(self.name, "distillation: no batch trained with the teacher",
                         effective=False)
        return Audit(self.name, f"distillation: {self.steps} batches with teacher "
                                f"{self.params.teacher}, mean soft term {mean:.4f}",
                     details={"steps": self.steps, "mean_term": mean})
