"""PNG plots of a report: each variant's top-1 change with its confidence interval, and
validation top-1 against epoch. DataFrames in (from :mod:`ablate.report`), files out.

Figures are drawn with matplotlib's object API on the Agg canvas, so nothing touches
pyplot's global state or needs a display.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from zoo.contract import atomic_open

if TYPE_CHECKING:
    from ablate.report.metrics import Metric

BETTER, WORSE, NOISE, EQUIVALENT = "#1a7f37", "#c0392b", "#7f8c8d", "#2f6db5"
#: A variant's colour by its decision (undecided and untested: grey).
COLORS = {"better": BETTER, "worse": WORSE, "equivalent": EQUIVALENT}
DPI = 120
#: Runs at least this long get a second panel on their last quarter.
ZOOM_FROM_EPOCHS = 12


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:  # a reader never sees half a PNG
        fig.savefig(f, dpi=DPI, format="png")
    return path


def _num(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def plot_deltas(frame: pd.DataFrame, study: str, path: Path) -> Path:
    """Top-1 change against the baseline per variant with its 95% CI as error bars and the
    zero line marked; coloured by the report's decision (Holm-adjusted unless turned
    off): green better, red worse, blue equivalent, grey undecided; dashed lines at
    ±margin when the study declares one; a hollow marker: one seed, no interval."""
    rows = frame[(frame["study"] == study) & (frame["variant_index"] > 0)
                 & (frame["verdict"] != "baseline")]
    rows = rows.to_dict("records")
    base = frame[(frame["study"] == study) & (frame["variant_index"] == 0)]
    base_name = str(base["model"].iloc[0]) if not base.empty else "baseline"
    fig = Figure(figsize=(8.5, max(2.8, 0.42 * len(rows) + 1.9)), layout="constrained")
    ax = fig.add_subplot()
    ax.axvline(0.0, color="black", linewidth=1.0, zorder=1)
    labels = []
    for y, r in enumerate(rows):
        n = int(r["n_paired"] or 0)
        labels.append(f"{r['variant']}  (n={n})")
        delta, ci = _num(r["delta_top1"]), _num(r["ci_top1"])
        if delta is None:
            ax.text(0.0, y, "  no paired seeds yet", va="center", fontsize=8, color=NOISE)
            continue
        color = COLORS.get(str(r["verdict"]), NOISE)
        if ci is None:
            ax.plot([delta], [y], marker="o", markersize=7, markerfacecolor="white",
                    markeredgecolor=color, linestyle="none", zorder=3)
        else:
            ax.errorbar([delta], [y], xerr=[[ci], [ci]], fmt="o", color=color, ecolor=color,
                        elinewidth=2, capsize=4, markersize=6, zorder=3)
    margin = _num(rows[0]["margin"]) if rows else None
    if margin is not None:
        for x in (-margin, margin):
            ax.axvline(x, color=EQUIVALENT, linewidth=1.0, linestyle="--", zorder=1)
    ax.set_yticks(range(len(rows)), labels)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first variant at the top, as in the table
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("Δ top-1 against the baseline (percentage points): mean of paired "
                  "per-seed differences, 95% CI")
    ax.set_title(f"{study}: top-1 change against the baseline ({base_name})", loc="left")
    legend = [
        Line2D([], [], color=BETTER, marker="o", label="better"),
        Line2D([], [], color=WORSE, marker="o", label="worse"),
        Line2D([], [], color=EQUIVALENT, marker="o", label="equivalent (within ±margin)"),
        Line2D([], [], color=NOISE, marker="o", label="undecided"),
        Line2D([], [], color=NOISE, marker="o", markerfacecolor="white", linestyle="none",
               label="one seed: no interval"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    if not rows:
        ax.text(0.5, 0.5, "no variants", transform=ax.transAxes, ha="center")
    return _save(fig, path)


#: The costs a gain can be weighed against: frame column and axis label.
COSTS = (("delta_device_hours", "Δ device-hours per run"), ("delta_macs_g", "Δ MACs (G)"),
         ("delta_params_m", "Δ params (M)"))


def plot_cost(frame: pd.DataFrame, study: str, path: Path) -> Path:
    """Gain against cost: each variant's top-1 change with its 95% CI (vertical bars)
    against its change of device-hours per run, MACs and params (one panel each), coloured
    by the decision as in :func:`plot_deltas`. Upper left is the cheap gain."""
    rows = frame[(frame["study"] == study) & (frame["variant_index"] > 0)
                 & (frame["verdict"] != "baseline")].to_dict("records")
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    for ax, (col, label) in zip(fig.subplots(1, len(COSTS)), COSTS, strict=True):
        ax.axhline(0.0, color="black", linewidth=1.0, zorder=1)
        ax.axvline(0.0, color="black", linewidth=0.6, zorder=1)
        for r in rows:
            cost, delta, ci = _num(r[col]), _num(r["delta_top1"]), _num(r["ci_top1"])
            if cost is None or delta is None:
                continue
            color = COLORS.get(str(r["verdict"]), NOISE)
            ax.errorbar([cost], [delta], yerr=None if ci is None else [[ci], [ci]], fmt="o",
                        color=color, ecolor=color, elinewidth=1.5, capsize=3, zorder=3)
            ax.annotate(str(r["variant"]), (cost, delta), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    fig.axes[0].set_ylabel("Δ top-1 (points), 95% CI")
    fig.suptitle(f"{study}: top-1 gain against cost, each against the baseline",
                 x=0.01, ha="left")
    return _save(fig, path)


def plot_curves(curves: pd.DataFrame, frame: pd.DataFrame, study: str, path: Path) -> Path:
    """Validation top-1 against epoch per variant: the mean over seeds with a min-max band;
    for runs of ZOOM_FROM_EPOCHS epochs or more, a second panel on the last quarter of
    training, where the variants part."""
    data = curves[curves["study"] == study]
    order = frame[frame["study"] == study].sort_values("variant_index")["variant"].tolist()
    last_epoch = int(data["epoch"].max()) if not data.empty else 1
    # A zoom on the last quarter only helps when there are enough epochs to zoom into.
    zoomed = last_epoch >= ZOOM_FROM_EPOCHS
    fig = Figure(figsize=(13 if zoomed else 9, 5.2), layout="constrained")
    full, *rest = fig.subplots(1, 2) if zoomed else [fig.subplots(1, 1)]
    axes = (full, *rest)
    colors = [c["color"] for c in _cycle(max(1, len(order)))]
    handles = []
    zoom_lo: list[float] = []
    zoom_hi: list[float] = []
    start = max(1, min(last_epoch - 1, math.floor(last_epoch * 3 / 4)))
    for i, variant in enumerate(order):
        runs = data[data["variant"] == variant]
        if runs.empty:
            continue
        stats = runs.groupby("epoch")["top1"].agg(["mean", "min", "max"])
        seeds = runs["seed"].nunique()
        baseline = i == 0
        color = "black" if baseline else colors[i % len(colors)]
        width = 2.2 if baseline else 1.4
        for ax in axes:
            ax.plot(stats.index, stats["mean"], color=color, linewidth=width,
                    zorder=3 if baseline else 2)
            if seeds > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=color,
                                alpha=0.12, linewidth=0)
        handles.append(Line2D([], [], color=color, linewidth=width,
                              label=f"{variant} ({seeds} seed{'s' if seeds != 1 else ''})"))
        tail = stats[stats.index >= start]
        if not tail.empty:
            zoom_lo.append(float(tail["min"].min()))
            zoom_hi.append(float(tail["max"].max()))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    full.set_ylabel("validation top-1 (%)")
    fig.suptitle(f"{study}: validation top-1 per epoch, mean over seeds (band: min to max "
                 f"over seeds)", x=0.01, ha="left")
    full.set_title("all epochs", loc="left", fontsize=10)
    if rest and zoom_lo:
        zoom = rest[0]
        zoom.set_title(f"epochs {start}-{last_epoch}", loc="left", fontsize=10)
        pad = max(0.1, (max(zoom_hi) - min(zoom_lo)) * 0.08)
        zoom.set_xlim(start, last_epoch)
        zoom.set_ylim(min(zoom_lo) - pad, max(zoom_hi) + pad)
    if data.empty:
        full.text(0.5, 0.5, "no finished runs yet", transform=full.transAxes, ha="center")
    if handles:
        fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    return _save(fig, path)


def _cycle(n: int) -> list[dict[str, str]]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    count = 20 if n > 10 else 10
    return [{"color": cmap(i % count)} for i in range(max(n, 1))]


#: A variant's colour in the trade-off plot, by its ``changes`` summary.
SUMMARY_COLORS = {"better": BETTER, "worse": WORSE, "trade-off": "#d68910"}


def tradeoff_points(rows: list[dict[str, Any]], metric: Metric, other: str
                    ) -> list[tuple[str, float, float | None, float, float | None, str]]:
    """(variant, Δ metric, its CI half-width, Δ ``other``, its CI half-width, summary) of
    each variant with both deltas: what a panel of :func:`plot_tradeoff` draws."""
    points = []
    for r in rows:
        x, y = _num(r.get(f"delta_{metric.name}")), _num(r.get(f"delta_{other}"))
        if x is None or y is None:
            continue
        summary = str(r.get("changes") or "").rsplit(": ", 1)[-1]
        points.append((str(r["variant"]), x, _num(r.get(f"ci_{metric.name}")), y,
                       _num(r.get(f"ci_{other}")), summary))
    return points


def plot_tradeoff(frame: pd.DataFrame, study: str, path: Path) -> Path | None:
    """What a gain in top-1 costs elsewhere: per metric the study decides beyond top-1,
    each variant's change of it (x, 95% CI; the axis turned so that right is better)
    against its top-1 change (y, 95% CI), and below against its change of device-hours
    per run; coloured by its ``changes`` summary: green better, red worse, orange
    trade-off, grey no decided change. None (no file) when no variant has a paired delta
    of a metric beyond top-1."""
    from ablate.report.render import decided_metrics

    records = frame[frame["study"] == study].to_dict("records")
    rows = [r for r in records if r["verdict"] != "baseline" and r.get("kind") == "variant"]
    metrics = [m for m in decided_metrics(records) if tradeoff_points(rows, m, "top1")]
    if not metrics:
        return None
    fig = Figure(figsize=(4.4 * len(metrics), 7.6), layout="constrained")
    axes = fig.subplots(2, len(metrics), squeeze=False)
    for j, m in enumerate(metrics):
        for ax, other, label in ((axes[0][j], "top1", "Δ top-1 (points), 95% CI"),
                                 (axes[1][j], "device_hours", "Δ device-hours per run")):
            ax.axhline(0.0, color="black", linewidth=0.6, zorder=1)
            ax.axvline(0.0, color="black", linewidth=0.6, zorder=1)
            for name, x, xci, y, yci, summary in tradeoff_points(rows, m, other):
                color = SUMMARY_COLORS.get(summary, NOISE)
                ax.errorbar([x], [y], xerr=None if xci is None else [[xci], [xci]],
                            yerr=None if yci is None else [[yci], [yci]], fmt="o",
                            color=color, ecolor=color, elinewidth=1.2, capsize=3, zorder=3)
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
            if not m.higher_is_better:
                ax.invert_xaxis()
            ax.set_xlabel(f"Δ {m.label} ({m.unit}, {m.direction}; right is better)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    fig.suptitle(f"{study}: each metric's change against top-1's and against cost, each "
                 f"against the baseline", x=0.01, ha="left")
    fig.legend(handles=[Line2D([], [], color=c, marker="o", label=k) for k, c in
                        (*SUMMARY_COLORS.items(), ("no decided change", NOISE))],
               loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return _save(fig, path)


def write_plots(frame: pd.DataFrame, curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``<study>_delta.png``, ``<study>_curves.png``, ``<study>_cost.png`` and, for a study
    that decides metrics beyond top-1, ``<study>_tradeoff.png``, for every study of the
    frame."""
    out_dir = Path(out_dir)
    written = []
    for study in dict.fromkeys(frame["study"]):
        written.append(plot_deltas(frame, study, out_dir / f"{study}_delta.png"))
        written.append(plot_curves(curves, frame, study, out_dir / f"{study}_curves.png"))
        written.append(plot_cost(frame, study, out_dir / f"{study}_cost.png"))
        tradeoff = plot_tradeoff(frame, study, out_dir / f"{study}_tradeoff.png")
        if tradeoff is not None:
            written.append(tradeoff)
    return written
