"""``python -m ablate`` and the ``ablate`` console script: the command line."""

from __future__ import annotations

from ablate.startup import frozen_imports


def main() -> None:
    """The ``ablate`` command: its start-up imports frozen out of the garbage collector's
    scans (:mod:`ablate.startup`), then typer's app."""
    with frozen_imports(start=True):
        from ablate.cli import app

    app(prog_name="ablate")


if __name__ == "__main__":
    main()
