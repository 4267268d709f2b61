"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

DbOption = Annotated[str | None, typer.Option(
    "--db", help="SQLAlchemy URL of the results database (default sqlite:///results.db, "
                 "or $ABLATE_DB)")]
