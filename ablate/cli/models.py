"""``ablate models``: the model zoo with its cost measured now and the reference numbers.

Registered by the main CLI with ``app.command("models")(models)``. The measuring happens in
``zoo.models.summarize_model`` (ablate itself knows nothing about tensors).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from ablate.cli.console import fail
from zoo.errors import UnknownNameError

if TYPE_CHECKING:
    from rich.table import Table

    from zoo.models import ModelSummary


def _names(pattern: str | None) -> list[str]:
    """Model names matching the glob ``pattern``; a plain unknown name raises with the
    closest names."""
    from zoo.models import get_model_info, list_models  # the catalog: no torch

    names = list_models(pattern)
    if not names and pattern is not None:
        if not any(c in pattern for c in "*?["):
            get_model_info(pattern)  # raises UnknownNameError with suggestions
        raise UnknownNameError(f"no model matches '{pattern}' (see 'ablate models')")
    return names


def _ref(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _table(rows: list[ModelSummary]) -> Table:
    from rich.table import Table

    table = Table(title="Model zoo (params and MACs measured at 224 px, 1000 classes)")
    table.add_column("model", style="bold", no_wrap=True)
    table.add_column("params (M)", justify="right", no_wrap=True)
    table.add_column("ref", justify="right", style="dim", no_wrap=True)
    table.add_column("MACs (G)", justify="right", no_wrap=True)
    table.add_column("ref", justify="right", style="dim", no_wrap=True)
    table.add_column("options")
    table.add_column("paper", overflow="fold")
    for r in rows:
        opts = [*r.options, *(f"{k}={v}" for k, v in r.arch_args.items())]
        table.add_row(
            r.name,
            f"{r.params_m:.2f}",
            _ref(r.ref_params_m, 2),
            f"{r.macs_g:.3f}",
            _ref(r.ref_macs_g, 3),
            ", ".join(opts) or "—",
            r.paper,
        )
    return table


def models(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON list instead of a table.")
    ] = False,
    pattern: Annotated[
        str | None,
        typer.Argument(help="Only models whose name matches this glob, e.g. 'resnet*'."),
    ] = None,
) -> None:
    """List the models: parameters and MACs measured now (224 px, 1000 classes), the
    reference numbers, the paper and the options each supports."""
    from rich.console import Console

    from zoo.models import summarize_model

    try:
        rows = [summarize_model(name) for name in _names(pattern)]
    except UnknownNameError as err:
        fail(str(err))
    if json_out:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        Console().print(_table(rows))
