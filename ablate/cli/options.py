"""Options shared by several commands, and the one place the default database is decided.

Every command that takes ``--db`` finds the same database without it: ``$ABLATE_DB``, else
the ``db`` key of the nearest ``ablate.toml`` (the working directory or a parent; ``make
demo`` writes one pointing at the demo's database), else ``sqlite:///results.db``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from ablate.cli.console import fail

#: The project file whose ``db`` key is the default database of a checkout.
PROJECT_FILE = "ablate.toml"
FALLBACK_DB = "sqlite:///results.db"


def project_file(start: Path | None = None) -> Path | None:
    """The nearest ``ablate.toml`` in ``start`` (default: the working directory) or above."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def _from_project_file(path: Path) -> str | None:
    """The ``db`` of a project file as a URL; a relative SQLite path is relative to the
    file's directory, so the same database is found from any sub-directory."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        fail(f"{path}: {exc}; fix the file or delete it")
    value = data.get("db")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        fail(f"{path}: key 'db' must be a database URL or a path, e.g. "
             f"db = \"sqlite:///runs/demo.db\"")
    if "://" not in value:  # a plain path
        value = f"sqlite:///{value}"
    if value.startswith("sqlite:///") and value != "sqlite:///:memory:":
        db_path = Path(value[len("sqlite:///"):])
        if not db_path.is_absolute():
            value = f"sqlite:///{path.parent / db_path}"
    return value


def default_db(start: Path | None = None) -> str:
    """The database a command uses without ``--db`` (see the module's docstring)."""
    env = os.environ.get("ABLATE_DB")
    if env:
        return env
    found = project_file(start)
    url = _from_project_file(found) if found is not None else None
    return url or FALLBACK_DB


def _resolve_db(value: str | None) -> str:
    return value or default_db()


DbOption = Annotated[str | None, typer.Option(
    "--db", callback=_resolve_db, show_default=False, metavar="URL",
    # Words, not one long URL: rich cuts a word wider than the help column with "…".
    help="SQLAlchemy URL of the results database. Default: $ABLATE_DB, else the 'db' key "
         "of the nearest ablate.toml (make demo writes one), else the SQLite file "
         "results.db in the working directory.")]


ImportOption = Annotated[list[str] | None, typer.Option(
    "--import", metavar="PATH|MODULE", show_default=False,
    help="A plugin to import first: a .py file, a package directory (relative to the "
         "working directory) or a module name; its tricks, models and data formats are "
         "listed too. Repeatable. See docs/extending.md.")]


def import_plugins(entries: list[str] | None) -> None:
    """Import the ``--import`` plugins; a failure is one line naming file and line."""
    if not entries:
        return
    from zoo.plugins import PluginError
    from zoo.plugins import import_plugins as load

    try:
        load(entries, Path.cwd(), key="--import")
    except PluginError as exc:
        fail(str(exc))
