"""``ablate data ...``: put real image datasets on disk for the trainer, as ImageFolder
trees or LMDB files, and check or describe them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ablate.cli.console import console, err_console, fail
from ablate.cli.options import ImportOption, import_plugins

app = typer.Typer(help="Prepare and inspect datasets.", epilog="Docs: docs/data.md",
                  no_args_is_help=True, rich_markup_mode=None)


def _progress(items: Iterable[int], total: int, label: str) -> Iterator[int]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=total)
        for i in items:
            yield i
            bar.advance(task)


@app.command("prepare", epilog="Docs: docs/data.md")
def prepare(
    dataset: Annotated[Literal["fashion-mnist", "digits"], typer.Argument(
        help="fashion-mnist (Debian's dataset-fashion-mnist) or digits (scikit-learn's 8x8)")],
    out: Annotated[Path, typer.Option("--out", help="output directory (train/ and val/)")],
    source: Annotated[Path | None, typer.Option(
        help="directory of the Fashion-MNIST IDX files "
             "(default /usr/share/datasets/fashion-mnist)")] = None,
    train_per_class: Annotated[int | None, typer.Option(
        min=1, help="keep the first N training images of each class")] = None,
    val_per_class: Annotated[int | None, typer.Option(
        min=1, help="keep the first N validation images of each class")] = None,
) -> None:
    """Write a real image dataset as ImageFolder trees.

    DATASET becomes PNG files in OUT/train/<class>/ and OUT/val/<class>/, with
    OUT/dataset.json; a second call checks the counts and writes nothing."""
    from zoo.data.prepare import prepare as do_prepare
    from zoo.errors import ZooError

    try:
        counts, written = do_prepare(
            dataset, out, source=source, train_per_class=train_per_class,
            val_per_class=val_per_class, progress=_progress,
        )
    except ZooError as exc:
        fail(str(exc))
    total = {split: sum(c.values()) for split, c in counts.items()}
    verb = "wrote" if written else "already prepared (verified)"
    console.print(
        f"{out}: {verb} {dataset}: {total['train']} train and {total['val']} val images, "
        f"{len(counts['train'])} classes"
    )


# --------------------------------------------------------------------------- LMDB


@contextmanager
def _rate_progress(label: str, total: int, done: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with images/s, starting at ``done`` (a resumed conversion)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} img/s" if speed else "- img/s")

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), Rate(),
                  TimeRemainingColumn(), console=err_console, transient=False) as bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda n: bar.advance(task, n)


def _mib(n: float) -> str:
    """Bytes in B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GiB"


Workers = Annotated[int, typer.Option(
    "--workers", "-j", min=1, help="threads reading and decoding files")]


@app.command("to-lmdb", epilog="Docs: docs/lmdb.md")
def to_lmdb(
    src: Annotated[Path, typer.Argument(
        help="an ImageFolder tree (SRC/<class>/<images>) or a directory of train/ and val/ "
             "trees")],
    dst: Annotated[Path, typer.Argument(
        help="the .lmdb file to write (or a directory: DST/<SRC name>.lmdb); for train/ "
             "and val/, the directory that gets train.lmdb and val.lmdb")],
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="leave out files that do not decode (listed), instead of stopping")
    ] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="replace a DST converted from other files")] = False,
    workers: Workers = 8,
    max_side: Annotated[int | None, typer.Option(
        "--max-side", min=1, help="re-encode images whose longer side exceeds N to N "
        "(JPEG quality 90; recorded in the metadata): a faster loader at ~256-350")] = None,
) -> None:
    """Convert ImageFolder trees to LMDB files (data.format: lmdb).

    One file per split. The image files are stored as they are (re-encoded only when
    larger than --max-side), in ImageFolder's order, with its labels and class list. Safe
    to interrupt: run it again to continue."""
    from zoo.data.lmdb_convert import convert
    from zoo.errors import ZooError

    try:
        results = convert(src, dst, skip_bad=skip_bad, overwrite=overwrite, workers=workers,
                          max_side=max_side, progress=_rate_progress)
    except KeyboardInterrupt:
        fail("interrupted; the images written so far are kept in the .partial file next to "
             "DST: run the same command again to continue", code=130)
    except ZooError as exc:
        fail(str(exc))
    for r in results:
        if r.written:
            rate = (r.count - r.resumed_from) / r.seconds if r.seconds else 0.0
            resumed = f", resumed at image {r.resumed_from}" if r.resumed_from else ""
            console.print(
                f"{r.dst}: wrote {r.count} images of {len(r.classes)} classes, "
                f"{_mib(r.file_bytes)} ({_mib(r.encoded_bytes)} of image files) in "
                f"{r.seconds:.1f}s, {rate:,.0f} img/s{resumed}"
            )
        else:
            console.print(f"{r.dst}: already converted from these files ({r.count} images "
                          f"of {len(r.classes)} classes); nothing to do")
        if r.skipped:
            console.print(f"{r.dst}: skipped {len(r.skipped)} unreadable files:")
            for rel in r.skipped:
                console.print(f"  {r.src / rel}", markup=False)
    if len(results) == 2 and results[0].classes != results[1].classes:
        console.print(f"warning: {results[0].dst.name} and {results[1].dst.name} have "
                      f"different classes; the trainer will refuse them as a pair")


def _counts_table(title: str, classes: list[str], counts: dict[str, int]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("label", justify="right")
    table.add_column("class")
    table.add_column("images", justify="right")
    for i, c in enumerate(classes):
        table.add_row(str(i), c, str(counts.get(c, 0)))
    return table


@app.command("verify", epilog="Docs: docs/data.md")
def verify(
    path: Annotated[Path, typer.Argument(
        help="an .lmdb file, an ImageFolder tree, or a directory of train/ and val/ "
             "(trees or .lmdb files)")],
    workers: Workers = 8,
) -> None:
    """Decode every image of a dataset; list the bad ones.

    Counts the images of PATH per class and lists every record or file that does not
    decode. Exit code 1 when any image is bad, 2 when PATH is not a dataset at all."""
    from zoo.data.lmdb_convert import verify as do_verify
    from zoo.errors import ZooError

    try:
        reports = do_verify(path, workers=workers, progress=_rate_progress)
    except ZooError as exc:
        fail(str(exc))
    bad = 0
    for r in reports:
        console.print(_counts_table(f"{r.path} ({r.kind})", r.classes, r.counts))
        for where, reason in r.bad:
            place = f"{r.path} record {where}" if r.kind == "lmdb" else where
            console.print(f"bad: {place}: {reason}", markup=False)
        bad += len(r.bad)
        verdict = f"{len(r.bad)} bad" if r.bad else "all decode"
        console.print(f"{r.path}: {r.count} good images, {len(r.classes)} classes, {verdict}")
    if bad:
        raise typer.Exit(1)


@app.command("info", epilog="Docs: docs/data.md")
def info(
    path: Annotated[Path, typer.Argument(
        help="an .lmdb file, an ImageFolder tree, or a directory of train/ and val/ "
             "(trees or .lmdb files)")],
) -> None:
    """Describe a dataset: classes, counts, image sizes, bytes.

    Reads the image headers of PATH, not its pixels."""
    from zoo.data.lmdb_convert import info as do_info
    from zoo.errors import ZooError

    try:
        reports = do_info(path, progress=_rate_progress)
    except ZooError as exc:
        fail(str(exc))
    for r in reports:
        console.print(_counts_table(f"{r.path} ({r.kind})", r.classes, r.counts))
        console.print(f"images: {r.count} in {len(r.classes)} classes")
        console.print(f"sizes (w x h): {_top(r.sizes, lambda s: f'{s[0]}x{s[1]}')}")
        console.print(f"modes: {_top(r.modes, str)}; formats: {_top(r.formats, str)}")
        mean = r.encoded_bytes / r.count if r.count else 0
        console.print(f"bytes: {_mib(r.encoded_bytes)} of image files ({mean:,.0f} per image)"
                      + (f", file {_mib(r.file_bytes)}" if r.kind == "lmdb" else ""))
        if r.meta:
            console.print(f"format: {r.meta['format']} v{r.meta['version']}, converted "
                          f"{r.meta.get('created', '?')} from {r.meta.get('source', '?')}",
                          markup=False)
            if r.meta.get("skipped"):
                console.print(f"skipped at conversion: {len(r.meta['skipped'])} files")
        for where, reason in r.bad:
            place = f"{r.path} record {where}" if r.kind == "lmdb" else where
            console.print(f"unreadable: {place}: {reason}", markup=False)


def _top(counter: Any, fmt: Callable[[Any], str], n: int = 5) -> str:
    """'28x28 (60000)' for the ``n`` most common values, and how many others."""
    if not counter:
        return "-"
    common = counter.most_common(n)
    text = ", ".join(f"{fmt(k)} ({v})" for k, v in common)
    rest = len(counter) - len(common)
    return text + (f", and {rest} more" if rest > 0 else "")


@app.command("formats", epilog="Docs: docs/extending.md")
def formats(
    imports: ImportOption = None,
) -> None:
    """List the data formats data.format can name, a plugin's too.

    The zoo's own (imagefolder, lmdb) and those the --import plugins register, each with
    the module that defines it."""
    from zoo.data.formats import get_data_format, list_data_formats

    import_plugins(imports)
    for name in list_data_formats():
        fmt = get_data_format(name)
        typer.echo(f"{name:<14} {fmt.description}  ({fmt.module})")
