"""``ablate export``: a study in the experiment tracker a lab already runs. A thin command
over :func:`ablate.export_mlflow.export_study`; domain errors become one line and exit
code 2.

Registered by the main CLI with ``app.add_typer(export.app, name="export")``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ablate.cli.console import fail
from ablate.cli.options import DbOption
from ablate.errors import USER_ERRORS

app = typer.Typer(help="Send a study to an experiment tracker.", epilog="Docs: docs/results.md",
                  no_args_is_help=True, rich_markup_mode=None)


@app.command("mlflow", epilog="Docs: docs/results.md")
def mlflow(
    study: Annotated[str, typer.Argument(help="study name in the results database")],
    tracking_uri: Annotated[str, typer.Option(
        "--tracking-uri", envvar="MLFLOW_TRACKING_URI", metavar="URI",
        help="MLflow tracking URI: an MLflow server (http://host:5000) or a local file "
             "store (file:./mlruns; MLflow 3 needs MLFLOW_ALLOW_FILE_STORE=true for it)")],
    db: DbOption = None,
) -> None:
    """Export a study's runs to MLflow.

    Each run of STUDY becomes an MLflow run in the experiment named STUDY: the resolved
    config as params, metrics per epoch, tags variant/seed/hash/status, result.json as an
    artifact. Exporting again only brings runs up to date; it creates nothing twice.
    Needs the extra: pip install 'ablate[mlflow]'."""
    from ablate.export_mlflow import export_study

    try:
        summary = export_study(study, tracking_uri, db)
    except USER_ERRORS as exc:
        fail(str(exc))
    typer.echo(summary.line())
    for run_hash, why in summary.skipped.items():
        typer.echo(f"  skipped {run_hash[:8]}: {why}")
