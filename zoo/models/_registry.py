"""The model registry: names to declarations (``catalog.py``), checks of a model's
options, and ``create_model``.

Modelled on torchvision's ``get_model`` and timm's ``create_model``. Everything but
building a model is torch-free: a config naming a model and its options is checked
against the declarations without importing the model's module.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import UnknownNameError, defined_at, did_you_mean
from zoo.models._options import KNOWN_OPTIONS, check_option
from zoo.models.catalog import MODELS, ModelInfo

if TYPE_CHECKING:
    from torch import nn


_MODELS: dict[str, ModelInfo] = {}


def _where(builder: str, fn: Any = None) -> str:
    """``file:line`` of a builder function, for an error naming it; read from its module's
    source when the module is not imported (the zoo's own are imported only to build)."""
    import ast
    import importlib.util

    if fn is not None:
        return defined_at(fn)
    module, _, function = builder.partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return builder
    tree = ast.parse(Path(spec.origin).read_text())
    lines = [n.lineno for n in tree.body if isinstance(n, ast.FunctionDef)
             and n.name == function]
    return f"{spec.origin}:{lines[0]}" if lines else builder


def _add(info: ModelInfo, fn: Any = None) -> ModelInfo:
    old = _MODELS.get(info.name)
    if old is not None and old.builder != info.builder:
        raise ValueError(f"model '{info.name}' is defined twice: {_where(old.builder)} and "
                         f"{_where(info.builder, fn)}; rename one")
    bad = [o for o in info.options if o not in KNOWN_OPTIONS]
    if bad:
        raise ValueError(f"model '{info.name}' declares unknown options {bad} (known: "
                         f"{', '.join(KNOWN_OPTIONS)}; a model's own arguments go in "
                         f"arch_args)")
    clash = [a for a in info.arch_args if a in KNOWN_OPTIONS or a == "num_classes"]
    if clash:
        raise ValueError(f"model '{info.name}' declares architecture arguments {clash} "
                         f"that are options or num_classes")
    _MODELS[info.name] = info
    return info


def register_model(model: ModelInfo | str, **fields: Any) -> Any:
    """Make a model available by name, as the zoo's catalog does for its own.

    ``register_model(ModelInfo(...))`` adds a declaration; ``@register_model("name",
    options=("act",), paper=..., ref_params_m=...)`` on a builder function
    ``fn(num_classes=1000, **options) -> nn.Module`` declares it with the other fields of
    :class:`ModelInfo`. A name another definition holds is an error naming both.
    """
    if isinstance(model, ModelInfo):
        if fields:
            raise TypeError("register_model(ModelInfo): give no other fields")
        return _add(model)
    if not isinstance(model, str) or not model:
        raise TypeError(f"register_model: expected a model name or a ModelInfo, got "
                        f"{model!r}")

    def decorate(fn: Any) -> Any:
        if not callable(fn) or "." in fn.__qualname__:
            raise TypeError(f"model '{model}': register a module-level builder function, "
                            f"got {fn!r}")
        _add(ModelInfo(model, f"{fn.__module__}:{fn.__qualname__}", **fields), fn)
        return fn

    return decorate


for _info in MODELS:  # the zoo's own models, through the same call a plugin makes
    register_model(_info)


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
