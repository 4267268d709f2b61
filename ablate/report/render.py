"""Renderers: the report's DataFrame as markdown (the README tables), csv, latex, html or
json. markdown, latex and html are the tables a person reads, with the notes under each;
csv and json are the whole frame, every number unrounded.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ablate.errors import AblateError
from ablate.report.aggregate import NO_TEST, NOTE_SEP
from ablate.report.metrics import METRICS, Metric

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["markdown", "csv", "latex", "html", "json"]
FORMATS: tuple[str, ...] = ("markdown", "csv", "latex", "html", "json")

# --------------------------------------------------------------------------- display


def _num(value: Any) -> float | None:
    """A number of the report as a float; None for a missing one (None, NaN, pandas' NA:
    a frame holds those)."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):  # pandas' NA refuses float()
        return None
    return None if math.isnan(f) else f


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _sig(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _improve(row: Mapping[str, Any], bold: Callable[[str], str]) -> str:
    verdict = row["verdict"]
    delta = _num(row["delta_top1"])
    if verdict == "baseline":
        return "baseline"
    if delta is None:
        return "-"
    if verdict == "better":
        return bold(_signed(delta))
    if verdict == "n=1":
        return f"{_signed(delta)} (n=1)"
    return _signed(delta)


def _decision(row: Mapping[str, Any]) -> str:
    """The decision the report acts on; with Holm's, the unadjusted label beside it where
    the two differ."""
    verdict = str(row["verdict"])
    if verdict in NO_TEST:
        return "-"
    plain = row.get("label")
    if row.get("label_holm") is not None and plain != verdict:
        return f"{verdict} (unadjusted: {plain})"
    return verdict


def _delta_cost(row: Mapping[str, Any]) -> str:
    if row["verdict"] == "baseline":
        return "-"
    params, macs = _num(row["delta_params_m"]), _num(row["delta_macs_g"])
    return f"{_signed_sig(params)}/{_signed_sig(macs)}"


def _delta_hours(row: Mapping[str, Any]) -> str:
    if row["verdict"] == "baseline":
        return "-"
    return _signed_sig(_num(row["delta_device_hours"]))


def _signed_sig(value: float | None) -> str:
    """A signed change to three significant digits; ``0`` for none at all."""
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:+.3g}"


def _ci(row: Mapping[str, Any]) -> str:
    low, high = _num(row["ci_top1_low"]), _num(row["ci_top1_high"])
    if row["verdict"] == "n=1":
        return "n=1"
    if low is None or high is None:
        return "-"
    return f"[{_signed(low)}, {_signed(high)}]"


def _top(row: Mapping[str, Any]) -> str:
    t1, t5 = _num(row["top1"]), _num(row["top5"])
    if t1 is None:
        return "-"
    return f"{t1:.2f}/" + ("-" if t5 is None else f"{t5:.2f}")


def _seeds(row: Mapping[str, Any]) -> str:
    done, planned = int(row["seeds"]), int(row["seeds_planned"])
    return str(done) if done == planned else f"{done}/{planned}"


def _cost(row: Mapping[str, Any]) -> str:
    return f"{_sig(_num(row['params_m']))}/{_sig(_num(row['macs_g']))}"


def _int(value: Any) -> str:
    f = _num(value)
    return "-" if f is None else str(int(f))


ABLATION_HEADER = ("model", "epochs", "dtype", "batch size", "gpus", "lr", "tricks", "degree",
                   "top1/top5", "improve", "95% CI", "decision", "seeds",
                   "params (M) / MACs (G)", "Δ params / MACs", "Δ device-h/run")
#: Planned seeds: the columns a planned-seeds study's table adds (its stage, the target).
PLANNED_HEADER = ("stage", "target ±")
MODELS_HEADER = ("model", "epochs", "dtype", "batch size", "gpus", "lr", "tricks",
                 "params (M) / MACs (G)", "top1/top5", "seeds")
_RIGHT = {"epochs", "batch size", "gpus", "lr", "top1/top5", "improve", "95% CI", "seeds",
          "target ±",
          "params (M) / MACs (G)", "Δ params / MACs", "Δ device-h/run"}


def display_table(study: pd.DataFrame, bold: Callable[[str], str] = lambda s: f"**{s}**",
                  escape: Callable[[str], str] = lambda s: s) -> pd.DataFrame:
    """The rows of one study as the cells a person reads, in the original README layout
    (``ablation``) or the models table layout (``models``). ``bold`` marks an improvement
    whose whole interval is above zero; ``escape`` protects text for the target format."""
    import pandas as pd

    header, rows = _display_cells(study.to_dict("records"), bold, escape)
    return pd.DataFrame(rows, columns=list(header))


def _display_cells(records: Sequence[Mapping[str, Any]],
                   bold: Callable[[str], str] = lambda s: f"**{s}**",
                   escape: Callable[[str], str] = lambda s: s,
                   ) -> tuple[tuple[str, ...], list[list[str]]]:
    """:func:`display_table` as its header and rows of cells, from the study's rows of
    the frame as records."""
    layout = records[0]["layout"]
    header = MODELS_HEADER if layout == "models" else ABLATION_HEADER
    if any(r.get("stage") is not None for r in records):
        header = (*header, *PLANNED_HEADER)
    decided = decided_metrics(records) if layout != "models" else []
    if decided:
        header = (*header, *(f"Δ {m.label}" for m in decided), "changes")
    rows = []
    for row in records:
        lr = _num(row["lr"])
        cells = {
            "model": escape(str(row["model"])),
            "epochs": _int(row["epochs"]),
            "dtype": escape(str(row["dtype"])),
            "batch size": _int(row["batch_size"]),
            "gpus": _int(row["gpus"]),
            "lr": "-" if lr is None else f"{lr:g}",
            "tricks": escape(str(row["tricks"])),
            "degree": escape(str(row["degree"])),
            "top1/top5": _top(row),
            "improve": _improve(row, bold),
            "95% CI": _ci(row),
            "decision": _decision(row),
            "Δ params / MACs": _delta_cost(row),
            "Δ device-h/run": _delta_hours(row),
            "seeds": _seeds(row),
            "params (M) / MACs (G)": _cost(row),
            "stage": str(row.get("stage") or "-"),
            "target ±": "-" if _num(row.get("target_halfwidth")) is None else
                        f"{_num(row.get('target_halfwidth')):g}",
        }
        for m in decided:
            cells[f"Δ {m.label}"] = _metric_cell(row, m.name)
        cells["changes"] = escape(str(row.get("changes") or "-"))
        rows.append([cells[h] for h in header])
    return header, rows


def decided_metrics(records: Sequence[Mapping[str, Any]]) -> list[Metric]:
    """The metrics beyond top-1 a study's rows decide (those with a ``verdict_<name>``
    column filled), in :data:`ablate.report.metrics.METRICS` order."""
    return [m for m in METRICS.values() if m.name != "top1"
            and records[0].get(f"verdict_{m.name}") is not None]


def _metric_cell(row: Mapping[str, Any], name: str) -> str:
    """A decided metric's change: delta, 95% CI, decision (Holm's within the metric)."""
    verdict = str(row.get(f"verdict_{name}"))
    delta = _num(row.get(f"delta_{name}"))
    if verdict == "baseline":
        return "baseline"
    if delta is None:
        return "-"
    if verdict == "n=1":
        return f"{delta:+.3g} (n=1)"
    low, high = _num(row.get(f"ci_{name}_low")), _num(row.get(f"ci_{name}_high"))
    return f"{delta:+.3g} [{low:+.3g}, {high:+.3g}] {verdict}"


def _metric_notes(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the columns of the metrics beyond top-1 say, and how each is decided."""
    decided = decided_metrics(records)
    if not decided:
        return []
    holm = any(_num(r.get(f"p_{m.name}_holm")) is not None for r in records for m in decided)
    notes = [f"Δ {m.label}: change of the final {m.label} ({m.unit}, {m.direction}) against "
             f"the baseline, mean of the paired per-seed differences [95% CI, paired t], "
             f"and its decision (better/worse in the metric's own direction, else "
             f"undecided; no equivalence margin)" for m in decided]
    sizes = ", ".join(f"{m.label} {sum(_num(r.get(f'p_{m.name}')) is not None for r in records)}"
                      for m in decided)
    notes.append(f"each metric is its own family: its decisions are Holm-adjusted across "
                 f"the study's variants tested on it ({sizes}), so the family-wise error "
                 f"rate (alpha = 0.05) holds per metric, not across the metrics" if holm else
                 f"each metric's decisions are not adjusted for multiplicity ({sizes} tests)")
    notes.append("changes: every decided change (better or worse, top-1's decision as in "
                 "the decision column), the study's primary metric first; trade-off: "
                 "better in one metric and worse in another. Metrics: NLL = mean cross-"
                 "entropy of the true class; ECE = expected calibration error of the top "
                 "label over 15 equal-width confidence bins; worst-class = lowest per-class "
                 "top-1; corruption = mean top-1 over 5 corruptions x 5 severities")
    return notes


#: How to read the improve column, of a study with a list of seeds and of planned seeds.
IMPROVE_NOTE = ("improve: top-1 change against the baseline, the mean of the "
                "paired per-seed differences, with its 95% CI (paired t, "
                "unadjusted); bold: the decision is better.")
PLANNED_IMPROVE_NOTE = ("improve: top-1 change against the baseline, the mean of the "
                        "paired per-seed differences, with its 95% CI (Stein's two-stage "
                        "interval, unadjusted); bold: the decision is better. Planned "
                        "seeds: each variant's seeds after the pilot were fixed from the "
                        "pilot's sd alone, for a CI no wider than ±target (seeds: "
                        "done/planned); stage: pilot (stage 2 not planned yet), stage 2 "
                        "(planned seeds missing), done. The 95% coverage holds over "
                        "all variants together, not for a variant singled out by its "
                        "pilot: a variant not capped by max: (its pilot's sd came out "
                        "small) covers less than 95% (about 78% in simulation with 3 pilot "
                        "seeds, sd 0.5, max 12), a capped one more; capped says only "
                        "whether the target half-width is guaranteed.")


def study_notes(study: pd.DataFrame) -> list[str]:
    """The statements under a study's table: noise floor, how to read the deltas, seeds
    needed for 80% power, and every difference beyond the declared changes."""
    return _notes(study.to_dict("records"))


def _notes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """:func:`study_notes` from the study's rows of the frame as records."""
    base = rows[0]
    layout = base["layout"]
    notes: list[str] = []
    sd = _num(base["top1_sd"])
    n = int(base["seeds"])
    label = "model" if layout == "models" else "variant"
    if layout == "models":
        sds = [f"{r['model']} {_num(r['top1_sd']):.2f}" for r in rows
               if _num(r["top1_sd"]) is not None]
        notes.append("top1/top5: final validation accuracy (%), mean over seeds. "
                     + ("Seed-to-seed sd of top-1: " + ", ".join(sds) + "."
                        if sds else "One seed per model: the seed-to-seed noise is unknown."))
    else:
        if sd is not None:
            notes.append(f"Noise floor: the baseline's top-1 varies by {sd:.2f} (sd) across its "
                         f"{n} seeds.")
        else:
            notes.append(f"Noise floor: unknown with {n} baseline seed(s); run at least two "
                         f"seeds to tell signal from noise.")
        notes.append(IMPROVE_NOTE if base.get("stage") is None else PLANNED_IMPROVE_NOTE)
        if base.get("rule"):
            notes.append(f"{str(base['rule'])[0].upper()}{str(base['rule'])[1:]}.")
        notes += [f"{n[0].upper()}{n[1:]}." for n in _metric_notes(rows)]
        notes.append("Δ params / MACs: change of the model's parameters (M) and MACs (G); "
                     "Δ device-h/run: change of the mean device-hours of one run, against "
                     "the baseline.")
        needed = []
        for r in rows[1:]:
            k = _num(r["seeds_for_power"])
            if k is not None:
                needed.append(f"{r['variant']} {int(k)}")
            elif r["verdict"] == "n=1":
                needed.append(f"{r['variant']} ? (one seed)")
            elif _num(r["delta_top1"]) == 0:
                needed.append(f"{r['variant']} - (no change)")
        if needed:
            notes.append("Seeds needed to detect the observed delta at 80% power (paired "
                         "t-test, two-sided alpha = 0.05, observed sd of the differences): "
                         + ", ".join(needed) + ".")
    notes += [f"{line[0].upper()}{line[1:]}." for line in
              str(base["study_notes"] or "").split(NOTE_SEP) if line]
    for r in rows:
        for line in str(r["notes"] or "").split(NOTE_SEP):
            if line:
                notes.append(f"{r[label]}: {line}.")
    return notes


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    header = [str(c) for c in columns]
    body = [[str(v).replace("|", "\\|") for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if h in _RIGHT else c.ljust(w)
                  for c, w, h in zip(cells, widths, header, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if h in _RIGHT else ("-" * (w + 2))
                          for w, h in zip(widths, header, strict=True)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def image_links(study: str, plots_dir: str) -> list[str]:
    """Markdown image links to a study's plots in ``plots_dir`` (as the reader sees it)."""
    base = plots_dir.rstrip("/") or "."
    return [f"![{study}: top-1 change against the baseline]({base}/{study}_delta.png)",
            f"![{study}: validation top-1 per epoch]({base}/{study}_curves.png)"]


def study_markdown(frame: pd.DataFrame, study: str,
                   images: Sequence[str] = ()) -> str:
    """One study's markdown block: the table, the notes under it, then image lines."""
    rows = frame[frame["study"] == study]
    if rows.empty:
        raise AblateError(f"study '{study}' is not in the report")
    return _study_block(rows.to_dict("records"), images)


def _study_block(records: Sequence[Mapping[str, Any]], images: Sequence[str] = ()) -> str:
    """:func:`study_markdown` from the study's rows of the frame as records."""
    variants, effects = _split(records)
    parts = [_markdown_table(*_display_cells(variants)),
             "\n".join(f"- {n}" for n in _notes(variants))]
    transfers = [r for r in records if r.get("kind") == "transfer"]
    if effects:
        parts += [_markdown_table(*_effect_cells(effects)),
                  "\n".join(f"- {n}" for n in _effect_notes(effects))]
    if transfers:
        parts += [_markdown_table(*_transfer_cells(variants, transfers)),
                  "\n".join(f"- {n}" for n in _transfer_notes(transfers))]
    if images:
        parts.append("\n".join(images))
    return "\n\n".join(parts) + "\n"


def _split(records: Sequence[Mapping[str, Any]]
           ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """A study's variant rows and (factorial studies) its effect rows."""
    variants = [r for r in records if r.get("kind", "variant") == "variant"]
    return variants, [r for r in records if r.get("kind") == "effect"]


def _transfer_cells(variants: Sequence[Mapping[str, Any]],
                    transfers: Sequence[Mapping[str, Any]],
                    escape: Callable[[str], str] = lambda s: s,
                    ) -> tuple[tuple[str, ...], list[list[str]]]:
    """A models study's trick x model table: each model's delta, CI and decision against
    its own baseline, and the trick's verdict across the models."""
    models = str(transfers[0]["model"]).split(", ")
    header = ("trick", *models, "across models")
    by_name = {str(r["variant"]): r for r in variants}
    rows = []
    for t in transfers:
        cells = [escape(str(t["variant"]))]
        for m in models:
            r = by_name.get(f"{t['variant']} @ {m}")
            delta = None if r is None else _num(r["delta_top1"])
            cells.append("-" if r is None or delta is None else
                         f"{_signed(delta)} {_ci(r)} {_decision(r)}")
        rows.append([*cells, str(t["verdict"])])
    return header, rows


def _transfer_notes(transfers: Sequence[Mapping[str, Any]]) -> list[str]:
    return ["Across models: each cell is the trick's top-1 change against the same model's "
            "baseline, 95% CI and decision; transfers: every model gets the same decided "
            "label (an intersection-union test at alpha = 0.05, Berger 1982); "
            "model-specific: the labels differ and Welch's test rejects equal deltas "
            "(Welch 1951; approximately level alpha: with 2-3 seeds per model and unequal "
            "noise it rejects equal deltas up to about 7% of the time at alpha = 0.05); "
            "undecided: neither."] + [
        f"{t['variant']}: {t['notes']}." for t in transfers if t["notes"]]


EFFECTS_HEADER = ("effect", "estimate", "95% CI", "decision", "aliased with")


def _effect_cells(records: Sequence[Mapping[str, Any]],
                  bold: Callable[[str], str] = lambda s: f"**{s}**",
                  escape: Callable[[str], str] = lambda s: s,
                  ) -> tuple[tuple[str, ...], list[list[str]]]:
    """A factorial study's effects table: one row per main effect or two-way interaction."""
    rows = []
    for r in records:
        est = _num(r["delta_top1"])
        cells = {"effect": escape(str(r["variant"])),
                 "estimate": "-" if est is None else (
                     bold(_signed(est)) if r["verdict"] == "better" else _signed(est)),
                 "95% CI": _ci(r), "decision": _decision(r),
                 "aliased with": escape(str(r["aliases"] or "-"))}
        rows.append([cells[h] for h in EFFECTS_HEADER])
    return EFFECTS_HEADER, rows


def effect_notes(effects: pd.DataFrame) -> list[str]:
    """The statements under a factorial study's effects table (its design, the rule)."""
    return _effect_notes(effects.to_dict("records")) if len(effects) else []


def _effect_notes(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"Effects: {records[0]['study_notes']}. An effect is the mean top-1 with the "
            f"factor on minus with it off (an interaction A:B: half the change of A's "
            f"effect when B is turned on), by least squares (Box, Hunter & Hunter 2005); "
            f"an aliased effect's estimate is the sum of everything it is aliased with.",
            f"{str(records[0]['rule'])[0].upper()}{str(records[0]['rule'])[1:]} "
            f"(the effects are one family)."]


def _studies(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["study"]))


def _records_by_study(report: pd.DataFrame | Sequence[Mapping[str, Any]]
                      ) -> dict[str, list[dict[str, Any]]]:
    """The report's rows as records (a frame's, or :func:`ablate.report.aggregate.
    build_rows`' as they are), grouped by study in the report's order (one pass over a
    frame, not one filter per study: pandas' cost is per call)."""
    out: dict[str, list[dict[str, Any]]] = {}
    records = report if isinstance(report, list) else report.to_dict("records")
    for record in records:
        out.setdefault(record["study"], []).append(record)
    return out


def to_markdown(report: pd.DataFrame | list[dict[str, Any]], plots_dir: str | None = None
                ) -> str:
    """Every study as a heading, its table and its notes."""
    return "\n".join(
        f"## {s}\n\n" + _study_block(records, image_links(s, plots_dir) if plots_dir else ())
        for s, records in _records_by_study(report).items())


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
          "^": r"\textasciicircum{}", "γ": r"$\gamma$", "α": r"$\alpha$", "→": r"$\to$",
          "±": r"$\pm$", "≈": r"$\approx$", "Δ": r"$\Delta$", "°": r"$^\circ$"}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell (common Greek letters become math)."""
    return "".join(_LATEX.get(c, c) for c in text)


def to_latex(frame: pd.DataFrame) -> str:
    """One ``table`` per study (booktabs rules; bold as \\textbf), then its notes."""
    parts = []
    for s in _studies(frame):
        rows = frame[(frame["study"] == s) & (frame["kind"] == "variant")]
        table = display_table(rows, bold=lambda x: f"\\textbf{{{x}}}", escape=latex_escape)
        table.columns = [latex_escape(c) for c in table.columns]
        latex = table.to_latex(index=False, escape=False, caption=latex_escape(s),
                               label=f"tab:{re.sub(r'[^A-Za-z0-9]+', '-', s)}")
        notes = "\n".join(f"  \\item {latex_escape(n)}" for n in study_notes(rows))
        parts.append(f"% ablate report: {s}\n{latex}\\begin{{itemize}}\n{notes}\n"
                     f"\\end{{itemize}}\n")
    return "\n".join(parts)


def to_html(frame: pd.DataFrame, plots_dir: str | None = None) -> str:
    """An HTML fragment: per study a heading, the table and the notes as a list (and a
    factorial study's effects table)."""
    import pandas as pd

    parts = []
    for s in _studies(frame):
        rows = frame[(frame["study"] == s) & (frame["kind"] == "variant")]
        table = display_table(rows, bold=lambda x: f"<strong>{x}</strong>", escape=html.escape)
        effects = frame[(frame["study"] == s) & (frame["kind"] == "effect")]
        notes = "\n".join(f"  <li>{html.escape(n)}</li>" for n in study_notes(rows))
        images = ""
        if plots_dir:
            base = plots_dir.rstrip("/") or "."
            images = "".join(f'\n<p><img src="{html.escape(base)}/{html.escape(s)}_{kind}.png" '
                             f'alt="{html.escape(s)} {kind}"></p>' for kind in ("delta", "curves"))
        extra = ""
        transfers = frame[(frame["study"] == s) & (frame["kind"] == "transfer")]
        if not transfers.empty:
            records = transfers.to_dict("records")
            header, cells = _transfer_cells(rows.to_dict("records"), records, html.escape)
            items = "\n".join(f"  <li>{html.escape(n)}</li>" for n in _transfer_notes(records))
            extra += ("\n" + pd.DataFrame(cells, columns=list(header)).to_html(
                index=False, escape=False, border=0) + f"\n<ul>\n{items}\n</ul>")
        if not effects.empty:
            records = effects.to_dict("records")
            header, cells = _effect_cells(records, bold=lambda x: f"<strong>{x}</strong>",
                                          escape=html.escape)
            items = "\n".join(f"  <li>{html.escape(n)}</li>" for n in _effect_notes(records))
            extra += ("\n" + pd.DataFrame(cells, columns=list(header)).to_html(
                index=False, escape=False, border=0) + f"\n<ul>\n{items}\n</ul>")
        parts.append(f"<h2>{html.escape(s)}</h2>\n"
                     + table.to_html(index=False, escape=False, border=0)
                     + f"\n<ul>\n{notes}\n</ul>{extra}{images}\n")
    return "\n".join(parts)


def render(frame: pd.DataFrame | list[dict[str, Any]], fmt: Format,
           plots_dir: str | None = None) -> str:
    """The report in one format: markdown/latex/html are the tables a person reads; csv
    and json are the whole frame, every number unrounded. ``frame``: the report's frame or
    its rows (:func:`ablate.report.aggregate.build_rows`; markdown needs no frame)."""
    if fmt == "markdown":
        return to_markdown(frame, plots_dir)
    if fmt not in FORMATS:
        raise AblateError(f"--format {fmt}: not one of {', '.join(FORMATS)}")
    if isinstance(frame, list):
        from ablate.report.aggregate import frame_of

        frame = frame_of(frame)
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "latex":
        return to_latex(frame)
    if fmt == "html":
        return to_html(frame, plots_dir)
    return frame.to_json(orient="records", indent=2) + "\n"

