"""Reports that tell signal from noise: one pandas DataFrame from the results database,
rendered as markdown (the README tables), csv, latex, html or json.

Every delta is measured against the baseline (variant 0) of the same study, on the seeds
both have: the mean of the paired per-seed differences, with a 95% confidence interval from
the paired t distribution. A delta whose interval covers zero is *within noise*; only an
improvement whose whole interval lies above zero is bold. Under each table the report gives
the noise floor (the baseline's seed-to-seed standard deviation), about how many seeds would
detect each observed delta, and every way the compared runs differ beyond the variant's
declared change (code commit, environment, resolved config).

The database's rows become plain data here: :func:`load_studies` turns the rows the store
gives (``report_runs``, from :class:`ablate.store.Store` or, on a SQLite file, the
SQLAlchemy-free :class:`ablate.store_lite.SQLiteReader`) into plain :class:`StudyRecord`
objects, :func:`report_rows` those into one plain dict per (study, variant), and
:func:`build_frame` the rows into the DataFrame. The renderers take the DataFrame; the
markdown (the default, and the README blocks) is the same text from the rows, so that
``ablate report`` imports pandas (0.2 s) only for the other formats and the plots.
"""

from __future__ import annotations

import html
import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Literal

from ablate.errors import AblateError

if TYPE_CHECKING:
    import pandas as pd

    from ablate.store import Store
    from ablate.store_lite import SQLiteReader

Format = Literal["markdown", "csv", "latex", "html", "json"]
FORMATS: tuple[str, ...] = ("markdown", "csv", "latex", "html", "json")

#: Confidence of the delta's interval, and the test behind "seeds for 80% power".
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.80

#: Environment facts whose difference between compared runs is worth a note.
ENV_KEYS = ("torch", "torchvision", "cuda", "cudnn", "device", "world_size")

#: One row per (study, variant); the numbers are over that variant's succeeded runs.
COLUMNS = (
    "study", "layout", "variant", "variant_index", "change",
    "model", "epochs", "dtype", "batch_size", "gpus", "lr", "tricks", "degree",
    "seeds", "seeds_planned", "top1", "top5", "top1_sd", "params_m", "macs_g",
    "n_paired", "delta_top1", "ci_top1", "ci_top1_low", "ci_top1_high", "sd_diff_top1",
    "delta_top5", "ci_top5", "verdict", "seeds_for_power", "device_hours", "notes",
    "study_notes",
)

#: The marker comments around a generated README table.
README_MARKER = re.compile(
    r"(<!-- ablate:report (?P<study>[^\s>]+) -->)(?P<body>.*?)(<!-- /ablate:report -->)",
    re.S,
)
_OPEN_MARKER = re.compile(r"<!-- ablate:report (?P<study>[^\s>]+) -->")
_IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\([^)]*\)\s*$")
NOTE_SEP = "\n"


# --------------------------------------------------------------------------- plain records


@dataclass(frozen=True)
class RunRecord:
    """One (variant, seed) of a study: its run's state and result, as plain data."""

    variant: str
    variant_index: int
    change: str
    seed: int
    hash: str
    status: str
    #: The resolved config as stored: JSON text, decoded on first use of :attr:`config`
    #: (a report reads one config per variant; 10,000 decoded take a fifth of a second).
    stored_config: str | dict[str, Any] = field(repr=False)
    nproc: int
    code_commit: str | None
    code_dirty: bool | None
    top1: float | None
    top5: float | None
    params: int | None
    macs: int | None
    world_size: int | None
    device_hours: float | None
    env: dict[str, Any]
    #: The model it really trains, as recorded at registration (None: work it out from
    #: the config, see :func:`ablate.spec.effective_model`).
    model: str | None = None

    @property
    def succeeded(self) -> bool:
        """Only succeeded runs with a final result count in a report."""
        return self.status == "succeeded" and self.top1 is not None

    @cached_property
    def config(self) -> dict[str, Any]:
        """The run's resolved config."""
        return dict(_json(self.stored_config) or {})

    @cached_property
    def provenance(self) -> tuple[Any, ...] | None:
        """Its code commit and environment facts (ENV_KEYS), to compare runs in one step
        (None where one is NaN, which equals nothing: compared fact by fact)."""
        facts = (_commit(self), *(_env_value(self, key) for key in ENV_KEYS))
        return facts if all(v == v for v in facts) else None


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored: its mode, its study file (unexpanded) and all its runs."""

    name: str
    mode: str
    spec: dict[str, Any]
    runs: tuple[RunRecord, ...]


def load_studies(store: Store | SQLiteReader, names: Sequence[str] | None = None
                 ) -> list[StudyRecord]:
    """The named studies (default: all, by name) as plain records.

    An empty database or an unknown name is an :class:`AblateError` (one line, with the
    closest known names). One query for the runs of all of them (``report_runs``): a
    database of 10,000 runs loads in a fraction of a second.
    """
    studies, rows = store.report_runs(names)
    known = list(studies)
    if not known:
        raise AblateError(f"{store.display_url}: the database has no studies yet; run "
                          f"'ablate run STUDY.yaml' first")
    wanted = list(dict.fromkeys(names)) if names else known
    for name in wanted:
        if name not in known:
            from zoo.errors import did_you_mean

            raise AblateError(f"unknown study '{name}'{did_you_mean(name, known)} "
                              f"(known: {', '.join(known)})")
    envs: dict[str, Any] = {}  # the same environment for many runs: decoded once
    by_study: dict[int, list[RunRecord]] = {studies[n][0]: [] for n in wanted}
    for (study_id, variant, index, change, seed, h, status, config, nproc, commit, dirty,
         top1, top5, params, macs, world_size, hours, env, model) in rows:
        if isinstance(env, str):
            env = envs[env] if env in envs else envs.setdefault(env, json.loads(env))
        by_study[study_id].append(RunRecord(
            variant=variant, variant_index=index, change=change, seed=seed, hash=h,
            status=str(status), stored_config=config, nproc=nproc,
            code_commit=commit, code_dirty=dirty, top1=top1, top5=top5, params=params,
            macs=macs, world_size=world_size, device_hours=hours, env=dict(env or {}),
            model=model))
    return [StudyRecord(name=n, mode=studies[n][1], spec=dict(studies[n][2] or {}),
                        runs=tuple(by_study[studies[n][0]])) for n in wanted]


def _json(value: Any) -> Any:
    """A JSON column's value from its text (or as the driver already decoded it)."""
    return json.loads(value) if isinstance(value, str) else value


def curves_frame(store: Store | SQLiteReader, names: Sequence[str] | None = None
                 ) -> pd.DataFrame:
    """Validation top-1 per epoch of every succeeded run of the studies: one row per
    (study, variant, seed, epoch)."""
    import pandas as pd

    records = load_studies(store, names)
    rows: list[dict[str, Any]] = []
    for rec in records:
        runs = {r.hash: r for r in rec.runs if r.succeeded}
        if not runs:
            continue
        by_hash: dict[str, list[tuple[int, float | None]]] = {}
        for h, epoch, value in store.metric_values(runs, "top1"):
            by_hash.setdefault(h, []).append((epoch, value))
        for r in rec.runs:
            if not r.succeeded:
                continue
            for epoch, value in by_hash.get(r.hash, []):
                if value is not None:
                    rows.append({"study": rec.name, "variant": r.variant,
                                 "variant_index": r.variant_index, "seed": r.seed,
                                 "epoch": epoch, "top1": value})
    return pd.DataFrame(rows, columns=["study", "variant", "variant_index", "seed", "epoch",
                                       "top1"])


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class PairedDelta:
    """The mean of paired per-seed differences (variant - baseline) and its interval."""

    n: int
    mean: float
    #: Standard deviation of the differences (None with a single pair).
    sd: float | None
    #: Half-width of the 95% interval, t(0.975, n-1) * sd / sqrt(n) (None with one pair).
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def verdict(self) -> str:
        """``better`` (interval above zero), ``worse`` (below), ``within noise`` (covers
        zero) or ``n=1`` (one pair: no interval)."""
        if self.half_width is None:
            return "n=1"
        assert self.low is not None and self.high is not None
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "within noise"


def paired_delta(base: Mapping[int, float], other: Mapping[int, float],
                 confidence: float = CONFIDENCE) -> PairedDelta | None:
    """Paired comparison on the seeds both have (None when they share none)."""
    seeds = sorted(set(base) & set(other))
    if not seeds:
        return None
    diffs = [other[s] - base[s] for s in seeds]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return PairedDelta(n, mean, None, None)
    sd = statistics.stdev(diffs)
    t = t_ppf(1 - (1 - confidence) / 2, n - 1)
    return PairedDelta(n, mean, sd, t * sd / math.sqrt(n))


def paired_power(n: int, delta: float, sd: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs when the true mean difference
    is ``delta`` and the differences have standard deviation ``sd`` (noncentral t)."""
    df = n - 1
    nc = abs(delta) / sd * math.sqrt(n)
    crit = t_ppf(1 - alpha / 2, df)
    sf, cdf = _nct()
    return float(sf(crit, df, nc) + cdf(-crit, df, nc))


# scipy.stats costs half a second to import, and its distributions' generic argument
# handling 50 us a call (a report of 1,000 variants makes 20,000 of them). These evaluate
# the functions scipy.stats.t.ppf, nct.sf and nct.cdf evaluate themselves, to the bit
# (tests/test_report.py checks them against scipy.stats on a grid).


@lru_cache(maxsize=1024)
def t_ppf(q: float, df: int) -> float:
    """``scipy.stats.t.ppf(q, df)``, for 0 < q < 1 and df >= 1."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


@lru_cache(maxsize=1)
def _nct() -> tuple[Callable[[float, int, float], Any], Callable[[float, int, float], Any]]:
    """``scipy.stats.nct.sf`` and ``.cdf`` as functions of (x, df, nc)."""
    try:
        import numpy as np
        from scipy.special import nctdtr
        from scipy.special._ufuncs import _nct_sf  # what scipy.stats.nct.sf evaluates
    except ImportError:  # pragma: no cover - another scipy: its public, slower way
        from scipy import stats

        return stats.nct.sf, stats.nct.cdf

    def sf(x: float, df: int, nc: float) -> Any:
        with np.errstate(over="ignore"):  # as scipy.stats does (scipy issue 17432)
            p = _nct_sf(x, df, nc)
        # np.clip(p, 0, 1) of one number, without its array machinery (NaN stays NaN).
        return min(max(p, 0.0), 1.0)

    def cdf(x: float, df: int, nc: float) -> Any:
        return nctdtr(df, nc, x)

    return sf, cdf


def seeds_for_power(delta: float | None, sd: float | None, power: float = POWER,
                    alpha: float = ALPHA, limit: int = 1 << 20) -> int | None:
    """About how many seeds a paired t-test needs to detect ``delta`` at ``power``, given
    the observed sd of the paired differences. None when it cannot be said (no sd yet, a
    zero delta, or more than ``limit`` seeds)."""
    if delta is None or sd is None or not math.isfinite(delta) or not math.isfinite(sd):
        return None
    if delta == 0:
        return None
    if sd == 0:
        return 2  # every pair moved by the same amount: the smallest paired test sees it
    # Power grows with n: double until enough, then bisect.
    lo, hi = 1, 2
    while paired_power(hi, delta, sd, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if paired_power(mid, delta, sd, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


# --------------------------------------------------------------------------- configs


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"optim.lr": 0.4, ...}``; empty mappings stay leaves (a trick
    without parameters is still a key), lists become tuples."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if value is None or isinstance(value, (str, int, float)):  # the common leaves, fast
            out[dotted] = value
        elif isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{dotted}."))
        elif isinstance(value, Mapping):
            out[dotted] = {}
        elif isinstance(value, list):
            out[dotted] = tuple(value)
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
    if variant not in names:
        return None
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
    keys = set(a) | set(b)
    # An empty mapping on one side (``tricks: {}``) is a container on the other: its
    # entries are compared, not the container.
    prefixes = set()
    for k in keys:
        i = k.find(".")
        while i != -1:
            prefixes.add(k[:i])
            i = k.find(".", i + 1)
    containers = keys & prefixes
    return {k: (a.get(k), b.get(k)) for k in sorted(keys - containers)
            if a.get(k) != b.get(k) and not _covered(k, skip)}


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
    from ablate.spec import effective_model

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
    vals = list(values)
    return statistics.stdev(vals) if len(vals) >= 2 else None


def _commit(r: RunRecord) -> str:
    if r.code_commit is None:
        return "unknown"
    return r.code_commit[:10] + ("+dirty" if r.code_dirty else "")


def _env_value(r: RunRecord, key: str) -> Any:
    if key == "world_size":
        return r.world_size if r.world_size is not None else r.env.get("world_size")
    return r.env.get(key)


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


def study_rows(rec: StudyRecord) -> list[dict[str, Any]]:
    """One row per variant of a study, baseline first, with the aggregated numbers."""
    by_variant: dict[int, list[RunRecord]] = {}
    for r in rec.runs:
        by_variant.setdefault(r.variant_index, []).append(r)
    if 0 not in by_variant:
        raise AblateError(f"study '{rec.name}': no baseline (variant 0) in the database; "
                          f"run 'ablate run' on its study file again")
    layout = _layout(by_variant)
    base_runs = by_variant[0]
    base_ok = [r for r in base_runs if r.succeeded]
    base_cfg = base_runs[0].config
    flat_base = flatten(base_cfg)
    base_top1 = {r.seed: r.top1 for r in base_ok if r.top1 is not None}
    base_top5 = {r.seed: r.top5 for r in base_ok if r.top5 is not None}
    rows = []
    study_notes = _study_notes(rec)
    for index in sorted(by_variant):
        runs = by_variant[index]
        ok = [r for r in runs if r.succeeded]
        cfg = runs[0].config
        flat_cfg = flatten(cfg)
        top1 = {r.seed: r.top1 for r in ok if r.top1 is not None}
        top5 = {r.seed: r.top5 for r in ok if r.top5 is not None}
        notes: list[str] = []
        missing = _missing_note(runs)
        if missing:
            notes.append(missing)
        notes += _internal_notes(ok)
        d1 = d5 = None
        diff: dict[str, tuple[Any, Any]] | None = None
        if index == 0:
            verdict = "baseline"
        else:
            d1 = paired_delta(base_top1, top1)
            d5 = paired_delta(base_top5, top5)
            verdict = "no pairs" if d1 is None else d1.verdict
            notes += _pair_notes(base_ok, ok)
            declared = declared_keys(rec.spec, rec.mode, runs[0].variant)
            diff = _flat_diff(flat_base, flat_cfg)
            extra = {k: v for k, v in diff.items()
                     if not _covered(k, declared if declared is not None else {"tricks"})}
            if extra:
                notes.append("config differs from the baseline beyond the declared change: "
                             + ", ".join(f"{k} {_fmt_value(a)} -> {_fmt_value(b)}"
                                         for k, (a, b) in extra.items()))
        world = [r.world_size for r in ok if r.world_size is not None]
        params = _mean(r.params for r in ok)
        macs = _mean(r.macs for r in ok)
        hours = [r.device_hours for r in ok if r.device_hours is not None]
        trick_cfg = cfg.get("tricks") or {}
        if layout == "models":
            tricks = _describe_tricks(trick_cfg) or "-"
        else:
            tricks = "-" if index == 0 else runs[0].variant
        rows.append({
            "study": rec.name,
            "layout": layout,
            "variant": runs[0].variant,
            "variant_index": index,
            "change": runs[0].change,
            "model": runs[0].model or _effective_model(cfg),
            "epochs": cfg.get("epochs"),
            "dtype": _dtype(cfg, ok),
            "batch_size": cfg.get("batch_size"),
            "gpus": max(sorted(set(world)), key=world.count) if world else runs[0].nproc,
            "lr": (cfg.get("optim") or {}).get("lr"),
            "tricks": tricks,
            "degree": "-" if index == 0 else _degree(base_cfg, cfg, flat_base, flat_cfg, diff),
            "seeds": len(top1),
            "seeds_planned": len(runs),
            "top1": _mean(top1.values()),
            "top5": _mean(top5.values()),
            "top1_sd": _sd(top1.values()),
            "params_m": None if params is None else params / 1e6,
            "macs_g": None if macs is None else macs / 1e9,
            "n_paired": 0 if d1 is None else d1.n,
            "delta_top1": None if d1 is None else d1.mean,
            "ci_top1": None if d1 is None else d1.half_width,
            "ci_top1_low": None if d1 is None else d1.low,
            "ci_top1_high": None if d1 is None else d1.high,
            "sd_diff_top1": None if d1 is None else d1.sd,
            "delta_top5": None if d5 is None else d5.mean,
            "ci_top5": None if d5 is None else d5.half_width,
            "verdict": verdict,
            "seeds_for_power": None if d1 is None else seeds_for_power(d1.mean, d1.sd),
            "device_hours": sum(hours) if hours else None,
            "notes": NOTE_SEP.join(notes),
            "study_notes": study_notes,
        })
    return rows


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


def build_frame(store: Store | SQLiteReader, studies: Sequence[str] | None = None
                ) -> pd.DataFrame:
    """One row per (study, variant), baseline first, with the aggregated numbers of its
    succeeded runs and the paired comparison with its study's baseline (see COLUMNS)."""
    return frame_of(report_rows(store, studies))


def report_rows(store: Store | SQLiteReader, studies: Sequence[str] | None = None
                ) -> list[dict[str, Any]]:
    """:func:`build_frame`'s rows as plain dicts: what the markdown report is made from
    without pandas (0.2 s to import; the other formats and the plots take the frame)."""
    return [row for rec in load_studies(store, studies) for row in study_rows(rec)]


def frame_of(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`report_rows` as :func:`build_frame`'s DataFrame."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("seeds_for_power", "gpus", "epochs", "batch_size"):
        frame[col] = frame[col].astype("Int64")
    return frame


def _as_frame(report: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    """A report given as the frame or as its rows (:func:`report_rows`), as the frame."""
    return frame_of(report) if isinstance(report, list) else report


# --------------------------------------------------------------------------- display


def _num(value: Any) -> float | None:
    """A number of the report as a float; None for a missing one (None, NaN, pandas' NA:
    a frame holds those, report_rows None)."""
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
    if verdict == "within noise":
        return f"{_signed(delta)} (within noise)"
    if verdict == "n=1":
        return f"{_signed(delta)} (n=1)"
    return _signed(delta)


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
                   "top1/top5", "improve", "95% CI", "seeds", "params (M) / MACs (G)")
MODELS_HEADER = ("model", "epochs", "dtype", "batch size", "gpus", "lr", "tricks",
                 "params (M) / MACs (G)", "top1/top5", "seeds")
_RIGHT = {"epochs", "batch size", "gpus", "lr", "top1/top5", "improve", "95% CI", "seeds",
          "params (M) / MACs (G)"}


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
            "seeds": _seeds(row),
            "params (M) / MACs (G)": _cost(row),
        }
        rows.append([cells[h] for h in header])
    return header, rows


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
        notes.append("improve: top-1 change against the baseline, the mean of the paired "
                     "per-seed differences, with its 95% CI (paired t); bold: the whole "
                     "interval is above zero; (within noise): the interval covers zero.")
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
    parts = [_markdown_table(*_display_cells(records)),
             "\n".join(f"- {n}" for n in _notes(records))]
    if images:
        parts.append("\n".join(images))
    return "\n\n".join(parts) + "\n"


def _studies(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["study"]))


def _records_by_study(report: pd.DataFrame | list[dict[str, Any]]
                      ) -> dict[str, list[dict[str, Any]]]:
    """The report's rows as records, grouped by study in the report's order (one pass over
    a frame, not one filter per study: pandas' cost is per call)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for record in report if isinstance(report, list) else report.to_dict("records"):
        out.setdefault(record["study"], []).append(record)
    return out


def to_markdown(report: pd.DataFrame | list[dict[str, Any]],
                plots_dir: str | None = None) -> str:
    """Every study as a heading, its table and its notes (from the frame or its rows: the
    same text)."""
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
        rows = frame[frame["study"] == s]
        table = display_table(rows, bold=lambda x: f"\\textbf{{{x}}}", escape=latex_escape)
        table.columns = [latex_escape(c) for c in table.columns]
        latex = table.to_latex(index=False, escape=False, caption=latex_escape(s),
                               label=f"tab:{re.sub(r'[^A-Za-z0-9]+', '-', s)}")
        notes = "\n".join(f"  \\item {latex_escape(n)}" for n in study_notes(rows))
        parts.append(f"% ablate report: {s}\n{latex}\\begin{{itemize}}\n{notes}\n"
                     f"\\end{{itemize}}\n")
    return "\n".join(parts)


def to_html(frame: pd.DataFrame, plots_dir: str | None = None) -> str:
    """An HTML fragment: per study a heading, the table and the notes as a list."""
    parts = []
    for s in _studies(frame):
        rows = frame[frame["study"] == s]
        table = display_table(rows, bold=lambda x: f"<strong>{x}</strong>", escape=html.escape)
        notes = "\n".join(f"  <li>{html.escape(n)}</li>" for n in study_notes(rows))
        images = ""
        if plots_dir:
            base = plots_dir.rstrip("/") or "."
            images = "".join(f'\n<p><img src="{html.escape(base)}/{html.escape(s)}_{kind}.png" '
                             f'alt="{html.escape(s)} {kind}"></p>' for kind in ("delta", "curves"))
        parts.append(f"<h2>{html.escape(s)}</h2>\n"
                     + table.to_html(index=False, escape=False, border=0)
                     + f"\n<ul>\n{notes}\n</ul>{images}\n")
    return "\n".join(parts)


def render(report: pd.DataFrame | list[dict[str, Any]], fmt: Format,
           plots_dir: str | None = None) -> str:
    """The report (the frame, or its rows) in one format: markdown/latex/html are the
    tables a person reads; csv and json are the whole frame, every number unrounded."""
    if fmt == "markdown":
        return to_markdown(report, plots_dir)
    if fmt not in FORMATS:
        raise AblateError(f"--format {fmt}: not one of {', '.join(FORMATS)}")
    frame = _as_frame(report)
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "latex":
        return to_latex(frame)
    if fmt == "html":
        return to_html(frame, plots_dir)
    return frame.to_json(orient="records", indent=2) + "\n"


# --------------------------------------------------------------------------- README


def readme_studies(text: str) -> list[str]:
    """The studies named by report markers in a README, in order; a marker without its
    closing comment is an error."""
    opened = [m.group("study") for m in _OPEN_MARKER.finditer(text)]
    closed = [m.group("study") for m in README_MARKER.finditer(text)]
    if opened != closed:
        missing = next((s for s in opened if opened.count(s) != closed.count(s)), opened[-1])
        raise AblateError(f"marker '<!-- ablate:report {missing} -->' has no closing "
                          f"'<!-- /ablate:report -->'")
    return list(dict.fromkeys(closed))


def render_readme(text: str, store: Store | SQLiteReader, plots_dir: str | None = None,
                  studies: Sequence[str] | None = None) -> str:
    """``text`` with the block between each ``<!-- ablate:report STUDY -->`` and
    ``<!-- /ablate:report -->`` replaced by that study's table and notes; everything outside
    the markers is left byte for byte. Image lines inside a block are kept as they are, or,
    with ``plots_dir`` (as the README's reader sees it), replaced by links to the study's
    plots there. With ``studies``, only their markers are refreshed. Idempotent.

    A README holds what the report makes from the database exactly when
    ``render_readme(text, store) == text``.
    """
    names = readme_studies(text)
    if studies:
        names = [n for n in names if n in set(studies)]
    if not names:
        return text
    by_study = _records_by_study(report_rows(store, names))

    def replace(m: re.Match[str]) -> str:
        study = m.group("study")
        if study not in names:
            return m.group(0)
        if plots_dir is not None:
            images = image_links(study, plots_dir)
        else:
            images = [ln.strip() for ln in m.group("body").splitlines()
                      if _IMAGE_LINE.match(ln.strip())]
        if study not in by_study:
            raise AblateError(f"study '{study}' is not in the report")
        block = _study_block(by_study[study], images)
        return f"{m.group(1)}\n{block}{m.group(4)}"

    return README_MARKER.sub(replace, text)
