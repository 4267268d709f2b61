"""ablate: which training tricks really improve an image classifier.

From a notebook: ``r = ablate.open("results.db")``; ``r.studies()``, ``r.report(study)``,
``r.metrics(study)`` (see :mod:`ablate.api`).
"""

from ablate.api import Results, open

__version__ = "0.1.0"

__all__ = ["Results", "__version__", "open"]
