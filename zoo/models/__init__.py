"""The model zoo: ``create_model(name, num_classes=..., **options)`` and ``list_models()``.

Importing this package registers every model; each module below registers its own.
"""

from zoo.models import (  # noqa: F401  (each module registers its models)
    ghostnet,
    lip_resnet,
    mobilenet,
    oct_resnet,
    preact_resnet,
    regnet,
    resnest,
    resnet,
    resnet_cifar,
)
from zoo.models._registry import (
    KNOWN_OPTIONS,
    ModelInfo,
    create_model,
    get_model_info,
    is_model,
    list_models,
    register_model,
)
from zoo.models._summary import ModelSummary, summarize_model

__all__ = [
    "KNOWN_OPTIONS",
    "ModelInfo",
    "ModelSummary",
    "create_model",
    "get_model_info",
    "is_model",
    "list_models",
    "register_model",
    "summarize_model",
]
