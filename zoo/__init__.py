"""zoo: a PyTorch trainer and model zoo that trains one run from one config.

The extension API, the one the zoo's own tricks, models and data formats use too
(docs/extending.md): :class:`Trick` and its typed ``Params``, :func:`register_trick`,
:func:`register_model`, :func:`register_data_format`. A researcher's module that calls
them enters a study through ``imports:``.
"""

from __future__ import annotations

from typing import Any

#: Public name -> the module that defines it (imported on first use: ``import zoo`` stays
#: cheap, and ``zoo.config`` can be imported without the trick registry).
_API = {
    "Trick": "zoo.tricks.base",
    "TrainContext": "zoo.tricks.base",
    "RunFacts": "zoo.tricks.base",
    "Resolved": "zoo.tricks.base",
    "Audit": "zoo.tricks.base",
    "NoParams": "zoo.tricks.base",
    "register_trick": "zoo.tricks.registry",
    "list_tricks": "zoo.tricks.registry",
    "ModelInfo": "zoo.models.catalog",
    "register_model": "zoo.models._registry",
    "create_model": "zoo.models._registry",
    "list_models": "zoo.models._registry",
    "register_data_format": "zoo.data.formats",
    "list_data_formats": "zoo.data.formats",
    "ConfigError": "zoo.errors",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _API:
        import importlib

        if name in ("register_trick", "list_tricks"):
            importlib.import_module("zoo.tricks")  # the built-in tricks, registered
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute '{name}'")
