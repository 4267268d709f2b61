"""The model zoo: ``create_model(name, num_classes=..., **options)`` and ``list_models()``.

Importing this package registers every model; each module below registers its own.
"""

from zoo.models import resnet_cifar  # noqa: F401  (registers models)
from zoo.models._registry import (
    KNOWN_OPTIONS,
    ModelInfo,
    create_model,
    get_model_info,
    is_model,
    list_models,
    register_model,
)

__all__ = [
    "KNOWN_OPTIONS",
    "ModelInfo",
    "create_model",
    "get_model_info",
    "is_model",
    "list_models",
    "register_model",
]
