"""Aggregation: the one intermediate form of a report, a pandas DataFrame with one row
per (study, variant) (see :data:`COLUMNS`), baseline first, with the numbers of its
succeeded runs, the paired comparison with its study's baseline, and notes on every way
the compared runs differ beyond the declared change (code, environment, config).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError
from ablate.inference.power import seeds_for_power_each
from ablate.report.load import (
    ENV_KEYS,
    RunRecord,
    StudyRecord,
    _commit,
    _env_value,
    load_studies,
    with_final_metrics,
)
from ablate.report.metrics import DEFAULT_PRIMARY, METRICS, Metric, chosen
from ablate.report.stats import (
    ALPHA,
    PairedDelta,
    check_margin,
    decide,
    paired_delta,
    rule,
)

if TYPE_CHECKING:
    import pandas as pd

    from ablate.store.db import Store

#: One row per (study, variant); the numbers are over that variant's succeeded runs.
COLUMNS = (
    "study", "layout", "variant", "variant_index", "change",
    "model", "epochs", "dtype", "batch_size", "gpus", "lr", "tricks", "degree",
    "seeds", "seeds_planned", "top1", "top5", "top1_sd", "params_m", "macs_g",
    "n_paired", "delta_top1", "ci_top1", "ci_top1_low", "ci_top1_high", "sd_diff_top1",
    "delta_top5", "ci_top5", "verdict", "label", "label_holm", "p_top1", "p_top1_holm",
    "p_tost", "p_tost_holm", "margin", "adjusted", "rule", "seeds_for_power",
    "device_hours", "device_hours_per_run", "delta_params_m", "delta_macs_g",
    "delta_device_hours", "kind", "aliases", "stage", "target_halfwidth", "capped",
    "notes", "study_notes", "changes", "se_effect",
)
#: ``changes``: a variant's decided changes over every decided metric, primary first, and
#: their summary (better / worse / trade-off / no decided change; see :func:`_changes`).
#: ``se_effect``: a factorial effect row's standard error (``sd_diff_top1`` is the sd of
#: per-seed differences, in variant rows only). The columns of the metrics beyond top-1 a
#: report decides follow (:func:`ablate.report.metrics.extra_columns`).

#: ``stage`` of a planned-seeds study's row (None in other studies): the pilot is not
#: complete (no stage 2 yet), stage-2 seeds are still missing, or every planned seed is in.
STAGES = ("pilot", "stage 2", "done")

#: ``kind`` of a row: a variant's runs, a factorial study's main effect / interaction, or
#: a trick across a study's models (its verdict: transfers / model-specific / undecided).
KINDS = ("variant", "effect", "transfer")

#: The verdicts of rows without a test: the baseline, no paired seeds, one pair.
NO_TEST = ("baseline", "no pairs", "n=1")

NOTE_SEP = "\n"


# --------------------------------------------------------------------------- configs


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"optim.lr": 0.4, ...}``; empty mappings stay leaves (a trick
    without parameters is still a key), lists become tuples."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        # The common cases first, by concrete type (an ABC's isinstance costs more).
        if value is None or isinstance(value, (str, int, float)):
            out[dotted] = value
        elif isinstance(value, list):
            out[dotted] = tuple(value)
        elif isinstance(value, (dict, Mapping)):
            if value:
                out.update(flatten(value, f"{dotted}."))
            else:
                out[dotted] = {}
        else:
            out[dotted] = value
    return out


def _set_keys(key: str, value: Any) -> set[str]:
    """Config keys a study's ``set`` override declares it changes."""
    if key == "model" and isinstance(value, str):
        return {"model.name"}
    if isinstance(value, Mapping) and value:
        return set(flatten(value, f"{key}."))
    return {key}


def declared_keys(spec: Mapping[str, Any], mode: str, variant: str) -> set[str] | None:
    """The config keys the study file says ``variant`` changes against the baseline: its
    tricks and ``set`` keys (in cumulative mode, those of every variant up to it). None
    when the stored study file does not name the variant."""
    variants = [v for v in spec.get("variants") or [] if isinstance(v, Mapping)]
    names = [v.get("name") for v in variants]
    for model in spec.get("models") or []:  # "mixup @ resnet50": mixup, on resnet50
        if variant.endswith(f" @ {model}"):
            variant = variant[: -len(f" @ {model}")]
    if mode == "factorial":  # "mixup + cutout": both factors on
        on = variant.split(" + ")
        if not set(on) <= set(names):
            return None
        chosen = [v for v in variants if v.get("name") in on]
    elif variant not in names:
        return None
    else:
        i = names.index(variant)
        chosen = variants[: i + 1] if mode == "cumulative" else [variants[i]]
    keys: set[str] = set()
    for v in chosen:
        keys |= {f"tricks.{t}" for t in (v.get("tricks") or {})}
        for k, val in (v.get("set") or {}).items():
            keys |= _set_keys(str(k), val)
    return keys


def _covered(key: str, declared: Iterable[str]) -> bool:
    return any(key == d or key.startswith(f"{d}.") for d in declared)


def config_diff(base: Mapping[str, Any], other: Mapping[str, Any],
                ignore: Iterable[str] = ("seed",)) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two resolved configs: key -> (base, other)."""
    return _flat_diff(flatten(base), flatten(other), ignore)


def _flat_diff(a: Mapping[str, Any], b: Mapping[str, Any],
               ignore: Iterable[str] = ("seed",)) -> dict[str, tuple[Any, Any]]:
    """:func:`config_diff` of two flattened configs."""
    skip = tuple(ignore)
    keys = a.keys() | b.keys()
    differ = [k for k in keys if a.get(k) != b.get(k) and not _covered(k, skip)]
    # An empty mapping on one side (``tricks: {}``) is a container on the other: its
    # entries are compared, not the container (a leaf of one side that the other lacks).
    return {k: (a.get(k), b.get(k)) for k in sorted(differ)
            if (k in a and k in b) or not any(other.startswith(f"{k}.") for other in keys)}


# --------------------------------------------------------------------------- formatting


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt_value(v) for v in value) + "]"
    if value == {}:
        return "on"
    if value is None:
        return "absent"
    return str(value)


def _describe_tricks(tricks: Mapping[str, Any]) -> str:
    parts = []
    for name, params in tricks.items():
        if params:
            inner = ", ".join(f"{k}={_fmt_value(v)}" for k, v in params.items())
            parts.append(f"{name}({inner})")
        else:
            parts.append(name)
    return ", ".join(parts)


def _degree(base_cfg: Mapping[str, Any], cfg: Mapping[str, Any],
            flat_base: Mapping[str, Any] | None = None,
            flat_cfg: Mapping[str, Any] | None = None,
            diff: Mapping[str, tuple[Any, Any]] | None = None) -> str:
    """The parameters of what a variant changes: its tricks' parameters, and config values
    that have no column of their own. ``flat_*``: the configs already flattened; ``diff``:
    their :func:`_flat_diff` already taken."""
    shown = {"model.name", "epochs", "precision", "batch_size", "optim.lr"}
    base_tricks = base_cfg.get("tricks") or {}
    parts: list[str] = []
    for name, params in (cfg.get("tricks") or {}).items():
        if base_tricks.get(name) == params:
            continue
        parts += [f"{k}={_fmt_value(v)}" for k, v in (params or {}).items()]
    removed = [n for n in base_tricks if n not in (cfg.get("tricks") or {})]
    parts += [f"without {n}" for n in removed]
    if diff is None:
        diff = _flat_diff(flatten(base_cfg) if flat_base is None else flat_base,
                          flatten(cfg) if flat_cfg is None else flat_cfg)
    for key, (_, new) in diff.items():
        if key not in shown and not _covered(key, ("tricks",)):
            parts.append(f"{key}={_fmt_value(new)}")
    return ", ".join(parts) or "-"


def _effective_model(config: Mapping[str, Any]) -> str:
    """The model a run trains, worked out from its config: for a database from before
    runs recorded it (imports the study machinery only then)."""
    from ablate.study.spec import effective_model

    return effective_model(config)


def _dtype(config: Mapping[str, Any], runs: Sequence[RunRecord]) -> str:
    precision = str(config.get("precision", "auto"))
    if precision == "auto":  # the trainer's rule: fp16 on CUDA, fp32 elsewhere
        kinds = {r.env.get("device_type") for r in runs if r.env}
        if kinds == {"cuda"}:
            return "FP16"
        if kinds and "cuda" not in kinds:
            return "FP32"
        return "auto"
    return precision.upper()


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _sd(values: Iterable[float]) -> float | None:
    """The sample sd (n - 1), in floats: statistics.stdev's exact fractions cost a 10,000-
    run report a quarter of a second."""
    vals = list(values)
    if len(vals) < 2:
        return None
    mean = sum(vals) / len(vals)
    return math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def _values(values: Iterable[Any]) -> str:
    return "/".join(sorted({str(v) for v in values}))


def _pair_notes(base: Sequence[RunRecord], runs: Sequence[RunRecord]) -> list[str]:
    """How a variant's runs differ from their paired baseline runs in code or environment."""
    by_seed = {r.seed: r for r in base}
    pairs = [(by_seed[r.seed], r) for r in runs if r.seed in by_seed]
    if all(a.provenance is not None and a.provenance == b.provenance for a, b in pairs):
        return []  # the same code and environment throughout (the common case, fast)
    notes = []
    if any(_commit(a) != _commit(b) for a, b in pairs):
        notes.append(f"code differs from the baseline's runs: baseline "
                     f"{_values(_commit(a) for a, _ in pairs)}, this variant "
                     f"{_values(_commit(b) for _, b in pairs)}")
    diffs = []
    for key in ENV_KEYS:
        if any(_env_value(a, key) != _env_value(b, key) for a, b in pairs):
            diffs.append(f"{key} {_values(_env_value(a, key) for a, _ in pairs)} -> "
                         f"{_values(_env_value(b, key) for _, b in pairs)}")
    if diffs:
        notes.append("environment differs from the baseline's runs: " + "; ".join(diffs))
    return notes


def _internal_notes(runs: Sequence[RunRecord]) -> list[str]:
    """How the seeds of one variant differ among themselves in code or environment."""
    if runs and runs[0].provenance is not None and all(
            r.provenance == runs[0].provenance for r in runs):
        return []  # the same code and environment throughout (the common case, fast)
    notes = []
    commits = {_commit(r) for r in runs}
    if len(commits) > 1:
        notes.append(f"its seeds ran different code: {_values(commits)}")
    for key in ENV_KEYS:
        values = {str(_env_value(r, key)) for r in runs}
        if len(values) > 1:
            notes.append(f"its seeds ran in different environments: {key} {_values(values)}")
    return notes


def _missing_note(runs: Sequence[RunRecord]) -> str | None:
    missing = [r for r in runs if not r.succeeded]
    if not missing:
        return None
    done = len(runs) - len(missing)
    detail = ", ".join(f"seed {r.seed} {r.status}" for r in missing)
    return f"{done} of {len(runs)} seeds are in ({detail})"


# --------------------------------------------------------------------------- the frame


def _layout(by_variant: Mapping[int, Sequence[RunRecord]]) -> str:
    """``models`` when every variant trains another model than the baseline (a models
    table), else ``ablation`` (one change at a time against the baseline)."""
    names = {i: (runs[0].config.get("model") or {}).get("name") for i, runs in
             by_variant.items() if runs}
    if len(names) < 2 or 0 not in names:
        return "ablation"
    return "models" if all(n != names[0] for i, n in names.items() if i != 0) else "ablation"


def study_margin(rec: StudyRecord, margin: float | None = None) -> float | None:
    """The equivalence margin of a study: ``margin`` (the command line's) or its study
    file's ``margin:`` key, in top-1 points; None when neither declares one."""
    if margin is not None:
        return check_margin(margin, "--margin")
    return check_margin(rec.spec.get("margin"), f"study '{rec.name}': margin")


@dataclass(frozen=True)
class _Baseline:
    """What every row of a study is compared against: its baseline's runs, config and
    per-seed values of each decided metric, and the study's settings."""

    rec: StudyRecord
    metrics: tuple[Metric, ...]
    margin: float | None
    planned: Any
    layout: str
    ok: list[RunRecord]
    config: dict[str, Any]
    flat: dict[str, Any]
    values: dict[str, dict[int, float]]
    notes: str


def _seed_values(rec: StudyRecord, ok: Sequence[RunRecord], m: Metric) -> dict[int, float]:
    """Seed -> the metric's final value, over the succeeded runs that have it."""
    if m.in_result:
        pairs = [(r.seed, getattr(r, m.key)) for r in ok]
    else:
        pairs = [(r.seed, rec.finals.get(r.hash, {}).get(m.key)) for r in ok]
    return {seed: value for seed, value in pairs if value is not None}


def study_metrics(rec: StudyRecord, metrics: Sequence[str] = ()) -> tuple[Metric, ...]:
    """The metrics a study's report decides: its ``primary:`` (default top1) first, top-1,
    its ``metrics:`` and ``metrics`` (the command line's ``--metric``)."""
    return chosen(str(rec.spec.get("primary") or DEFAULT_PRIMARY),
                  [*(rec.spec.get("metrics") or ()), *metrics])


def study_rows(rec: StudyRecord, margin: float | None = None, holm: bool = True,
               metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per variant of a study, baseline first, with the aggregated numbers and
    each variant's decision: against ``margin`` (default: the study's ``margin:``), Holm-
    adjusted across the study's variants unless ``holm`` is False. Besides top-1, the
    study's ``primary:`` and ``metrics:`` and ``metrics`` are decided, each its own Holm
    family (``rec.finals`` holds the values of those not in the result)."""
    rows = _decided_rows(rec, margin, holm, metrics)
    _seeds_needed(rows)
    return rows


def _decided_rows(rec: StudyRecord, margin: float | None, holm: bool,
                  metrics: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`study_rows` without its seeds for power (``None``): :func:`build_rows` finds
    those of every study's variants in one search."""
    if rec.spec.get("models"):
        return model_rows(rec, margin, holm, metrics)
    by_variant: dict[int, list[RunRecord]] = {}
    for r in rec.runs:
        by_variant.setdefault(r.variant_index, []).append(r)
    if 0 not in by_variant:
        raise AblateError(f"study '{rec.name}': no baseline (variant 0) in the database; "
                          f"run 'ablate run' on its study file again")
    base = _baseline(rec, by_variant, margin, metrics)
    rows: list[dict[str, Any]] = []
    deltas: dict[str, list[PairedDelta | None]] = {m.name: [] for m in base.metrics}
    for index in sorted(by_variant):
        row, row_deltas = _variant_row(base, index, by_variant[index])
        rows.append(row)
        for name, d in row_deltas.items():
            deltas[name].append(d)
    if base.planned is not None:
        _baseline_stage(rows, base.planned)
    _decide(rows, deltas["top1"], base.margin, holm, two_stage=base.planned is not None)
    for m in base.metrics:
        if m.name != "top1":
            _decide_metric(rows, m, deltas[m.name], holm)
    _changes(rows, base.metrics)
    _costs(rows)
    if rec.mode == "factorial":
        from ablate.inference import InferenceError

        try:
            rows += effect_rows(rec, rows[0], base.margin, holm)
        except InferenceError as exc:  # runs still missing: the per-run table stands alone
            rows[0]["study_notes"] = NOTE_SEP.join(
                filter(None, [rows[0]["study_notes"], f"no factorial effects yet: {exc}"]))
    return rows


def _seeds_needed(rows: Sequence[dict[str, Any]]) -> None:
    """Each compared variant's seeds for 80% power at its observed delta and sd, all of
    ``rows``' variants in one vectorised search (:func:`seeds_for_power_each`)."""
    asked = [r for r in rows if r["kind"] == "variant" and r["delta_top1"] is not None]
    for row, n in zip(asked, seeds_for_power_each([r["delta_top1"] for r in asked],
                                                  [r["sd_diff_top1"] for r in asked]),
                      strict=True):
        row["seeds_for_power"] = n


def _baseline(rec: StudyRecord, by_variant: Mapping[int, Sequence[RunRecord]],
              margin: float | None, metrics: Sequence[str]) -> _Baseline:
    decided = study_metrics(rec, metrics)
    ok = [r for r in by_variant[0] if r.succeeded]
    config = by_variant[0][0].config
    return _Baseline(
        rec=rec, metrics=decided, margin=study_margin(rec, margin), planned=_planned(rec),
        layout=_layout(by_variant), ok=ok, config=config, flat=flatten(config),
        values={m.name: _seed_values(rec, ok, m) for m in (*decided, METRICS["top5"])},
        notes=_study_notes(rec))


def _variant_row(base: _Baseline, index: int, runs: Sequence[RunRecord]
                 ) -> tuple[dict[str, Any], dict[str, PairedDelta | None]]:
    """One variant's row, and its paired delta of each decided metric (None for the
    baseline, or without paired seeds)."""
    ok = [r for r in runs if r.succeeded]
    values = {m.name: _seed_values(base.rec, ok, m) for m in (*base.metrics, METRICS["top5"])}
    notes = list(filter(None, [_missing_note(runs)])) + _internal_notes(ok)
    stage: dict[str, Any] = {"stage": None, "target_halfwidth": None, "capped": None,
                             "seeds_planned": len(runs)}
    deltas: dict[str, PairedDelta | None] = {name: None for name in values}
    flat = flatten(runs[0].config)
    diff: dict[str, tuple[Any, Any]] | None = None
    verdict = "baseline"
    if index != 0:
        deltas = {name: paired_delta(base.values[name], v) for name, v in values.items()}
        if base.planned is not None:
            deltas["top1"] = _two_stage(base.planned, base.values["top1"], values["top1"],
                                        deltas["top1"], stage, notes)
        d1 = deltas["top1"]
        verdict = "no pairs" if d1 is None else "n=1" if d1.n < 2 else ""
        diff = _flat_diff(base.flat, flat)
        notes += _pair_notes(base.ok, ok) + _beyond_notes(base.rec, runs[0].variant, diff)
    row = {**_describe(base, index, runs, ok, flat, diff),
           **_top1_cells(values, deltas["top1"], deltas["top5"]), "verdict": verdict, **stage,
           "notes": NOTE_SEP.join(notes), "study_notes": base.notes}
    for m in base.metrics:
        if m.name not in ("top1", "top5"):
            row.update(_metric_cells(m.name, values[m.name], deltas[m.name]))
        elif m.name == "top5":
            row.update(_metric_cells("top5", values["top5"], deltas["top5"]))
    return row, {m.name: deltas[m.name] for m in base.metrics}


def _beyond_notes(rec: StudyRecord, variant: str, diff: Mapping[str, tuple[Any, Any]]
                  ) -> list[str]:
    """The config keys a variant changes beyond what its study file declares."""
    declared = declared_keys(rec.spec, rec.mode, variant)
    extra = {k: v for k, v in diff.items()
             if not _covered(k, declared if declared is not None else {"tricks"})}
    if not extra:
        return []
    return ["config differs from the baseline beyond the declared change: "
            + ", ".join(f"{k} {_fmt_value(a)} -> {_fmt_value(b)}" for k, (a, b) in extra.items())]


def _describe(base: _Baseline, index: int, runs: Sequence[RunRecord],
              ok: Sequence[RunRecord], flat: Mapping[str, Any],
              diff: Mapping[str, tuple[Any, Any]] | None) -> dict[str, Any]:
    """The columns that say what a variant is and costs (not its comparison)."""
    cfg = runs[0].config
    world = [r.world_size for r in ok if r.world_size is not None]
    params = _mean(r.params for r in ok)
    macs = _mean(r.macs for r in ok)
    hours = [r.device_hours for r in ok if r.device_hours is not None]
    if base.layout == "models":
        tricks = _describe_tricks(cfg.get("tricks") or {}) or "-"
    else:
        tricks = "-" if index == 0 else runs[0].variant
    return {
        "study": base.rec.name, "layout": base.layout, "variant": runs[0].variant,
        "variant_index": index, "change": runs[0].change,
        "model": runs[0].model or _effective_model(cfg), "epochs": cfg.get("epochs"),
        "dtype": _dtype(cfg, ok), "batch_size": cfg.get("batch_size"),
        "gpus": max(sorted(set(world)), key=world.count) if world else runs[0].nproc,
        "lr": (cfg.get("optim") or {}).get("lr"), "tricks": tricks,
        "degree": "-" if index == 0 else _degree(base.config, cfg, base.flat, flat, diff),
        "params_m": None if params is None else params / 1e6,
        "macs_g": None if macs is None else macs / 1e9,
        "device_hours": sum(hours) if hours else None,
        "device_hours_per_run": _mean(hours), "kind": "variant", "aliases": None,
    }


def _top1_cells(values: Mapping[str, Mapping[int, float]], d1: PairedDelta | None,
                d5: PairedDelta | None) -> dict[str, Any]:
    """The top-1 (and top-5) columns of a variant row."""
    top1 = values["top1"]
    return {
        "seeds": len(top1), "top1": _mean(top1.values()), "top5": _mean(values["top5"].values()),
        "top1_sd": _sd(top1.values()), "n_paired": 0 if d1 is None else d1.n,
        "delta_top1": None if d1 is None else d1.mean,
        "ci_top1": None if d1 is None else d1.half_width,
        "ci_top1_low": None if d1 is None else d1.low,
        "ci_top1_high": None if d1 is None else d1.high,
        "sd_diff_top1": None if d1 is None else d1.sd,
        "delta_top5": None if d5 is None else d5.mean,
        "ci_top5": None if d5 is None else d5.half_width,
        "seeds_for_power": None,  # every variant's at once: _seeds_needed
    }


def _metric_cells(name: str, values: Mapping[int, float], d: PairedDelta | None
                  ) -> dict[str, Any]:
    """A decided metric's columns (:func:`ablate.report.metrics.extra_columns`) but its
    decision: mean over seeds, paired delta (variant - baseline, in its unit), interval
    and sd of the differences."""
    return {
        name: _mean(values.values()),
        f"delta_{name}": None if d is None else d.mean,
        f"ci_{name}": None if d is None else d.half_width,
        f"ci_{name}_low": None if d is None else d.low,
        f"ci_{name}_high": None if d is None else d.high,
        f"sd_diff_{name}": None if d is None else d.sd,
    }


def _oriented(d: PairedDelta | None, m: Metric) -> PairedDelta | None:
    """``d`` as an improvement: negated for a metric where lower is better (so that
    the decision's "better" means better)."""
    if d is None or m.higher_is_better:
        return d
    return PairedDelta(d.n, -d.mean, d.sd, d.half_width, tuple(-x for x in d.differences))


def _decide_metric(rows: list[dict[str, Any]], m: Metric,
                   deltas: Sequence[PairedDelta | None], holm: bool) -> None:
    """A metric beyond top-1: each variant's decision (better / worse in the metric's
    own direction, or undecided; no equivalence margin), Holm-adjusted across the study's
    variants with this metric's tests alone as the family."""
    n = m.name
    decisions = decide([_oriented(d, m) for d in deltas], None, holm=holm)
    for row, d, delta in zip(rows, decisions, deltas, strict=True):
        verdict = ("baseline" if row is rows[0] else "no pairs" if delta is None
                   else "n=1" if delta.n < 2 else None)
        row.update({f"p_{n}": None, f"p_{n}_holm": None, f"verdict_{n}": verdict})
        if d is not None:
            row.update({f"p_{n}": d.test.p_diff, f"verdict_{n}": d.label,
                        f"p_{n}_holm": None if d.adjusted is None else d.adjusted.p_diff})


def _changes(rows: list[dict[str, Any]], metrics: Sequence[Metric]) -> None:
    """Each variant's decided changes in one line, primary metric first: "top-1 +0.8,
    ECE -1.2: trade-off" (better in one metric, worse in another), else "better",
    "worse" or "no decided change"."""
    rows[0]["changes"] = "baseline"
    for row in rows[1:]:
        parts, kinds = [], []
        for m in metrics:
            verdict = row["verdict"] if m.name == "top1" else row[f"verdict_{m.name}"]
            if verdict in ("better", "worse"):
                parts.append(f"{m.label} {row[f'delta_{m.name}']:+.3g}")
                kinds.append(verdict)
        summary = ("trade-off" if len(set(kinds)) == 2 else kinds[0] if kinds
                   else "no decided change")
        row["changes"] = f"{', '.join(parts)}: {summary}" if parts else summary


def model_rows(rec: StudyRecord, margin: float | None, holm: bool,
               metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
    """A study with a models axis: each model's variants against that model's baseline
    (Holm across the variants of one model), then one ``transfer`` row per trick: its
    verdict across the models (:func:`ablate.inference.transfer`)."""
    from dataclasses import replace

    from ablate.inference import InferenceError, Paired, transfer

    models = [str(m) for m in rec.spec["models"]]
    spec = {k: v for k, v in rec.spec.items() if k != "models"}
    rows: list[dict[str, Any]] = []
    for model in models:
        suffix = f" @ {model}"
        runs = [r for r in rec.runs if r.variant.endswith(suffix)]
        if not runs:
            continue
        first = min(r.variant_index for r in runs)
        sub = StudyRecord(rec.name, rec.mode, spec, tuple(
            replace(r, variant=r.variant[: -len(suffix)], variant_index=r.variant_index - first)
            for r in runs), rec.finals)
        for row in _decided_rows(sub, margin, holm, metrics):
            row.update(variant=f"{row['variant']}{suffix}",
                       variant_index=row["variant_index"] + first)
            rows.append(row)
    tricks = [str(v["name"]) for v in rec.spec.get("variants") or []]
    for i, trick in enumerate(tricks):
        per_model = {m: r for m in models for r in rows
                     if r["variant"] == f"{trick} @ {m}" and r["kind"] == "variant"}
        deltas = {m: Paired(int(r["n_paired"]), r["delta_top1"], r["sd_diff_top1"])
                  for m, r in per_model.items() if r["sd_diff_top1"] is not None}
        verdict, note = "undecided", ""
        if len(deltas) == len(models):
            try:
                t = transfer(deltas, margin)
                verdict = t.verdict
                note = (f"Welch's test of equal deltas across models: F = {t.welch.f:.3g} on "
                        f"({t.welch.df_num:g}, {t.welch.df_den:.3g}) df, p = "
                        f"{t.welch.p_value:.3g}")
            except InferenceError as exc:
                note = f"no verdict: {exc}"
        else:
            note = "no verdict: not every model has two or more paired seeds of it yet"
        rows.append({**{c: None for c in COLUMNS}, "study": rec.name,
                     "layout": rows[0]["layout"] if rows else "ablation", "variant": trick,
                     "variant_index": -1 - i, "model": ", ".join(models), "kind": "transfer",
                     "verdict": verdict, "margin": margin, "notes": note,
                     "rule": rows[0]["rule"] if rows else "", "study_notes": ""})
    return rows


def effect_rows(rec: StudyRecord, base: Mapping[str, Any], margin: float | None,
                holm: bool) -> list[dict[str, Any]]:
    """A factorial study's main effects and two-way interactions: least squares over its
    design with seeds as blocks (:func:`ablate.inference.estimate_effects`), each labelled
    by the same rule as a variant (TOST against ``margin``; Holm across the effects)."""
    import numpy as np

    from ablate.inference import estimate_effects, label, t_sf
    from ablate.inference import holm as holm_adjust
    from ablate.study.spec import factorial_name, study_design

    factors = [v["name"] for v in rec.spec.get("variants") or []]
    design = study_design(factors, rec.spec.get("resolution"))
    top1: dict[tuple[str, int], float] = {
        (r.variant, r.seed): r.top1 for r in rec.runs if r.succeeded and r.top1 is not None}
    seeds = sorted({seed for _, seed in top1})
    y = np.array([[top1.get((factorial_name(on), seed), np.nan) for on in design.on]
                  for seed in seeds])
    fit = estimate_effects(design, y)
    effects = fit.effects
    p_diff = [e.p_value for e in effects]
    p_tost: list[float | None] = [None] * len(effects)
    if margin is not None and fit.df > 0:
        p_tost = [max(t_sf(e.estimate + margin, e.se, fit.df),
                      t_sf(margin - e.estimate, e.se, fit.df)) for e in effects]
    tested = fit.df > 0
    adj_diff, adj_tost = p_diff, p_tost
    if holm and tested:
        adj_diff = list(holm_adjust(p_diff).adjusted)
        if margin is not None:
            adj_tost = list(holm_adjust(p_tost).adjusted)
    note = (f"{design.runs}-run {'full' if not design.p else 'fractional'} two-level design "
            f"over {design.k} factors" + (f", resolution {design.resolution}, defining "
                                          f"relation I = {' = '.join(design.words)}"
                                          if design.p else "")
            + f"; {len(seeds)} seed(s) as blocks, residual sd {fit.sigma:.3g} on {fit.df} df")
    rows = []
    for i, (e, pd_, pt, ad, at) in enumerate(zip(effects, p_diff, p_tost, adj_diff, adj_tost,
                                                strict=True)):
        plain = label(e.estimate, pd_, pt, fit.alpha) if tested else None
        adjusted = label(e.estimate, ad, at, fit.alpha) if tested and holm else None
        iv = e.interval
        rows.append({**{c: None for c in COLUMNS},
                     "study": rec.name, "layout": base["layout"], "variant": e.name,
                     "variant_index": -1 - i, "change": " x ".join(e.factors),
                     "model": base["model"], "seeds": len(seeds),
                     "seeds_planned": len(seeds), "n_paired": int(np.isfinite(y).sum()),
                     "delta_top1": e.estimate, "ci_top1": None if iv is None else iv.half_width,
                     "ci_top1_low": None if iv is None else iv.low,
                     "ci_top1_high": None if iv is None else iv.high,
                     "se_effect": e.se,
                     "verdict": (adjusted or plain) if tested else "n=1",
                     "label": plain, "label_holm": adjusted, "p_top1": pd_,
                     "p_top1_holm": ad if holm and tested else None, "p_tost": pt,
                     "p_tost_holm": at if holm and tested and margin is not None else None,
                     "margin": margin, "adjusted": holm and tested, "rule": base["rule"],
                     "kind": "effect", "aliases": ", ".join(e.aliases),
                     "notes": "", "study_notes": note})
    return rows


def _decide(rows: list[dict[str, Any]], deltas: Sequence[Any], margin: float | None,
            holm: bool, two_stage: bool = False) -> None:
    """Each tested variant's label (unadjusted and Holm's) and p-values, the decision the
    report acts on as its ``verdict``, and the rule in words, into ``rows``. Planned
    seeds (``two_stage``): the deltas carry Stein's summaries, whose p-values are exact
    tests, so Holm's adjustment over them is as valid as over paired t-tests."""
    decisions = decide(deltas, margin, holm=holm)
    family = sum(d is not None for d in decisions)
    text = rule(margin, family, holm, two_stage=two_stage)
    for row, d in zip(rows, decisions, strict=True):
        row.update(margin=margin, adjusted=holm and family > 1, rule=text, label=None,
                   label_holm=None, p_top1=None, p_top1_holm=None, p_tost=None,
                   p_tost_holm=None)
        if d is None:
            continue
        row.update(label=d.test.label, p_top1=d.test.p_diff, p_tost=d.test.p_tost,
                   verdict=d.label)
        if d.adjusted is not None:
            row.update(label_holm=d.adjusted.label, p_top1_holm=d.adjusted.p_diff,
                       p_tost_holm=d.adjusted.p_tost)


def _planned(rec: StudyRecord) -> Any:
    """The study's planned seeds (:class:`ablate.study.spec.PlannedSeeds`), or None for a
    plain list of seeds (or a study file the current code cannot read as planned)."""
    value = rec.spec.get("seeds")
    if not isinstance(value, Mapping) or rec.mode == "factorial" or rec.spec.get("models"):
        return None
    from ablate.errors import StudyError
    from ablate.study.spec import parse_seeds

    try:
        return parse_seeds(value)[1]
    except StudyError:
        return None


def _two_stage(planned: Any, base: Mapping[int, float], top1: Mapping[int, float],
               plain: PairedDelta | None, stage: dict[str, Any], notes: list[str]
               ) -> PairedDelta | None:
    """A planned-seeds variant's delta: Stein's two-stage interval over its pilot and
    stage-2 seeds once its pilot is complete (else the plain paired one), with its stage
    and planned seeds into ``stage`` and what to know into ``notes``."""
    from ablate.inference import two_stage

    h = planned.target_halfwidth
    stage["target_halfwidth"] = h
    plan = planned.stein(base, top1)
    if plan is None:
        stage["stage"] = "pilot"
        notes.append(f"pilot not complete: no stage 2 planned yet, the interval is the "
                     f"plain paired t of the {0 if plain is None else plain.n} seed(s) in")
        return plain
    seeds = (*planned.pilot, *planned.extra_seeds(plan.extra))
    diffs = [top1[s] - base[s] for s in seeds if s in top1 and s in base]
    summary = two_stage(plan, diffs)
    interval = summary.interval(1 - ALPHA)
    stage.update(stage="done" if len(diffs) >= plan.n else "stage 2",
                 capped=plan.capped, seeds_planned=plan.n)
    notes.append(f"planned seeds: pilot sd of the differences {plan.s0:.3g} fixed n = "
                 f"{plan.n} ({plan.extra} after the pilot) for a half-width <= {h:g}; "
                 f"two-stage interval from {len(diffs)} paired seeds")
    if plan.capped:
        notes.append(f"max: {planned.max} capped the seeds below Stein's n: the half-width "
                     f"target {h:g} is not guaranteed (planned {plan.planned_half_width:.3g}; "
                     f"the coverage still is)")
    if len(diffs) < plan.n:
        notes.append(f"{plan.n - len(diffs)} planned seed(s) not paired yet: the interval is "
                     f"valid but wider than planned until they are in")
    return PairedDelta(summary.n, summary.mean, summary.sd, interval.half_width,
                       tuple(diffs), summary)


def _baseline_stage(rows: list[dict[str, Any]], planned: Any) -> None:
    """The baseline row of a planned-seeds study: the least advanced variant's stage."""
    stages = [r["stage"] for r in rows[1:] if r["stage"] is not None]
    rows[0].update(target_halfwidth=planned.target_halfwidth,
                   stage=min(stages, key=STAGES.index) if stages else "pilot")


def _costs(rows: list[dict[str, Any]]) -> None:
    """What each variant costs against the baseline: params and MACs of the model, and
    device-hours per run (mean over its succeeded runs), into ``rows``."""
    base = rows[0]
    for row in rows:
        for key, src in (("delta_params_m", "params_m"), ("delta_macs_g", "macs_g"),
                         ("delta_device_hours", "device_hours_per_run")):
            a, b = base[src], row[src]
            row[key] = None if a is None or b is None or row is base else b - a


def _study_notes(rec: StudyRecord) -> str:
    """What holds for the whole study: code that its commit does not pin."""
    ok = [r for r in rec.runs if r.succeeded]
    dirty = sum(1 for r in ok if r.code_dirty)
    unknown = sum(1 for r in ok if r.code_commit is None)
    notes = []
    if dirty:
        notes.append(f"{dirty} of {len(ok)} runs were trained from a working tree with "
                     f"uncommitted changes: their commit alone does not pin their code")
    if unknown:
        notes.append(f"the code commit of {unknown} of {len(ok)} runs is unknown (not "
                     f"trained from a git checkout): same code cannot be checked")
    return NOTE_SEP.join(notes)


def build_frame(store: Store, studies: Sequence[str] | None = None, *,
                margin: float | None = None, holm: bool = True,
                metrics: Sequence[str] = (),
                records: Sequence[StudyRecord] | None = None) -> pd.DataFrame:
    """One row per (study, variant), baseline first, with the aggregated numbers of its
    succeeded runs, the paired comparison with its study's baseline and the decision (see
    COLUMNS): against ``margin`` (default: each study's ``margin:``), Holm-adjusted across
    each study's variants unless ``holm`` is False. ``metrics``: names of
    :data:`ablate.report.metrics.METRICS` decided besides top-1 and each study's
    ``primary:``, with columns of their own. ``records``: the studies already loaded
    (:func:`ablate.report.load.load_studies` of ``studies``), not read again."""
    return frame_of(build_rows(store, studies, margin=margin, holm=holm, metrics=metrics,
                               records=records))


def build_rows(store: Store, studies: Sequence[str] | None = None, *,
               margin: float | None = None, holm: bool = True,
               metrics: Sequence[str] = (),
               records: Sequence[StudyRecord] | None = None) -> list[dict[str, Any]]:
    """:func:`build_frame`'s rows as plain records, each with every column (None where it
    has no value): what the markdown report renders, without pandas (whose import is a
    fifth of a report's time)."""
    if records is None:
        records = load_studies(store, studies)
    keys = sorted({m.key for rec in records for m in study_metrics(rec, metrics)
                   if not m.in_result})
    records = with_final_metrics(store, records, keys)
    rows = [row for rec in records for row in _decided_rows(rec, margin, holm, metrics)]
    _seeds_needed(rows)
    columns = list(dict.fromkeys([*COLUMNS, *(key for row in rows for key in row)]))
    return [{c: row.get(c) for c in columns} for row in rows]


def frame_of(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The report's frame of :func:`build_rows`' records (whole-number columns as
    pandas' nullable Int64)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(rows[0]) if rows else list(COLUMNS))
    for col in ("seeds_for_power", "gpus", "epochs", "batch_size"):
        frame[col] = frame[col].astype("Int64")
    return frame
