"""``ablate report``: tables (markdown, csv, latex, html, json), plots and README blocks from
the results database. A thin command over :mod:`ablate.report` and :mod:`ablate.report.plots`;
domain errors become one line and exit code 2.

Registered by the main CLI with ``app.command("report")(report)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from ablate.cli.console import err_console, fail
from ablate.cli.options import DbOption
from ablate.errors import USER_ERRORS
from ablate.startup import frozen_imports
from zoo.contract import atomic_write

if TYPE_CHECKING:
    import pandas as pd

    from ablate.store.db import Store


def _link_dir(plots: Path | None, reader_dir: Path) -> str | None:
    """The plots directory as written in a link read from ``reader_dir``."""
    if plots is None:
        return None
    return Path(os.path.relpath(plots.resolve(), reader_dir.resolve())).as_posix()


OutputOption = Annotated[Path | None, typer.Option(
    "--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout; "
         "with --format html, FILE.html is one page for every study, any other "
         "name a directory with a self-contained <study>.html per study",
    show_default=False)]
PlotsOption = Annotated[Path | None, typer.Option(
    metavar="DIR", help="write <study>_delta.png, <study>_curves.png and "
    "<study>_cost.png into DIR", show_default=False)]
ReadmeOption = Annotated[Path | None, typer.Option(
    metavar="FILE", help="refresh the tables between <!-- ablate:report STUDY --> and "
         "<!-- /ablate:report --> in this file, in place", show_default=False)]


def report(
    studies: Annotated[list[str] | None, typer.Argument(
        help="study names (default: every study in the database)", show_default=False)] = None,
    db: DbOption = None,
    fmt: Annotated[Literal["markdown", "csv", "latex", "html", "json"], typer.Option(
        "--format", "-f", help="markdown, csv, latex, html or json")] = "markdown",
    output: OutputOption = None,
    plots: PlotsOption = None,
    readme: ReadmeOption = None,
    margin: Annotated[float | None, typer.Option(
        metavar="M", help="equivalence margin in top-1 points for every study (default: each "
             "study's 'margin:'); a variant whose 90% CI lies inside ±M is equivalent (TOST)",
        show_default=False)] = None,
    no_adjust: Annotated[bool, typer.Option(
        "--no-adjust", help="decide each variant on its own test, without Holm's adjustment "
             "across the study's variants")] = False,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", metavar="NAME", help="decide this metric too, beside top-1 and the "
             "study's 'primary:' (repeatable): top5, nll, ece, worst_class, corruption; "
             "each its own Holm family", show_default=False)] = None,
) -> None:
    """Compare each variant with its baseline and decide it.

    For each study: the mean paired top-1 change against the baseline on the same seeds
    with its 95% interval, a decision per variant (better, worse, equivalent or
    undecided; Holm-adjusted across the study), costs, and what the compared runs differ
    in."""
    # Here, not at the top: every command imports this module, and the statistics pull in
    # scipy.special, which `ablate status` never needs.
    with frozen_imports():
        import ablate.report  # noqa: F401  (what every format reads: loaded, then frozen)
        from ablate.inference import InferenceError
        from ablate.store.db import Store

    try:
        if readme is not None and (output is not None or fmt != "markdown"):
            fail("--readme rewrites the README's markdown tables in place; "
                 "drop --output and --format")
        metrics = _metrics(metric)
        if readme is not None and (margin is not None or no_adjust or metrics):
            fail("--readme renders each study as its study file declares it (its 'margin:', "
                 "'primary:', Holm's adjustment); drop --margin, --no-adjust and --metric")
        store = Store(db, create=False)
        if readme is not None:
            _readme(store, readme, studies, plots)
        elif fmt == "html":
            _html(store, studies, output, plots, margin=margin, holm=not no_adjust,
                  metrics=metrics)
        else:
            _tables(store, studies, fmt, output, plots, margin=margin, holm=not no_adjust,
                    metrics=metrics)
    except (*USER_ERRORS, InferenceError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))


def _metrics(names: list[str] | None) -> tuple[str, ...]:
    """``--metric`` names, each a known metric (else an error naming the closest one)."""
    from ablate.report.metrics import metric

    return tuple(metric(name).name for name in names or ())


def _readme(store: Store, readme: Path, studies: list[str] | None, plots: Path | None
            ) -> None:
    """``--readme``: refresh the marked blocks of the README in place."""
    from ablate.report import build_frame, curves_frame, readme_studies, render_readme

    try:
        # Bytes, not read_text(): newline translation would rewrite \r\n outside the
        # markers.
        text = readme.read_bytes().decode("utf-8")
    except OSError as exc:
        fail(f"--readme {readme}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        fail(f"--readme {readme}: not a UTF-8 text file")
    try:
        names = readme_studies(text)
        unmarked = [s for s in studies or [] if s not in names]
        if unmarked:
            fail(f"{readme}: no '<!-- ablate:report {unmarked[0]} -->' marker")
        if studies:
            names = [n for n in names if n in studies]
        new = render_readme(text, store, plots_dir=_link_dir(plots, readme.parent),
                            studies=studies)
    except USER_ERRORS as exc:
        fail(f"{readme}: {exc}")
    if plots is not None and names:
        _plots(build_frame(store, names), curves_frame(store, names), plots)
    if new != text:
        atomic_write(readme, new)
    typer.echo(f"{readme}: {len(names)} table(s) "
               f"{'refreshed' if new != text else 'already up to date'}"
               + (f" ({', '.join(names)})" if names else "; no report markers found"))


def _tables(store: Store, studies: list[str] | None, fmt: str, output: Path | None,
            plots: Path | None, *, margin: float | None, holm: bool,
            metrics: tuple[str, ...]) -> None:
    """markdown, csv, latex or json: to ``output`` or stdout."""
    from ablate.report import build_rows, curves_frame, load_studies, render
    from ablate.report.kernels import records_kernel_notes, with_kernel_notes

    records = load_studies(store, studies)  # once, for the rows and the kernel notes
    rows = build_rows(store, studies, margin=margin, holm=holm, metrics=metrics,
                      records=records)
    report = with_kernel_notes(rows, records_kernel_notes(records, store))
    if plots is not None:
        from ablate.report.aggregate import frame_of

        _plots(frame_of(report), curves_frame(store, studies), plots)
    reader = output.parent if output is not None else Path.cwd()
    text = render(report, fmt, plots_dir=_link_dir(plots, reader))  # type: ignore[arg-type]
    if output is not None:
        atomic_write(output, text)
        err_console.print(f"wrote {output}", markup=False)
    else:
        typer.echo(text, nl=False)


def _html(store: Store, studies: list[str] | None, output: Path | None,
          plots: Path | None, *, margin: float | None, holm: bool,
          metrics: tuple[str, ...] = ()) -> None:
    """``--format html``: the self-contained page (plots embedded), to stdout, one file for
    every study, or one file per study in a directory."""
    from ablate.report import build_frame, curves_frame
    from ablate.report.html import build_page, write_pages

    if plots is not None:
        _plots(build_frame(store, studies, margin=margin, holm=holm, metrics=metrics),
               curves_frame(store, studies), plots)
    if output is None:
        typer.echo(build_page(store, studies, margin=margin, holm=holm, metrics=metrics),
                   nl=False)
        return
    # Path() drops a trailing slash, so the name tells: a page is a .html/.htm file.
    per_study = output.suffix.lower() not in (".html", ".htm")
    for path in write_pages(store, output, studies, per_study=per_study, margin=margin,
                            holm=holm, metrics=metrics):
        err_console.print(f"wrote {path}", markup=False)


def _plots(frame: pd.DataFrame, curves: pd.DataFrame, out_dir: Path) -> None:
    from ablate.report.plots import write_plots

    written = write_plots(frame, curves, out_dir)
    err_console.print(f"wrote {len(written)} plots to {out_dir}", markup=False)
