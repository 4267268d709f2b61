"""What the ``ablate`` command does before its work: imports kept out of the collector's way.

A command's imports (typer and pydantic, SQLAlchemy, numpy and scipy) build about 100,000
objects that live until the process exits. Python's cyclic garbage collector counts them
as they are made and rescans them as the generations fill: ``ablate report`` on 10,000
runs took 1.49 s without this and 1.27 s with it (medians of 10 interleaved runs, idle;
collections that could free nothing of them). :func:`frozen_imports` switches the collector
off while modules load and then moves what exists into the permanent generation
(``gc.freeze``, the documented way to exempt start-up objects); it collects everything
the command itself builds as usual.

Only the ``ablate`` console script freezes (:func:`ablate.__main__.main`): a notebook's,
a test's or a library user's process imports ablate under its own collector.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_imports(start: bool = False) -> Iterator[None]:
    """Imports in the block without the cyclic collector; after it, every object alive
    (those imports' modules, classes and functions) frozen out of its scans.

    ``start``: the console script's own start-up (freezes). Otherwise (a command's imports
    of its heavy modules) it freezes only where the start-up did, that is in the ``ablate``
    script, and is a plain block elsewhere."""
    if not (start or gc.get_freeze_count()):
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
