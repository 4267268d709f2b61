"""Model registry: models are registered by decorator and created by name.

Modelled on torchvision's ``register_model``/``get_model`` and timm's ``create_model``:
each entry also carries the facts a test or a report checks against (paper, reference
parameter count and MACs at 224x224 with 1000 classes) and the options it supports.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from zoo.errors import UnknownNameError, did_you_mean
from zoo.models._options import check_option

ModelFn = Callable[..., nn.Module]

#: Options a model may declare. Tricks switch them on; a model that does not declare
#: an option rejects it instead of ignoring it.
KNOWN_OPTIONS = ("act", "drop_rate", "drop_path_rate", "zero_init_last", "norm")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model."""

    name: str
    fn: ModelFn
    paper: str = ""
    reference: str = ""
    #: Reference parameter count in millions (224x224 input, 1000 classes), if published.
    ref_params_m: float | None = None
    #: Reference multiply-accumulates in billions (224x224 input, 1000 classes).
    ref_macs_g: float | None = None
    #: Options from KNOWN_OPTIONS this model accepts.
    options: tuple[str, ...] = ()
    #: Smallest input side the model is meant for (CIFAR-style models take 28-32 px).
    min_input: int = 32
    #: Architecture arguments of this model alone (not tricks), with their defaults,
    #: e.g. ``{"alpha": 0.125}`` for OctConv's low-frequency ratio.
    arch_args: dict[str, Any] = field(default_factory=dict)
    #: Train in channels_last on CUDA unless the config says otherwise: on for dense
    #: convolutions (cuDNN's NHWC kernels are faster with tensor cores), off for grouped
    #: and depthwise ones, whose NHWC kernels are slower on some GPUs.
    channels_last: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ModelInfo] = {}


def register_model(
    name: str | None = None,
    *,
    paper: str = "",
    reference: str = "",
    params_m: float | None = None,
    macs_g: float | None = None,
    options: tuple[str, ...] = (),
    min_input: int = 32,
    arch_args: dict[str, Any] | None = None,
    channels_last: bool = True,
) -> Callable[[ModelFn], ModelFn]:
    """Register a model constructor ``fn(num_classes=..., **options) -> nn.Module``.

    ``options`` are the tricks from ``KNOWN_OPTIONS`` the model supports; ``arch_args``
    are keyword arguments that only this model takes (name -> default), such as OctConv's
    ``alpha``. ``create_model`` passes both through and rejects anything else.
    ``channels_last`` is the model's memory-format default on CUDA: ``False`` for models
    built on grouped or depthwise convolutions.
    """

    def wrap(fn: ModelFn) -> ModelFn:
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model '{key}' is registered twice")
        bad = [o for o in options if o not in KNOWN_OPTIONS]
        if bad:
            raise ValueError(f"model '{key}' declares unknown options {bad}")
        clash = [a for a in arch_args or {} if a in KNOWN_OPTIONS or a == "num_classes"]
        if clash:
            raise ValueError(f"model '{key}' declares architecture arguments {clash} "
                             f"that are options or num_classes")
        _MODELS[key] = ModelInfo(
            name=key,
            fn=fn,
            paper=paper,
            reference=reference,
            ref_params_m=params_m,
            ref_macs_g=macs_g,
            options=tuple(options),
            min_input=min_input,
            arch_args=dict(arch_args or {}),
            channels_last=channels_last,
        )
        return fn

    return wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell glob such as ``'resnet*'``."""
    names = sorted(_MODELS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def get_model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; an unknown name raises with the closest names."""
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown model '{name}'{did_you_mean(name, _MODELS)} "
            f"(see 'ablate models' for the list)"
        ) from None


def is_model(name: str) -> bool:
    """True when ``name`` is registered or is a ``timm/<name>`` reference."""
    return name in _MODELS or name.startswith("timm/")


def create_model(name: str, num_classes: int = 1000, **options: Any) -> nn.Module:
    """Build a model by name.

    ``timm/<name>`` builds any timm architecture (without pretrained weights).
    Options (and architecture arguments) the model does not declare raise an error naming
    the model and the option.
    """
    if name.startswith("timm/"):
        import timm

        return timm.create_model(name[len("timm/") :], pretrained=False,
                                 num_classes=num_classes, **options)
    info = get_model_info(name)
    accepted = (*info.options, *info.arch_args)
    for opt in options:
        if opt not in accepted:
            supported = ", ".join(accepted) or "none"
            raise UnknownNameError(
                f"model '{name}' does not support option '{opt}' (supported: {supported})"
            )
        check_option(name, opt, options[opt])
    return info.fn(num_classes=num_classes, **options)
