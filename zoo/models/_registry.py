"""The model registry: names to declarations (``catalog.py``), checks of a model's
options, and ``create_model``.

Modelled on torchvision's ``get_model`` and timm's ``create_model``. Everything but
building a model is torch-free: a config naming a model and its options is checked
against the declarations without importing the model's module.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zoo.errors import UnknownNameError, did_you_mean
from zoo.models._options import KNOWN_OPTIONS, check_option
from zoo.models.catalog import MODELS, ModelInfo

if TYPE_CHECKING:
    from torch import nn


def _index(models: tuple[ModelInfo, ...]) -> dict[str, ModelInfo]:
    """Name -> declaration; a declaration that breaks the registry's rules raises."""
    index: dict[str, ModelInfo] = {}
    for info in models:
        if info.name in index:
            raise ValueError(f"model '{info.name}' is declared twice")
        bad = [o for o in info.options if o not in KNOWN_OPTIONS]
        if bad:
            raise ValueError(f"model '{info.name}' declares unknown options {bad}")
        clash = [a for a in info.arch_args if a in KNOWN_OPTIONS or a == "num_classes"]
        if clash:
            raise ValueError(f"model '{info.name}' declares architecture arguments {clash} "
                             f"that are options or num_classes")
        index[info.name] = info
    return index


_MODELS = _index(MODELS)


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


def check_model_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise when ``name`` is unknown, does not declare one of ``options`` or a value is
    invalid; the message names the model and the option. ``timm/<name>`` models pass
    their options to timm unchecked."""
    if name.startswith("timm/"):
        return
    info = get_model_info(name)
    accepted = (*info.options, *info.arch_args)
    for opt, value in options.items():
        if opt not in accepted:
            supported = ", ".join(accepted) or "none"
            raise UnknownNameError(
                f"model '{name}' does not support option '{opt}' (supported: {supported})"
            )
        check_option(name, opt, value)


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
    check_model_options(name, options)
    return get_model_info(name).fn(num_classes=num_classes, **options)
