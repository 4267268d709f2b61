"""The model zoo: ``create_model(name, num_classes=..., **options)`` and ``list_models()``.

The models are declared in ``catalog.py`` and registered with ``register_model``, the
call a plugin makes for its own (docs/extending.md); importing this package (and listing, looking
up or checking models) does not import torch. ``create_model`` imports the one module
that builds the model; ``summarize_model`` counts parameters and MACs of a built one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.models._options import KNOWN_OPTIONS
from zoo.models._registry import (
    check_model_options,
    create_model,
    get_model_info,
    is_model,
    list_models,
    register_model,
)
from zoo.models.catalog import ModelInfo

if TYPE_CHECKING:
    from zoo.models._summary import ModelSummary, summarize_model

__all__ = [
    "KNOWN_OPTIONS",
    "ModelInfo",
    "ModelSummary",
    "check_model_options",
    "create_model",
    "get_model_info",
    "is_model",
    "list_models",
    "register_model",
    "summarize_model",
]


def __getattr__(name: str) -> Any:  # PEP 562: the summary needs torch, import it on use
    if name in ("ModelSummary", "summarize_model"):
        from zoo.models import _summary

        return getattr(_summary, name)
    raise AttributeError(f"module 'zoo.models' has no attribute '{name}'")
