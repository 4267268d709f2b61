"""``ablate tricks``: the training tricks a study can switch on by name, with their
parameters and defaults, what each touches, what it cannot be combined with and the paper.

Registered by the main CLI with ``app.command("tricks")(tricks)``. The facts come from the
trick registry (``zoo.tricks``); nothing is measured.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Annotated, Any

import typer
from rich.table import Table

from ablate.cli.console import console, fail
from ablate.cli.options import ImportOption, import_plugins
from zoo.errors import ZooError


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def describe_tricks() -> list[dict[str, Any]]:
    """Every registered trick as a plain dict, in hook order (then by name)."""
    from zoo.tricks import get_trick, list_tricks

    classes = sorted((get_trick(n) for n in list_tricks()), key=lambda c: (c.order, c.name))
    rows = []
    for cls in classes:
        hints = typing.get_type_hints(cls.Params)
        params = [
            {"name": f.name, "type": _type_name(hints[f.name]),
             "default": f.default if f.default is not dataclasses.MISSING
             else f.default_factory()}  # type: ignore[misc]
            for f in dataclasses.fields(cls.Params)
        ]
        rows.append({
            "name": cls.name,
            "module": cls.__module__,
            "params": json.loads(json.dumps(params)),  # tuples become lists, as in JSON
            "touches": list(cls.touches),
            "conflicts": list(cls.conflicts),
            "order": cls.order,
            "paper": cls.paper,
        })
    return rows


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Training tricks (in the order they act)")
    table.add_column("trick", style="bold", no_wrap=True)
    table.add_column("parameters (defaults)")
    table.add_column("touches")
    table.add_column("not with", style="dim")
    table.add_column("paper", overflow="fold")
    for r in rows:
        params = ", ".join(f"{p['name']}={json.dumps(p['default'])}" for p in r["params"])
        table.add_row(r["name"], params or "—", ", ".join(r["touches"]),
                      ", ".join(r["conflicts"]) or "—", r["paper"])
    return table


def tricks(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON list instead of a table.")
    ] = False,
    imports: ImportOption = None,
) -> None:
    """List the training tricks, with their parameters and paper.

    Each trick with its parameters and defaults, what it touches, the tricks it cannot
    be combined with, and its paper, in the order the trainer runs them."""
    import_plugins(imports)
    try:
        rows = describe_tricks()
    except ZooError as err:
        fail(str(err))
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
    else:
        console.print(_table(rows))
