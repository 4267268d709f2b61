"""``ablate models``: the model zoo with the catalog's reference cost, and with ``--check``
the cost measured now, a row printed as each model is measured.

Without ``--check`` it reads the torch-free catalog alone (no model is built, torch is not
imported), so the table appears at once; measuring all 19 models took 154 s on a busy
2-core machine. Plain fixed-width lines fit 80 columns. Registered by the main CLI with
``app.command("models")(models)``; the measuring happens in ``zoo.models.summarize_model``
(ablate itself knows nothing about tensors).
"""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Annotated

import typer

from ablate.cli.console import fail
from ablate.cli.options import ImportOption, import_plugins
from zoo.errors import UnknownNameError

if TYPE_CHECKING:
    from zoo.models import ModelInfo, ModelSummary


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


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _short_paper(paper: str) -> str:
    """``He et al. 2016, Deep Residual...`` -> ``He et al. 2016``: the table fits 80
    columns; the full reference is in ``--json`` and in a single model's details."""
    return paper.split(",")[0] if paper else "—"


#: The terminal width every line keeps to.
WIDTH = 80
#: Columns of the table: (header, width, right-aligned). 17 + 5 * 2 + 4 * 8 + 14 <= 80.
_COLUMNS = (("model", 17, False), ("params M", 8, True), ("ref", 8, True),
            ("MACs G", 8, True), ("ref", 8, True), ("paper", 14, False))


def _line(cells: list[str], check: bool) -> str:
    cols = _COLUMNS if check else (_COLUMNS[0], _COLUMNS[2], _COLUMNS[4], _COLUMNS[5])
    out = []
    for cell, (_, width, right) in zip(cells, cols, strict=True):
        out.append(cell.rjust(width) if right else cell.ljust(width))
    line = "  ".join(out).rstrip()
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def models(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON list instead of a table.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Also build each model (on torch's meta device) "
                           "and count its parameters and MACs, a row as each is measured.")
    ] = False,
    pattern: Annotated[
        str | None,
        typer.Argument(help="Only models whose name matches this glob, e.g. 'resnet*'."),
    ] = None,
    imports: ImportOption = None,
) -> None:
    """List the models, with their published size and paper.

    Parameters and MACs are the published references at 224 px with 1000 classes;
    --check builds each model and measures them now."""
    from zoo.models import get_model_info  # the catalog: no torch

    import_plugins(imports)
    try:
        names = _names(pattern)
    except UnknownNameError as err:
        fail(str(err))
    infos = [get_model_info(n) for n in names]
    if json_out:
        rows: list[dict[str, object]] = []
        for info in infos:
            row = _catalog_row(info)
            if check:
                row = _measure(info.name).to_dict()
            rows.append(row)
        typer.echo(json.dumps(rows, indent=2))
        return
    if check:
        typer.echo("measured now on torch's meta device, 224 px, 1000 classes; ref: published")
        typer.echo(_line([h for h, *_ in _COLUMNS], True))
    else:
        typer.echo("published counts at 224 px, 1000 classes ('ablate models --check' "
                   "measures them)")
        typer.echo(_line(["model", "params M", "MACs G", "paper"], False))
    for info in infos:
        if check:  # each row as soon as its model is measured: the first in seconds
            m = _measure(info.name)
            typer.echo(_line([m.name, f"{m.params_m:.2f}", _num(m.ref_params_m, 2),
                              f"{m.macs_g:.3f}", _num(m.ref_macs_g, 3),
                              _short_paper(m.paper)], True))
        else:
            typer.echo(_line([info.name, _num(info.ref_params_m, 2),
                              _num(info.ref_macs_g, 3), _short_paper(info.paper)], False))
    if len(infos) == 1:
        info = infos[0]
        opts = [*info.options, *(f"{k}={v}" for k, v in info.arch_args.items())]
        typer.echo(textwrap.fill(f"options: {', '.join(opts) or '—'}", WIDTH))
        typer.echo(textwrap.fill(f"paper: {info.paper or '—'}", WIDTH))


def _catalog_row(info: ModelInfo) -> dict[str, object]:
    """A model's catalog entry as JSON; the measured counts only with --check."""
    return {"name": info.name, "params_m": None, "macs_g": None,
            "ref_params_m": info.ref_params_m, "ref_macs_g": info.ref_macs_g,
            "paper": info.paper, "reference": info.reference, "options": list(info.options),
            "arch_args": dict(info.arch_args), "min_input": info.min_input}


def _measure(name: str) -> ModelSummary:
    from zoo.models import summarize_model  # imports torch: only with --check

    return summarize_model(name)
