"""ablate: which training tricks really improve an image classifier.

From a notebook: ``r = ablate.open("results.db")``; ``r.studies()``, ``r.report(study)``,
``r.metrics(study)`` (see :mod:`ablate.api`). The API is imported on first use, so
``import ablate.inference`` (numpy and scipy only) does not pull in the database layer.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Results", "__version__", "open"]


def __getattr__(name: str) -> Any:
    if name in ("Results", "open"):
        from ablate import api

        return getattr(api, name)
    raise AttributeError(f"module 'ablate' has no attribute {name!r}")
