"""The trick registry, and :class:`TrickSet`, which runs the hooks of the tricks in a run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError, UnknownNameError, did_you_mean
from zoo.tricks.base import Audit, TrainContext, Trick

_TRICKS: dict[str, type[Trick]] = {}


def register_trick(cls: type[Trick]) -> type[Trick]:
    """Class decorator: make a trick available by its ``name``."""
    if cls.name in _TRICKS:
        raise ValueError(f"trick '{cls.name}' is registered twice")
    _TRICKS[cls.name] = cls
    return cls


def list_tricks() -> list[str]:
    return sorted(_TRICKS)


def get_trick(name: str) -> type[Trick]:
    try:
        return _TRICKS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown trick '{name}'{did_you_mean(name, _TRICKS)} (see 'ablate tricks')"
        ) from None


def parse_params(name: str, raw: Mapping[str, Any] | None) -> Any:
    """Typed parameters of trick ``name`` from a mapping (None means all defaults)."""
    from zoo.config import from_dict  # the same key/type checks as the run config

    cls = get_trick(name)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"tricks.{name}: expected a mapping of parameters, got {raw!r}")
    params = from_dict(cls.Params, raw, prefix=f"tricks.{name}.")
    cls.check(params)
    return params


def validate_tricks(tricks: Mapping[str, Any]) -> None:
    """Check names, parameters and combinations; raise ConfigError on the first problem."""
    for name, raw in tricks.items():
        parse_params(name, raw)
    names = list(tricks)
    for name in names:
        for other in get_trick(name).conflicts:
            if other in tricks and names.index(other) > names.index(name):
                raise ConfigError(f"tricks: '{name}' and '{other}' cannot be combined")


class TrickSet:
    """The tricks of one run, applied through their hooks in a fixed, documented order."""

    def __init__(self, tricks: Mapping[str, Any]) -> None:
        validate_tricks(tricks)
        built = [get_trick(n)(parse_params(n, raw)) for n, raw in tricks.items()]
        self.tricks: list[Trick] = sorted(built, key=lambda t: (t.order, t.name))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.tricks)

    def __len__(self) -> int:
        return len(self.tricks)

    def model_name(self, name: str) -> str:
        for t in self.tricks:
            name = t.model_name(name)
        return name

    def model_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for t in self.tricks:
            for key, value in t.model_options().items():
                if key in options and options[key] != value:
                    raise ConfigError(f"tricks: two tricks set model option '{key}'")
                options[key] = value
        return options

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        for t in self.tricks:
            model = t.apply_model(model, ctx)
        return model

    def param_groups(self, model: nn.Module, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for t in self.tricks:
            groups = t.param_groups(model, groups)
        return groups

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        for t in self.tricks:
            optimizer = t.wrap_optimizer(optimizer)
        return optimizer

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        for t in self.tricks:
            pre, post = t.transforms(pre, post)
        return pre, post

    def batch(
        self, images: torch.Tensor, targets: torch.Tensor, ctx: TrainContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for t in self.tricks:
            images, targets = t.batch(images, targets, ctx)
        return images, targets

    def loss_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for t in self.tricks:
            kwargs.update(t.loss_kwargs())
        return kwargs

    def after_backward(self, model: nn.Module) -> None:
        for t in self.tricks:
            t.after_backward(model)

    def after_step(self, model: nn.Module) -> None:
        for t in self.tricks:
            t.after_step(model)

    def eval_model(self, model: nn.Module) -> nn.Module:
        for t in self.tricks:
            model = t.eval_model(model)
        return model

    def state_dict(self) -> dict[str, Any]:
        return {t.name: t.state_dict() for t in self.tricks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for t in self.tricks:
            if t.name in state:
                t.load_state_dict(state[t.name])

    def audits(self) -> list[Audit]:
        return [t.audit() for t in self.tricks]

    def describe(self) -> list[dict[str, Any]]:
        return [{"trick": t.name, "params": dataclasses.asdict(t.params)} for t in self.tricks]
