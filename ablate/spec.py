"""Study files: parse, expand environment references, validate, and turn into runs.

A study is a base run config plus variants, each one change (tricks and/or ``set``
overrides), run on the same seeds. Every (variant, seed) becomes one run whose identity
is the content hash of its canonical resolved config, so the same config is never trained
twice, in any study. Everything is validated before anything starts: each problem is one
line naming the file and the key.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ablate.errors import StudyError
from zoo.config import RunConfig, build_config, check_data_paths, load_yaml
from zoo.errors import ZooError, did_you_mean
from zoo.train import config_hash

Mode = Literal["add_one", "cumulative", "leave_one_out"]
MODES: tuple[str, ...] = ("add_one", "cumulative", "leave_one_out")
BASELINE = "baseline"

STUDY_KEYS = ("name", "description", "base", "launch", "seeds", "mode", "variants")
VARIANT_KEYS = ("name", "tricks", "set")
LAUNCH_KEYS = ("nproc_per_node", "nnodes", "rdzv_endpoint", "backend")

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Launch:
    """How each run of the study is launched."""

    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    backend: Literal["local"] = "local"


@dataclass(frozen=True)
class Variant:
    name: str
    tricks: dict[str, Any] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedRun:
    """One (variant, seed) of a study, resolved."""

    variant: str
    variant_index: int  # 0 is the baseline
    seed: int
    config: RunConfig
    hash: str
    #: The tricks this variant adds to (or, leave_one_out, removes from) the baseline.
    change: str


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    base: dict[str, Any]
    launch: Launch
    seeds: tuple[int, ...]
    mode: Mode
    variants: tuple[Variant, ...]
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def plan(self) -> list[PlannedRun]:
        """The baseline and every variant, each on every seed, in a stable order."""
        return plan_study(self)


# --------------------------------------------------------------------------- env vars


def expand_env(value: Any, where: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a nested structure."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise StudyError(
                f"{where}: environment variable ${{{name}}} is not set; export it or write "
                f"${{{name}:-DEFAULT}}"
            )

        out = _ENV.sub(sub, value)
        # A whole-string reference to a number stays a number.
        if out != value and _ENV.fullmatch(value):
            import yaml

            try:
                parsed = yaml.safe_load(out)
            except yaml.YAMLError:
                return out
            return parsed if isinstance(parsed, (int, float, bool)) else out
        return out
    if isinstance(value, Mapping):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------- loading


def _check_keys(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise StudyError(
                f"unknown key '{prefix}{key}'{did_you_mean(str(key), allowed, prefix)}"
            )


def _merge(base: dict[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(cfg: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``set`` overrides: keys may be dotted (``optim.lr``) or nested mappings."""
    out = copy.deepcopy(cfg)
    for key, value in overrides.items():
        node = out
        parts = str(key).split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if isinstance(child, str) and part == "model":
                child = {"name": child}
            if not isinstance(child, dict):
                child = {}
            node[part] = child
            node = child
        last = parts[-1]
        if last == "model" and isinstance(value, str) and isinstance(node.get("model"), dict):
            node["model"] = {**node["model"], "name": value}
        elif isinstance(value, Mapping) and isinstance(node.get(last), Mapping):
            node[last] = _merge(dict(node[last]), value)
        else:
            node[last] = copy.deepcopy(value)
    return out


def load_study(path: str | Path, check_paths: bool = True) -> Study:
    """Read and validate a study file; every problem is a StudyError naming the file."""
    path = Path(path)
    try:
        return _load(path, check_paths)
    except StudyError as exc:
        raise StudyError(f"{path}: {exc}") from None
    except ZooError as exc:  # config errors from zoo (they name the key)
        raise StudyError(f"{path}: {exc}") from None


def _load(path: Path, check_paths: bool) -> Study:
    try:
        raw = load_yaml(path)
    except ZooError as exc:
        # load_yaml already names file:line:column; strip our own prefix duplication.
        msg = str(exc)
        raise StudyError(msg[len(f"{path}: "):] if msg.startswith(f"{path}: ") else msg) from None
    if not isinstance(raw, Mapping):
        raise StudyError("a study must be a mapping with name, base, seeds and variants")
    _check_keys(raw, STUDY_KEYS, "")
    data = expand_env(raw)
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        raise StudyError("name: required, letters, digits, '_', '-' and '.' only")
    base = data.get("base")
    if not isinstance(base, Mapping):
        raise StudyError("base: required, a full run config (model, data, optim, ...)")
    launch_raw = data.get("launch") or {}
    if not isinstance(launch_raw, Mapping):
        raise StudyError(f"launch: expected a mapping, got {launch_raw!r}")
    _check_keys(launch_raw, LAUNCH_KEYS, "launch")
    from zoo.config import from_dict

    launch = from_dict(Launch, launch_raw, prefix="launch.")
    if launch.nproc_per_node < 1 or launch.nnodes < 1:
        raise StudyError("launch.nproc_per_node and launch.nnodes: must be at least 1")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in seeds
    ):
        raise StudyError(f"seeds: expected a list of integers, got {seeds!r}")
    if not seeds:
        raise StudyError("seeds: empty; give at least one seed, e.g. seeds: [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"seeds: duplicates in {seeds}")
    mode = data.get("mode", "add_one")
    if mode not in MODES:
        raise StudyError(f"mode: '{mode}' is not one of {', '.join(MODES)}")
    variants_raw = data.get("variants") or []
    if not isinstance(variants_raw, list):
        raise StudyError("variants: expected a list of {name, tricks, set}")
    variants: list[Variant] = []
    seen: set[str] = {BASELINE}
    for i, v in enumerate(variants_raw):
        where = f"variants[{i}]"
        if not isinstance(v, Mapping):
            raise StudyError(f"{where}: expected a mapping with name, tricks and/or set")
        _check_keys(v, VARIANT_KEYS, where)
        vname = v.get("name")
        if not isinstance(vname, str) or not vname.strip():
            raise StudyError(f"{where}.name: required")
        if vname in seen:
            raise StudyError(f"{where}.name: duplicate variant name '{vname}'")
        seen.add(vname)
        tricks, sets = v.get("tricks") or {}, v.get("set") or {}
        if not isinstance(tricks, Mapping) or not isinstance(sets, Mapping):
            raise StudyError(f"{where}: tricks and set must be mappings")
        if not tricks and not sets:
            raise StudyError(f"{where} ('{vname}'): changes nothing; give tricks or set")
        tricks = {k: (dict(p) if p else {}) for k, p in tricks.items()}
        variants.append(Variant(vname, tricks, dict(sets)))
    study = Study(
        name=name, path=path, base=dict(base), launch=launch, seeds=tuple(seeds),
        mode=mode, variants=tuple(variants), description=str(data.get("description", "")),
        raw=dict(raw),
    )
    runs = plan_study(study)  # validates every resolved config
    if check_paths:
        for cfg in {r.config.data: r.config for r in runs}.values():
            try:
                check_data_paths(cfg)
            except ZooError as exc:
                raise StudyError(f"base.{exc}") from None
    return study


# --------------------------------------------------------------------------- planning


def _variant_dicts(study: Study) -> list[tuple[str, dict[str, Any], str]]:
    """(name, config dict without seed, change description) for baseline and variants."""
    base = dict(study.base)
    out: list[tuple[str, dict[str, Any], str]] = []
    if study.mode == "leave_one_out":
        all_tricks: dict[str, Any] = dict(base.get("tricks") or {})
        full = base
        for v in study.variants:
            all_tricks.update(v.tricks)
            full = _set_dotted(full, v.set)
        full = {**full, "tricks": all_tricks}
        out.append((BASELINE, full, "all changes"))
        for v in study.variants:
            cfg = copy.deepcopy(base)
            for other in study.variants:
                if other is v:
                    continue
                cfg = _set_dotted(cfg, other.set)
            cfg["tricks"] = {k: p for k, p in all_tricks.items() if k not in v.tricks}
            out.append((v.name, cfg, f"- {_describe(v)}"))
        return out
    out.append((BASELINE, base, ""))
    acc = copy.deepcopy(base)
    for v in study.variants:
        start = acc if study.mode == "cumulative" else copy.deepcopy(base)
        cfg = _set_dotted(start, v.set)
        cfg["tricks"] = {**(start.get("tricks") or {}), **v.tricks}
        if study.mode == "cumulative":
            acc = cfg
        out.append((v.name, cfg, f"+ {_describe(v)}"))
    return out


def _describe(v: Variant) -> str:
    parts = [k if not p else f"{k}({', '.join(f'{a}={b}' for a, b in p.items())})"
             for k, p in v.tricks.items()]
    parts += [f"{k}={val}" for k, val in v.set.items()]
    return ", ".join(parts)


def plan_study(study: Study) -> list[PlannedRun]:
    runs: list[PlannedRun] = []
    for index, (vname, cfg_dict, change) in enumerate(_variant_dicts(study)):
        where = "base" if index == 0 else f"variant '{vname}'"
        for seed in study.seeds:
            try:
                cfg = build_config({**cfg_dict, "seed": seed})
            except ZooError as exc:
                raise StudyError(f"{where}: {exc}") from None
            runs.append(PlannedRun(vname, index, seed, cfg, config_hash(cfg), change))
    seen: dict[str, PlannedRun] = {}
    for r in runs:
        if r.hash in seen and seen[r.hash].variant != r.variant:
            raise StudyError(
                f"variants '{seen[r.hash].variant}' and '{r.variant}' resolve to the same "
                f"config; one of them changes nothing"
            )
        seen[r.hash] = r
    return runs
