"""``ablate data ...``: put real image datasets on disk for the trainer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer

from ablate.console import console, fail

app = typer.Typer(help="Prepare and inspect datasets.", no_args_is_help=True)


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


@app.command("prepare")
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
    """Write DATASET as ImageFolder trees of PNG files: OUT/train/<class>/ and OUT/val/<class>/."""
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
