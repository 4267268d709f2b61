"""The report as one self-contained HTML page a person can open offline or send to a
colleague: per study the improvement table (sortable by clicking a header) with its notes,
each row's per-seed values and config differences in a ``<details>``, the Δ-with-CI plot
and the learning curves embedded as base64 PNGs (drawn by :mod:`.plots`), and every column
of the report's DataFrame, unrounded, in a second table.

No network access is needed to open it: no external script, style sheet, font or image.
The page renders whatever columns the frame has: the readable table is
:func:`ablate.report.render.display_table`'s, the full table is pandas' ``to_html`` of
every column.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.report.aggregate import config_diff
from ablate.report.load import StudyRecord, curves_frame, load_studies
from ablate.report.render import display_table, effect_notes, study_notes

if TYPE_CHECKING:
    import pandas as pd

    from ablate.store.db import Store

#: Columns of the readable table -> the frame's column a click sorts them by (the cell
#: shows rounded text; the sort uses the unrounded number).
SORT_KEYS = {"epochs": "epochs", "batch size": "batch_size", "gpus": "gpus", "lr": "lr",
             "top1/top5": "top1", "improve": "delta_top1", "95% CI": "ci_top1_low",
             "seeds": "seeds", "params (M) / MACs (G)": "params_m"}
#: Frame columns the full table leaves out: the same for every row, or shown as notes.
_NOT_IN_FULL_TABLE = ("study", "notes", "study_notes")

# Clicking a header sorts its table's rows by that column: by data-sort (the unrounded
# number) where a cell has one, else by its text; numbers before text, a second click
# reverses. Rows move whole, with their <details>.
SORT_JS = """
document.querySelectorAll("table.sortable thead th").forEach(th => th.addEventListener(
  "click", () => {
    const body = th.closest("table").tBodies[0], col = th.cellIndex;
    const dir = th.dataset.dir = th.dataset.dir === "asc" ? "desc" : "asc";
    const key = row => {
      const cell = row.cells[col], text = cell.dataset.sort ?? cell.textContent.trim();
      const num = parseFloat(text);
      return isNaN(num) ? [1, text] : [0, num];
    };
    const rows = [...body.rows].sort((a, b) => {
      const [ka, va] = key(a), [kb, vb] = key(b);
      const c = ka - kb || (va < vb ? -1 : va > vb ? 1 : 0);
      return dir === "asc" ? c : -c;
    });
    body.append(...rows);
    th.closest("tr").querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
  }));
"""

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #d0d7de; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable thead th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
strong { color: #1a7f37; }
details summary { cursor: pointer; color: #0969da; }
img { max-width: 100%; height: auto; }
.meta { color: #59636e; }
"""


def _b64_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _plots(frame: pd.DataFrame, curves: pd.DataFrame, study: str) -> list[tuple[str, str]]:
    """(alt text, data URI) of the study's Δ-with-CI plot and learning curves."""
    from ablate.report.plots import plot_curves, plot_deltas

    with tempfile.TemporaryDirectory(prefix="ablate-html-") as tmp:
        delta = plot_deltas(frame, study, Path(tmp) / "delta.png")
        curve = plot_curves(curves, frame, study, Path(tmp) / "curves.png")
        return [(f"{study}: top-1 change against the baseline, 95% CI", _b64_png(delta)),
                (f"{study}: validation top-1 per epoch", _b64_png(curve))]


def _value(value: Any) -> str:
    """A config value as the page shows it: JSON (strings unquoted), absent as such."""
    if value is None:
        return "absent"
    return value if isinstance(value, str) else json.dumps(
        list(value) if isinstance(value, tuple) else value)


def _num_text(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _row_details(record: StudyRecord, variant_index: int) -> str:
    """One row's ``<details>``: its runs seed by seed, then its config against the
    baseline's (every differing key, declared or not; the seed is not a difference)."""
    runs = sorted((r for r in record.runs if r.variant_index == variant_index),
                  key=lambda r: r.seed)
    if not runs:
        return ""
    anchor = html.escape(f"{record.name}-{variant_index}", quote=True)
    seeds = "".join(
        f'<tr><td class="num">{r.seed}</td><td>{html.escape(r.status)}</td>'
        f'<td class="num" data-sort="{"" if r.top1 is None else repr(float(r.top1))}">'
        f"{_num_text(r.top1 if r.succeeded else None)}</td>"
        f'<td class="num" data-sort="{"" if r.top5 is None else repr(float(r.top5))}">'
        f"{_num_text(r.top5 if r.succeeded else None)}</td>"
        f"<td><code>{html.escape(r.hash)}</code></td></tr>" for r in runs)
    parts = [f'<table class="seeds" id="seeds-{anchor}"><thead><tr><th>seed</th>'
             f"<th>status</th><th>top1</th><th>top5</th><th>run</th></tr></thead>"
             f"<tbody>{seeds}</tbody></table>"]
    n_diff = 0
    if variant_index != 0:
        base = [r for r in record.runs if r.variant_index == 0]
        diff = config_diff(base[0].config, runs[0].config) if base else {}
        n_diff = len(diff)
        if diff:
            items = "".join(f"<tr><td><code>{html.escape(k)}</code></td>"
                            f"<td>{html.escape(_value(a))}</td><td>{html.escape(_value(b))}</td>"
                            f"</tr>" for k, (a, b) in diff.items())
            parts.append(f'<table class="config" id="config-{anchor}"><thead><tr>'
                         f"<th>config key</th><th>baseline</th><th>this variant</th></tr>"
                         f"</thead><tbody>{items}</tbody></table>")
        else:
            parts.append("<p>config identical to the baseline's</p>")
    done = sum(1 for r in runs if r.succeeded)
    summary = f"{done}/{len(runs)} seeds" + (
        f", {n_diff} config key{'s' if n_diff != 1 else ''}" if variant_index else "")
    return f"<details><summary>{summary}</summary>{''.join(parts)}</details>"


def _improvement_table(rows: pd.DataFrame, record: StudyRecord) -> str:
    """The readable table, one ``<tr>`` per variant: cells as the markdown report shows
    them, a data-sort with the unrounded number where the column has one, and a last
    cell with the row's details."""
    import pandas as pd

    cells = display_table(rows, bold=lambda x: f"<strong>{x}</strong>", escape=html.escape)
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in cells.columns)
    body = []
    for (_, shown), (_, row) in zip(cells.iterrows(), rows.iterrows(), strict=True):
        tds = []
        for col, text in shown.items():
            key = SORT_KEYS.get(str(col))
            if key is None:
                tds.append(f"<td>{text}</td>")
                continue
            value = row[key]
            sort = "" if pd.isna(value) else repr(float(value))  # None, NaN or pandas' NA
            tds.append(f'<td class="num" data-sort="{sort}">{text}</td>')
        tds.append(f"<td>{_row_details(record, int(row['variant_index']))}</td>")
        body.append(f'<tr data-variant="{html.escape(str(row["variant"]), quote=True)}">'
                    + "".join(tds) + "</tr>")
    anchor = html.escape(record.name, quote=True)
    return (f'<table class="sortable improvement" id="improvement-{anchor}"><thead><tr>'
            f"{header}<th>runs</th></tr></thead><tbody>{''.join(body)}</tbody></table>")


def _full_table(rows: pd.DataFrame, study: str) -> str:
    """Every column of the frame but the study's name and the notes, unrounded."""
    keep = [c for c in rows.columns if c not in _NOT_IN_FULL_TABLE]
    anchor = html.escape(study, quote=True)
    # repr: every digit (to_html would round to pandas' display precision, 6).
    return rows[keep].to_html(index=False, na_rep="-", border=0,
                              float_format=lambda v: repr(float(v)),
                              classes=["sortable", "full"], table_id=f"full-{anchor}")


def study_section(frame: pd.DataFrame, curves: pd.DataFrame, record: StudyRecord) -> str:
    """One study's part of the page."""
    rows = frame[frame["study"] == record.name]
    name = html.escape(record.name)
    effects = rows["kind"] == "effect"
    notes = "".join(f"<li>{html.escape(n)}</li>"
                    for n in study_notes(rows[~effects]) + effect_notes(rows[effects]))
    images = "".join(f'<p><img src="{uri}" alt="{html.escape(alt, quote=True)}"></p>'
                     for alt, uri in _plots(frame, curves, record.name))
    return (f'<section id="study-{html.escape(record.name, quote=True)}">'
            f"<h2>{name}</h2>"
            f'<p class="meta">mode {html.escape(record.mode)}; {len(record.runs)} runs planned, '
            f"{sum(1 for r in record.runs if r.succeeded)} succeeded. Click a column header "
            f"to sort; open a row's <em>runs</em> for its seeds and config.</p>"
            f"{_improvement_table(rows, record)}<ul class=\"notes\">{notes}</ul>{images}"
            f"<details><summary>every column of the report, unrounded</summary>"
            f"{_full_table(rows, record.name)}</details></section>")


def render_page(frame: pd.DataFrame, curves: pd.DataFrame, records: Sequence[StudyRecord],
                source: str = "", refresh_s: int | None = None) -> str:
    """The whole page for ``records``' studies (in their order). ``refresh_s``: the
    browser reloads it that often (``ablate run --html`` while a study trains)."""
    names = [r.name for r in records]
    title = "ablate report: " + ", ".join(names)
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    toc = ""
    if len(records) > 1:
        toc = "<nav><ul>" + "".join(
            f'<li><a href="#study-{html.escape(n, quote=True)}">{html.escape(n)}</a></li>'
            for n in names) + "</ul></nav>"
    sections = "\n".join(study_section(frame, curves, r) for r in records)
    live = " (refreshes while the study trains)" if refresh_s else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{refresh}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>"
            f'<p class="meta">From {html.escape(source)}, {stamp}{live}.</p>{toc}\n'
            f"{sections}\n<script>{SORT_JS}</script></body></html>\n")


def build_page(store: Store, studies: Sequence[str] | None = None,
               refresh_s: int | None = None, *, margin: float | None = None,
               holm: bool = True, metrics: Sequence[str] = ()) -> str:
    """The page of the named studies (default: all) from the results database; ``margin``,
    ``holm`` and ``metrics`` as for :func:`ablate.report.aggregate.build_frame`."""
    from ablate.report.aggregate import build_rows, frame_of
    from ablate.report.kernels import records_kernel_notes, with_kernel_notes

    records = load_studies(store, studies)
    names = [r.name for r in records]
    frame = frame_of(with_kernel_notes(build_rows(store, names, margin=margin, holm=holm,
                                                  metrics=metrics, records=records),
                                       records_kernel_notes(records, store)))
    return render_page(frame, curves_frame(store, names), records,
                       source=store.display_url, refresh_s=refresh_s)


def write_pages(store: Store, out: Path, studies: Sequence[str] | None = None,
                per_study: bool = False, refresh_s: int | None = None, *,
                margin: float | None = None, holm: bool = True,
                metrics: Sequence[str] = ()) -> list[Path]:
    """Write the page(s): one file ``out`` for every study, or with ``per_study`` one
    ``out/<study>.html`` each. Written atomically: a browser reloading it never reads half
    a page."""
    from zoo.contract import atomic_write

    if not per_study:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, build_page(store, studies, refresh_s, margin=margin, holm=holm,
                                          metrics=metrics))
        return [out]
    names = [r.name for r in load_studies(store, studies)]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        path = out / f"{name}.html"
        atomic_write(path, build_page(store, [name], refresh_s, margin=margin, holm=holm,
                                          metrics=metrics))
        written.append(path)
    return written

