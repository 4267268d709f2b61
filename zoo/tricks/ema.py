"""Exponential moving average of the weights, evaluated in place of the trained weights
(Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by Averaging"; as in
Tan & Le 2019, EfficientNet, with decay 0.9999).

After every optimizer step ``ema = d * ema + (1 - d) * w`` over parameters and float
buffers (BN statistics), in one ``foreach`` lerp (torch's public
``swa_utils.get_ema_multi_avg_fn``); integer buffers (BN's ``num_batches_tracked``) are
copied (as timm's ModelEmaV3 does; a counter has no average) when the average is evaluated
or checkpointed, not after every step. The average is a ``torch.optim.swa_utils.AveragedModel`` (its
module and ``n_averaged`` are the checkpointed state), made at the first step from the
model as it trains then (after every surgery and in its memory format, so channels_last
when the model is: lerp between NCHW and NHWC copies would be strided), with
``n_averaged`` on the model's device: its own ``update_parameters`` compares the counter on
the host and copies it to the device every step, a host sync per step on a GPU. The first
update copies the weights. ``d`` is ``decay``, or with ``warmup`` the rule of TensorFlow's
``ExponentialMovingAverage(num_updates=...)`` that EfficientNet's reference code uses:
the k-th average after the copy takes ``d = min(decay, (1 + k) / (10 + k))``, so a short
run averages its recent weights instead of its starting ones. Validation scores the
average; the checkpoint holds it (the trick's state), so a resumed run continues it.

The audit reports how much of the average is still the starting weights (the product of
the ``d`` used so far): at decay 0.9999 without warmup, 1,000 steps leave 90% of it, and
the trick then says it had no effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, TrainContext, Trick, unwrap
from zoo.tricks.registry import register_trick

if TYPE_CHECKING:
    from torch import nn
    from torch.optim.swa_utils import AveragedModel


@dataclass(frozen=True)
class EmaParams:
    #: Weight of the running average at each step.
    decay: float = 0.9999
    #: Start with small decays, ``min(decay, (1 + k) / (10 + k))`` at the k-th average.
    warmup: bool = False


def ema_decay(decay: float, k: int, warmup: bool) -> float:
    """The decay of the k-th average after the initial copy (k = 1, 2, ...)."""
    return min(decay, (1 + k) / (10 + k)) if warmup else decay


def start_share(decay: float, averages: int, warmup: bool) -> float:
    """How much of the average the starting weights still hold after ``averages``
    averages: the product of their decays."""
    if not warmup:
        return decay ** averages
    return math.prod(ema_decay(decay, k, True) for k in range(1, averages + 1))


@register_trick
class Ema(Trick):
    name = "ema"
    paper = "Polyak & Juditsky 1992, Acceleration of Stochastic Approximation by Averaging"
    touches = ("eval",)
    Params = EmaParams
    #: Last: the average copies the model after every other trick's surgery.
    order = 200

    def __init__(self, params: EmaParams) -> None:
        super().__init__(params)
        self.ema: AveragedModel | None = None
        self.applied = False
        #: A checkpoint's average, loaded when the average is made (at the first step).
        self.pending: dict[str, Any] = {}
        #: (average's floats, model's floats, average's integers, model's integers).
        self.pairs: tuple[list[Any], list[Any], list[Any], list[Any]] = ([], [], [], [])
        #: Averages after the initial copy (AveragedModel.n_averaged - 1, kept on the host:
        #: reading n_averaged from the device would sync every step).
        self.averages = 0
        self.started = False

    @classmethod
    def check(cls, params: EmaParams) -> None:
        if not 0 < params.decay < 1:
            raise ConfigError(f"tricks.ema.decay: must be in (0, 1), got {params.decay}")

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        self.applied = True  # the average itself is made at the first step (see above)
        return model

    def _build(self, model: nn.Module) -> None:
        import torch
        from torch.optim.swa_utils import AveragedModel

        device = next(model.parameters()).device
        self.ema = AveragedModel(model, device=device, use_buffers=True)
        for p in self.ema.parameters():
            p.grad = None  # the copy took the model's gradients along
            p.requires_grad_(False)
        if self.pending:
            self.ema.load_state_dict(self.pending)
            self.pending = {}
        ema = [*self.ema.module.parameters(), *self.ema.module.buffers()]
        cur = [*model.parameters(), *model.buffers()]
        floats = [i for i, t in enumerate(ema) if torch.is_floating_point(t)]
        ints = [i for i in range(len(ema)) if i not in set(floats)]
        self.pairs = ([ema[i] for i in floats], [cur[i].detach() for i in floats],
                      [ema[i] for i in ints], [cur[i].detach() for i in ints])

    def after_step(self, model: nn.Module) -> None:
        if not self.applied:
            return
        import torch
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        if self.ema is None:
            self._build(unwrap(model))
        assert self.ema is not None
        ema_f, cur_f, ema_i, cur_i = self.pairs
        with torch.no_grad():
            if not self.started:  # once: the first update copies
                for e, c in zip(ema_f + ema_i, cur_f + cur_i, strict=True):
                    e.copy_(c)
            else:
                self.averages += 1  # this update averages (the first one copies)
                d = ema_decay(self.params.decay, self.averages, self.params.warmup)
                # torch's public EMA update: one foreach lerp over the float tensors.
                get_ema_multi_avg_fn(d)(ema_f, cur_f, None)
            self.ema.n_averaged += 1  # on the device: queued, no sync
        self.started = True

    def _copy_counters(self) -> None:
        """The integer buffers (BN's ``num_batches_tracked``: counters, no average) brought
        up to the model's, when the average is read (evaluated or checkpointed) rather than
        after every step: ~50 small copies a ResNet-50 step need not launch."""
        if self.ema is not None and self.started:
            import torch

            _, _, ema_i, cur_i = self.pairs
            with torch.no_grad():
                for e, c in zip(ema_i, cur_i, strict=True):
                    e.copy_(c)

    def eval_model(self, model: nn.Module) -> nn.Module:
        if not self.started:
            return model
        if self.ema is None:  # a checkpoint's average, evaluated before any step
            self._build(unwrap(model))
        assert self.ema is not None
        from zoo.distributed import broadcast_buffers

        self._copy_counters()
        broadcast_buffers(self.ema.module)  # every shard scored with rank 0's statistics
        return self.ema.module

    def state_dict(self) -> dict[str, Any]:
        if self.ema is None:
            return dict(self.pending)
        self._copy_counters()
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not self.applied or not state:
            return
        if self.ema is None:
            self.pending = dict(state)  # loaded when the average is made
        else:
            self.ema.load_state_dict(state)
        updates = int(state["n_averaged"])
        self.started, self.averages = updates > 0, max(updates - 1, 0)

    def audit(self) -> Audit:
        if self.ema is None:
            updates = int(self.pending["n_averaged"]) if self.pending else 0
        else:
            updates = int(self.ema.n_averaged)
        p = self.params
        share = start_share(p.decay, max(updates - 1, 0), p.warmup)
        warm = ", warmup" if p.warmup else ""
        return Audit(self.name, f"ema: evaluated on the average of {updates} updates "
                                f"(decay {p.decay}{warm}); the starting weights are "
                                f"{100 * share:.2g}% of it",
                     effective=updates > 0 and share < 0.5,
                     details={"updates": updates, "decay": p.decay, "warmup": p.warmup,
                              "start_share": share})
