"""What the orchestrator shows a person: the live view while a study trains, the plan of a
dry run, status tables. Plain dicts in, rich renderables out."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.table import Column, Row, Table

from ablate.console import console
from ablate.store_lite import utcnow

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.live import Live

    from ablate.orchestrate import Event, Orchestrator

STATUS_STYLE = {"succeeded": "green", "failed": "red", "running": "cyan",
                "interrupted": "yellow", "lost": "magenta", "queued": "dim"}


class FastTable(Table):
    """A rich :class:`~rich.table.Table` that prints 10,000 rows in a fraction of a second.

    rich measures and renders every cell through its general machinery: 1.3 ms a row of
    the status table, 13 s for a database of 10,000 runs. The tables here are simple
    (default box and padding, one-line cells that never wrap, narrower than the console),
    and for those the output is built directly: the same characters and styles as rich's
    (``tests/test_orchestrator.py`` compares the two). A cell that is not plain text
    (markup such as ``[green]``, emoji codes, non-printable characters) is rendered by rich,
    once per distinct text; a table of another shape, or too wide for the console (rich
    would shrink its columns), is rendered by rich as a whole."""

    def add_rows(self, rows: Iterable[Sequence[str]]) -> None:
        """``add_row`` for many rows of strings, one per column, without its per-cell
        checks."""
        cells = [c._cells for c in self.columns]
        n = len(cells)
        rows = list(rows)
        bad = next((i for i, row in enumerate(rows) if len(row) != n), None)
        good = rows[:bad]
        if good and n:
            for column, texts in zip(cells, zip(*good, strict=True), strict=True):
                column.extend(texts)  # column by column: one call, not one a cell
        self.rows.extend(Row() for _ in good)
        if bad is not None:
            raise ValueError(f"a row of {len(rows[bad])} cells in a table of {n} columns")

    def _fast_columns(self, console: Console, options: ConsoleOptions
                      ) -> list[_FastColumn] | None:
        """The columns, measured, where the table renders itself (else None: rich does)."""
        if not self._simple():
            return None
        columns = [_FastColumn(console, c) for c in self.columns]
        widths = [c.width for c in columns]
        if not columns or None in widths:
            return None
        if sum(widths) + self._extra_width > options.max_width:  # type: ignore[arg-type]
            return None  # rich would shrink its columns
        return columns

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns = self._fast_columns(console, options)
        if columns is None:
            yield from super().__rich_console__(console, options)
        else:
            yield from self._render_fast(console, options, columns, whole_lines=False)

    def _render_fast(self, console: Console, options: ConsoleOptions,
                     columns: list[_FastColumn], whole_lines: bool) -> RenderResult:
        """The table from its measured columns. ``whole_lines``: a line of text cells is
        one segment (for output that is not cropped again, see :func:`print_table`); else
        a non-ASCII cell is a segment of its own, which rich's cropping measures fast."""
        widths = [c.width for c in columns]
        table_width = sum(widths) + self._extra_width  # type: ignore[arg-type]
        render_options = options.update(width=table_width, highlight=self.highlight,
                                        height=None)
        if self.title:
            yield from self._annotation(console, render_options, self.title,
                                        self.title_style or "table.title", self.title_justify)
        box = self.box.substitute(  # type: ignore[union-attr]
            render_options, safe=console.safe_box if self.safe_box is None else self.safe_box)
        yield Segment(box.get_top(widths) + "\n")  # type: ignore[arg-type]
        # Where styles are dropped anyway (a pipe, a file), a styled cell is text too.
        colorless = (console.color_system is None and not console.record
                     and not console.is_jupyter)
        header_style = console.get_style(self.header_style or "")
        header = [c.cells(render_options, header_style + console.get_style(c.column.header_style),
                          colorless, header=True)[0][0] for c in columns]
        yield from self._line(header, box.head_left, box.head_vertical, box.head_right)
        yield Segment(box.get_row(widths, "head", edge=True) + "\n")  # type: ignore[arg-type]
        body, text_only = zip(*(c.cells(render_options, Style.null(), colorless)
                                for c in columns), strict=True)
        n = self.row_count
        if n and whole_lines and all(text_only):
            left, divider, right = box.mid_left, box.mid_vertical, box.mid_right
            lines = [Segment(f"{left}{divider.join(row)}{right}\n")  # type: ignore[arg-type]
                     for row in zip(*body, strict=True)]
            last: list[str] = [cells[-1] for cells in body]  # type: ignore[misc]
            lines[-1] = Segment(f"{box.foot_left}{box.foot_vertical.join(last)}"
                                f"{box.foot_right}\n")
            yield from lines
        else:
            for i, row in enumerate(zip(*body, strict=True)):
                if i == n - 1:
                    yield from self._line(row, box.foot_left, box.foot_vertical, box.foot_right)
                else:
                    yield from self._line(row, box.mid_left, box.mid_vertical, box.mid_right)
        yield Segment(box.get_bottom(widths) + "\n")  # type: ignore[arg-type]
        if self.caption:
            yield from self._annotation(console, render_options, self.caption,
                                        self.caption_style or "table.caption",
                                        self.caption_justify)

    def _simple(self) -> bool:
        """Whether the table has the shape this class renders itself."""
        return (self.box is not None and self.show_header and not self.show_footer
                and self.show_edge and not self.show_lines and not self.leading
                and self.pad_edge and not self.collapse_padding and not self.expand
                and self.padding == (0, 1, 0, 1) and self.width is None
                and self.min_width is None and not self.row_styles
                and self.style in (None, "", "none") and not self.border_style
                and not any(r.end_section or r.style for r in self.rows)
                and all(c.no_wrap and c.width is None and c.min_width is None
                        and c.max_width is None and c.ratio is None and not c.style
                        and c.vertical == "top" and c.justify in ("left", "right")
                        and isinstance(c.header, str)
                        and all(issubclass(t, str) for t in set(map(type, c._cells)))
                        for c in self.columns))

    @staticmethod
    def _line(cells: Sequence[str | list[Segment]], left: str, divider: str, right: str
              ) -> RenderResult:
        """One row between its borders, unstyled runs joined into one segment (rich's
        own cost is per segment; the characters are the same). A non-ASCII cell stays a
        segment of its own: rich measures such text character by character, but repeated
        short segments (an em dash) from its cache."""
        plain = [left]
        for i, cell in enumerate(cells):
            if i:
                plain.append(divider)
            if isinstance(cell, str):
                if cell.isascii():
                    plain.append(cell)
                else:
                    yield Segment("".join(plain))
                    yield Segment(cell)
                    plain = []
                continue
            for segment in cell:
                if segment.style or segment.control:
                    yield Segment("".join(plain))
                    yield segment
                    plain = []
                else:
                    plain.append(segment.text)
        plain.append(right)
        plain.append("\n")
        yield Segment("".join(plain))

    @staticmethod
    def _annotation(console: Console, options: ConsoleOptions, text: Any, style: Any,
                    justify: Any) -> RenderResult:
        """The title or caption, exactly as rich's table renders it."""
        if isinstance(text, str):
            text = console.render_str(text, style=style, highlight=False)
        return console.render(text, options=options.update(justify=justify))


class _FastColumn:
    """One column of a :class:`FastTable`: its width with padding as rich measures it
    (None: a cell of several lines, which rich would render in full), and its cells."""

    def __init__(self, console: Console, column: Column) -> None:
        self.console, self.column = console, column
        self.right = column.justify == "right"
        texts = [column.header, *column._cells]
        joined = "\n".join(texts) + "\n"
        # rich strips trailing spaces from right-justified cells: those are not plain here.
        self.all_plain = ("[" not in joined and ":" not in joined
                          and joined.replace("\n", "").isprintable()
                          and not (self.right and " \n" in joined))
        self.ascii = joined.isascii()
        self.width: int | None = None
        if self.all_plain:
            self.width = 2 + max(map(len, texts) if self.ascii
                                 else map(cell_len, dict.fromkeys(texts)))
            return
        width = 0
        for text in dict.fromkeys(texts):  # each distinct text once, in order
            if self._plain(text):
                width = max(width, len(text) if text.isascii() else cell_len(text))
                continue
            plain = console.render_str(text, highlight=False).plain
            if "\n" in plain or "\t" in plain:
                return
            width = max(width, cell_len(plain))
        self.width = width + 2

    def _plain(self, text: str) -> bool:
        """Text rich shows as it is: printable, no markup, no ``:emoji:`` codes."""
        return (text.isprintable() and "[" not in text and ":" not in text
                and not (self.right and text.endswith(" ")))

    def cells(self, options: ConsoleOptions, style: Style, colorless: bool,
              header: bool = False) -> tuple[list[str | list[Segment]], bool]:
        """The header or the body cells padded to the column's width, and whether they
        are all text: plain text, where unstyled (or the style is dropped), as a string
        built directly; any other cell as rich's segments, rendered as its table would
        (once per distinct text)."""
        assert self.width is not None
        texts = [self.column.header] if header else self.column._cells
        inner, right = self.width - 2, self.right
        if self.all_plain and (colorless or not style):
            if self.ascii:
                if right:
                    return [f" {t.rjust(inner)} " for t in texts], True
                return [f" {t.ljust(inner)} " for t in texts], True
            padded = {t: self._pad(t, inner) for t in dict.fromkeys(texts)}
            return [padded[t] for t in texts], True
        memo: dict[str, str | list[Segment]] = {}  # the cell of each distinct text
        for text in dict.fromkeys(texts):
            if (colorless or not style) and self._plain(text):
                memo[text] = self._pad(text, inner)
            else:
                lines = self.console.render_lines(
                    Padding(text, (0, 1)),
                    options.update(width=self.width, justify=self.column.justify,
                                   no_wrap=True, overflow="ellipsis", height=None,
                                   highlight=False),
                    style=style)
                segments = Segment.set_shape(
                    Segment.align_top(lines, self.width, 1, style), self.width, 1)[0]
                styled = any(s.control or (s.style and not colorless) for s in segments)
                memo[text] = segments if styled else "".join(s.text for s in segments)
        return ([memo[text] for text in texts],
                all(isinstance(cell, str) for cell in memo.values()))

    def _pad(self, text: str, inner: int) -> str:
        fill = " " * (inner - cell_len(text))
        return f" {fill}{text} " if self.right else f" {text}{fill} "


def _fmt_seconds(s: float | None) -> str:
    if s is None or s != s:
        return "—"
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _elapsed(run: dict[str, Any], now: datetime | None = None) -> float | None:
    start: datetime | None = run.get("started_at")
    if start is None:
        return None
    end = run.get("finished_at") if run["status"] != "running" else None
    return ((end or now or utcnow()) - start).total_seconds()


def eta_seconds(run: dict[str, Any], now: datetime | None = None) -> float | None:
    """Remaining time of a running run from its pace so far (None until one epoch is done)."""
    if run["status"] != "running" or not run.get("epochs_done"):
        return None
    elapsed = _elapsed(run, now)
    if elapsed is None:
        return None
    return elapsed / run["epochs_done"] * (run["epochs"] - run["epochs_done"])


def status_table(study: str, runs: list[dict[str, Any]], now: datetime | None = None
                 ) -> Table:
    """The runs of a study; elapsed times and ETAs up to ``now`` (default: this machine's
    clock; give the database's, ``store.now()``, when it wrote the runs' times)."""
    done = sum(1 for r in runs if r["status"] == "succeeded")
    table = FastTable(title=f"{study}: {done}/{len(runs)} runs succeeded",
                      title_justify="left")
    for col, just in (("variant", "left"), ("seed", "right"), ("run", "left"),
                      ("status", "left"), ("epoch", "right"), ("top-1", "right"),
                      ("img/s", "right"), ("elapsed", "right"), ("ETA", "right")):
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    now = now or utcnow()
    table.add_rows((
        r["variant"], str(r["seed"]), r["hash"][:8],
        f"[{STATUS_STYLE.get(r['status'], '')}]{r['status']}[/]",
        f"{r['epochs_done']}/{r['epochs']}",
        "—" if r["top1"] is None else f"{r['top1']:.2f}",
        "—" if r["images_per_s"] is None else f"{r['images_per_s']:.0f}",
        _fmt_seconds(_elapsed(r, now)), _fmt_seconds(eta_seconds(r, now)),
    ) for r in runs)
    errors = [r for r in runs if r["status"] == "failed" and r.get("error")]
    if errors:
        table.caption = "\n".join(f"{r['hash'][:8]} {r['variant']} seed {r['seed']}: "
                                  f"{r['error']}" for r in errors)
        table.caption_justify = "left"
    return table


def print_table(table: Table, out: Console = console) -> None:
    """``out.print(table)``. A :class:`FastTable` that renders itself is within the
    console's width: it is printed without rich's cropping of every line to that width (a
    no-op for it that costs 5 us a line), each line one segment."""
    columns = table._fast_columns(out, out.options) if isinstance(table, FastTable) else None
    if columns is None:
        out.print(table)
    else:
        out.print(_WholeLines(table, columns), crop=False)


class _WholeLines:
    """A FastTable as :func:`print_table` prints it, its columns already measured."""

    def __init__(self, table: FastTable, columns: list[_FastColumn]) -> None:
        self.table, self.columns = table, columns

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        return self.table._render_fast(console, options, self.columns, whole_lines=True)


def plan_table(study: str, rows: list[dict[str, Any]], statuses: dict[str, str]) -> Table:
    table = FastTable(title=f"{study}: plan of {len(rows)} runs", title_justify="left")
    for col in ("variant", "change", "seed", "run", "state"):
        table.add_column(col, no_wrap=col != "change")
    label = {"succeeded": "done", "running": "running", "failed": "failed (--retry-failed)",
             "interrupted": "to resume", "lost": "to resume", "queued": "to do"}
    table.add_rows([r["variant"], r["change"], str(r["seed"]), r["hash"][:8],
                    label.get(statuses.get(r["hash"]) or "queued",
                              statuses.get(r["hash"]) or "to do")] for r in rows)
    return table


class LiveView:
    """One line per active run and the study's progress with ETA; in a pipe, plain lines."""

    def __init__(self, total_runs: int, already_done: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.tty = sys.stdout.isatty()
        self.total, self.done = total_runs, already_done
        self.progress = Progress(TextColumn("study"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=console)
        self.task = self.progress.add_task("study", total=total_runs, completed=already_done)
        self.live: Live | None = None
        self.orch: Orchestrator | None = None
        self.t0 = time.monotonic()

    def __enter__(self) -> LiveView:
        if self.tty:
            from rich.live import Live

            self.live = Live(self._render(), console=console, refresh_per_second=2,
                             get_renderable=self._render)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def _render(self) -> Group:
        table = Table(box=None, pad_edge=False)
        for col in ("variant", "seed", "epoch", "top-1", "img/s", "elapsed"):
            table.add_column(col, no_wrap=True)
        if self.orch is not None:
            for job in self.orch.active.values():
                run = job.run
                metrics = self.orch.store.metrics(job.hash)[-1:] or [{}]
                last = metrics[0]
                table.add_row(
                    run["variant"], str(run["seed"]),
                    f"{self.orch.epochs_seen.get(job.hash, 0)}/{run['epochs']}",
                    f"{last['top1']:.2f}" if "top1" in last else "—",
                    f"{last['images_per_s']:.0f}" if "images_per_s" in last else "—",
                    _fmt_seconds(time.monotonic() - job.started),
                )
        return Group(table, self.progress)

    def __call__(self, event: Event, orch: Orchestrator) -> None:
        self.orch = orch
        run = event.run
        name = f"{run['variant']} seed {run['seed']} ({run['hash'][:8]})"
        if event.kind in ("done", "failed"):
            self.done += 1
            self.progress.update(self.task, completed=self.done)
        line = {
            "start": f"start   {name}",
            "epoch": f"epoch   {name}: {event.detail}/{run['epochs']}",
            "done": f"done    {name}",
            "failed": f"[red]failed[/]  {name}: {event.detail}",
            "interrupted": f"[yellow]stopped[/] {name} (resumes on the next run)",
        }[event.kind]
        if event.kind == "epoch" and self.tty:
            return  # the live table shows epochs
        console.print(line)
