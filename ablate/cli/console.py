"""Output helpers for the CLI: one console, and one-line errors with exit code 2."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

# In a pipe or a file, rich would wrap tables at 80 columns; give them room instead.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False)

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit."""
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)
