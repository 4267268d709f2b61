"""Training tricks: each one a small unit with typed parameters that acts through hooks.

Importing this package registers every trick; each module below registers its own.
"""

from zoo.tricks import label_smoothing  # noqa: F401  (registers the trick)
from zoo.tricks.base import Audit, NoParams, TrainContext, Trick
from zoo.tricks.registry import (
    TrickSet,
    get_trick,
    list_tricks,
    parse_params,
    register_trick,
    validate_tricks,
)

__all__ = [
    "Audit",
    "NoParams",
    "TrainContext",
    "Trick",
    "TrickSet",
    "get_trick",
    "list_tricks",
    "parse_params",
    "register_trick",
    "validate_tricks",
]
