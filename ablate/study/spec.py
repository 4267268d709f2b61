"""Study files: parse, expand environment references, validate, and turn into runs.

A study is a base run config plus variants, each one change (tricks and/or ``set``
overrides), run on the same seeds. Every (variant, seed) becomes one run whose identity
is the content hash of its canonical resolved config, so the same config is never trained
twice, in any study. Everything is validated before anything starts: each problem is one
line naming the file and the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from ablate.errors import StudyError
from zoo.config import (
    RunConfig,
    apply_overrides,
    load_yaml,
    parse_override,
    run_hash,
    set_path,
    yaml_load,
)
from zoo.errors import ZooError, did_you_mean
from zoo.fingerprint import run_code
from zoo.plugins import import_plugins
from zoo.validate import build_config, check_data_paths

Mode = Literal["add_one", "cumulative", "leave_one_out", "factorial"]
MODES: tuple[str, ...] = ("add_one", "cumulative", "leave_one_out", "factorial")
BASELINE = "baseline"
#: Joins a variant's name and its model in a study with a ``models:`` axis.
AT = " @ "

STUDY_KEYS = ("name", "description", "imports", "base", "launch", "seeds", "mode",
              "variants", "margin", "resolution", "models", "overrides", "primary", "metrics")
VARIANT_KEYS = ("name", "tricks", "set")

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


Backend = Literal["local", "slurm"]

#: Keys that only mean something to the SLURM backend (an error with ``backend: local``).
SLURM_KEYS = ("nodes", "gpus_per_node", "partition", "time", "account", "qos", "constraint",
              "cpus_per_task", "mem_gb", "setup", "additional", "max_timeouts", "rdzv_port",
              "executor")


@dataclass(frozen=True)
class Launch:
    """How each run of the study is launched (the ``launch:`` section).

    ``backend: local`` runs ``torchrun`` here: ``nproc_per_node`` processes on this machine,
    or, with ``nnodes > 1``, one agent per node meeting at ``rdzv_endpoint`` (c10d
    rendezvous; the other nodes join with ``ablate run --node-rank K``).

    ``backend: slurm`` makes each run one SLURM job (through submitit) that runs torchrun on
    every node of its allocation. ``nodes`` is SLURM's name for ``nnodes``; one training
    process per GPU, so ``nproc_per_node`` defaults to ``gpus_per_node``.
    """

    backend: Backend = "local"
    nproc_per_node: int = 1
    nnodes: int = 1
    #: HOST:PORT of node 0, where the nodes of a local multi-node run meet.
    rdzv_endpoint: str | None = None
    # ---- SLURM only
    nodes: int | None = None
    gpus_per_node: int | None = None
    partition: str | None = None
    #: Wall-clock limit per job in minutes (the YAML also takes SLURM's "D-HH:MM:SS").
    time: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    #: Shell lines run before the job's Python (``module load ...``, ``source .venv/...``).
    setup: tuple[str, ...] = ()
    #: Further ``#SBATCH`` options, e.g. ``{exclusive: true, gres: "gpu:8"}``.
    additional: dict[str, Any] = field(default_factory=dict)
    #: How many times a timed-out job is requeued (pre-emptions are always requeued).
    max_timeouts: int = 3
    #: Port on the allocation's first node for a multi-node job's rendezvous.
    rdzv_port: int = 29500
    #: ``local`` runs the jobs with submitit's LocalExecutor on this machine (to try a SLURM
    #: study without a cluster); ``slurm`` submits them with sbatch.
    executor: Literal["slurm", "local"] = "slurm"

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


def parse_slurm_time(value: Any, where: str = "launch.time") -> int:
    """Minutes from an int or a SLURM time: ``MM``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``."""
    if isinstance(value, int) and not isinstance(value, bool):
        minutes = value
    elif isinstance(value, str) and re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", value.strip()):
        text = value.strip()
        days = 0
        if "-" in text:
            d, text = text.split("-", 1)
            days = int(d)
            parts = [int(p) for p in text.split(":")] + [0, 0]
            h, m, sec = parts[:3]
        else:
            parts = [int(p) for p in text.split(":")]
            h, m, sec = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
        minutes = days * 24 * 60 + h * 60 + m + (1 if sec else 0)
    else:
        raise StudyError(f"{where}: expected minutes or a SLURM time like 2-00:00:00, "
                         f"got {value!r}")
    if minutes < 1:
        raise StudyError(f"{where}: must be at least one minute")
    return minutes


def _slurm_launch(launch: Launch, raw: Mapping[str, Any]) -> Launch:
    """The SLURM backend's keys checked, and the sizes they imply (nodes, processes)."""
    if "rdzv_endpoint" in raw:
        raise StudyError("launch.rdzv_endpoint: not with backend: slurm (the first node "
                         "of each job's allocation hosts the rendezvous; see rdzv_port)")
    if launch.nodes is not None:
        if "nnodes" in raw and launch.nnodes != launch.nodes:
            raise StudyError(f"launch.nodes ({launch.nodes}) and launch.nnodes "
                             f"({launch.nnodes}) disagree; give one of them")
        launch = replace(launch, nnodes=launch.nodes)
    gpus = launch.gpus_per_node
    if gpus is not None and gpus < 0:
        raise StudyError("launch.gpus_per_node: must be 0 or more")
    if gpus:
        if "nproc_per_node" in raw and launch.nproc_per_node != gpus:
            raise StudyError(f"launch.nproc_per_node ({launch.nproc_per_node}) must equal "
                             f"launch.gpus_per_node ({gpus}): one process per GPU")
        launch = replace(launch, nproc_per_node=gpus)
    launch = replace(launch, nodes=launch.nnodes)
    if launch.cpus_per_task is not None and launch.cpus_per_task < 1:
        raise StudyError("launch.cpus_per_task: must be at least 1")
    if launch.max_timeouts < 0:
        raise StudyError("launch.max_timeouts: must be 0 or more")
    if launch.mem_gb is not None and launch.mem_gb <= 0:
        raise StudyError("launch.mem_gb: must be positive")
    if not 0 < launch.rdzv_port < 65536:
        raise StudyError(f"launch.rdzv_port: {launch.rdzv_port} is not a port")
    if launch.executor == "local" and launch.nnodes > 1:
        raise StudyError("launch.executor: local runs one node only; set nodes: 1 to try "
                         "the study here")
    return launch


def parse_launch(raw: Mapping[str, Any]) -> Launch:
    """Validate the ``launch:`` mapping into a :class:`Launch`, every problem one line."""
    from zoo.config import from_dict

    names = [f.name for f in fields(Launch)]
    _check_keys(raw, names, "launch")
    data = dict(raw)
    setup = data.pop("setup", ())
    if isinstance(setup, str):
        setup = [setup]
    if not isinstance(setup, (list, tuple)) or not all(isinstance(x, str) for x in setup):
        raise StudyError(f"launch.setup: expected a list of shell lines, got {setup!r}")
    if data.get("time") is not None:
        data["time"] = parse_slurm_time(data["time"])
    try:
        launch: Launch = replace(from_dict(Launch, data, prefix="launch."), setup=tuple(setup))
    except ZooError as exc:  # a wrong type, named by its key
        raise StudyError(str(exc)) from None
    if launch.backend == "local":
        slurm_only = [k for k in SLURM_KEYS if k in raw]
        if slurm_only:
            raise StudyError(f"launch.{slurm_only[0]}: only with backend: slurm")
    else:
        launch = _slurm_launch(launch, raw)
    if launch.nproc_per_node < 1 or launch.nnodes < 1:
        raise StudyError("launch.nproc_per_node and launch.nnodes: must be at least 1")
    if launch.backend == "local" and launch.nnodes > 1:
        if not launch.rdzv_endpoint:
            raise StudyError("launch.rdzv_endpoint: required when nnodes > 1 (HOST:PORT of "
                             "node 0, where the nodes' torchrun agents meet)")
        host, _, port = launch.rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise StudyError(f"launch.rdzv_endpoint: expected HOST:PORT, got "
                             f"'{launch.rdzv_endpoint}'")
    return launch


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
    #: The model it really trains: the config's model after model-selecting tricks.
    model: str
    #: Component -> fingerprint of its code (``zoo.fingerprint.run_code``), in the hash.
    code: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RunSpec:
    """One run of the plan, frozen, as the orchestrator, the launchers, the store and the
    view all take it: a :class:`PlannedRun` placed in a run directory with its launch size."""

    variant: str
    variant_index: int
    change: str
    seed: int
    hash: str
    #: The resolved config as a mapping (what ``run.yaml`` and the database hold).
    config: dict[str, Any] = field(repr=False, compare=False)
    run_dir: str
    #: Processes of the whole run (all nodes), and per node.
    nproc: int
    nproc_per_node: int
    nnodes: int
    epochs: int
    model: str
    #: Component -> fingerprint of the code the run trains with (part of ``hash``).
    code: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    #: The study's plugins (``imports:``), copied into the run directory and imported
    #: from there by the trainer.
    plugins: tuple[Any, ...] = field(default=(), compare=False, repr=False)


#: Keys of the planned-seeds form of ``seeds:``.
PLANNED_KEYS = ("pilot", "target_halfwidth", "max")


@dataclass(frozen=True)
class PlannedSeeds:
    """``seeds: {pilot: [0, 1, 2], target_halfwidth: 0.3, max: 12}``: Stein's two-stage
    procedure (:mod:`ablate.inference.stein`). Every variant and the baseline train the
    pilot seeds; from the pilot's paired differences alone each variant's total ``n`` is
    fixed so its 95% interval has half-width at most ``target_halfwidth`` top-1 points
    (unless ``max`` caps it); its extra seeds continue after the pilot's largest."""

    pilot: tuple[int, ...]
    target_halfwidth: float
    max: int
    #: The level of the planned interval: the report's (``ablate.report.stats.ALPHA``).
    alpha: float = 0.05

    def extra_seeds(self, extra: int) -> tuple[int, ...]:
        """The seeds of a stage 2 of ``extra`` runs: the next integers after the pilot."""
        start = max(self.pilot) + 1
        return tuple(range(start, start + extra))

    def stein(self, base: Mapping[int, float], variant: Mapping[int, float]) -> Any:
        """The variant's :class:`~ablate.inference.SteinPlan` from the top-1 of the pilot
        seeds (per seed, baseline and variant); None until every pilot seed of both is in.
        A function of the pilot alone: any later run, and any rerun, plans the same."""
        from ablate.inference import paired, stein_plan

        if any(s not in base or s not in variant for s in self.pilot):
            return None
        return stein_plan(paired([variant[s] - base[s] for s in self.pilot]),
                          self.target_halfwidth, self.alpha, max_n=self.max)


def parse_seeds(value: Any) -> tuple[tuple[int, ...], PlannedSeeds | None]:
    """``seeds:`` as (the seeds every run starts with, the planned-seeds form or None): a
    list of integers, or ``{pilot: [...], target_halfwidth: H, max: N}``."""
    planned = None
    if isinstance(value, Mapping):
        _check_keys(value, PLANNED_KEYS, "seeds")
        missing = [k for k in PLANNED_KEYS if k not in value]
        if missing:
            raise StudyError(f"seeds.{missing[0]}: required in planned seeds, e.g. seeds: "
                             f"{{pilot: [0, 1, 2], target_halfwidth: 0.3, max: 12}}")
        pilot, h, cap = value["pilot"], value["target_halfwidth"], value["max"]
        if not isinstance(pilot, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in pilot):
            raise StudyError(f"seeds.pilot: expected a list of integers, got {pilot!r}, "
                             f"e.g. pilot: [0, 1, 2]")
        if len(set(pilot)) < 2:
            raise StudyError(f"seeds.pilot: {pilot} has fewer than 2 distinct seeds; the "
                             f"pilot's sd needs at least 2 (3 or more advised)")
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 < h < float("inf"):
            raise StudyError(f"seeds.target_halfwidth: {h!r}; give a positive number of "
                             f"top-1 points, e.g. target_halfwidth: 0.3")
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < len(pilot):
            raise StudyError(f"seeds.max: {cap!r}; give an integer cap on the seeds of a "
                             f"variant, at least the pilot's {len(pilot)}")
        planned = PlannedSeeds(tuple(pilot), float(h), cap)
        value = pilot
    if not isinstance(value, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in value
    ):
        raise StudyError(f"seeds: expected a list of integers or planned seeds {{pilot: "
                         f"[0, 1, 2], target_halfwidth: 0.3, max: 12}}, got {value!r}")
    if not value:
        raise StudyError("seeds: empty; give at least one seed, e.g. seeds: [0, 1, 2]")
    if len(set(value)) != len(value):
        raise StudyError(f"seeds{'.pilot' if planned else ''}: duplicates in {value}")
    return tuple(value), planned


def _check_metrics(primary: Any, metrics: Any) -> None:
    """``primary:``, the metric a study's report decides first (default top1), and
    ``metrics:``, the others its report decides besides top-1 (e.g. ``[nll, ece]``): each
    one the report knows (:data:`zoo.contract.REPORTABLE`)."""
    from zoo.contract import REPORTABLE as METRICS

    if metrics is not None and not isinstance(metrics, list):
        raise StudyError(f"metrics: expected a list of metric names, e.g. [nll, ece], got "
                         f"{metrics!r}")
    for key, value in [("primary", primary), *(("metrics", m) for m in metrics or [])]:
        if value is not None and value not in METRICS:
            raise StudyError(f"{key}: {value!r} is not a metric"
                             f"{did_you_mean(str(value), METRICS)}; give one of "
                             f"{', '.join(METRICS)}")


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
    #: Equivalence margin in top-1 points (the report's default; None: none declared).
    margin: float | None = None
    #: ``mode: factorial``: 4 or 5 for the standard fraction, None for the full design.
    resolution: int | None = None
    #: The models axis: every variant on each of these models (empty: the base's only).
    models: tuple[str, ...] = ()
    #: The command line's ``--set KEY=VALUE`` overrides, as typed (applied to the file).
    overrides: tuple[str, ...] = ()
    #: The name the file gives, when ``overrides`` left it out and the study's name was
    #: derived from it (see :func:`overridden_name`); None otherwise.
    file_name: str | None = None
    #: ``seeds:`` in the planned form (``seeds`` is then its pilot); None: a plain list.
    planned: PlannedSeeds | None = None
    #: The plugins of ``imports:`` (:class:`zoo.plugins.Plugin`), imported when loaded.
    plugins: tuple[Any, ...] = ()

    def plan(self, extra: Mapping[str, int] | None = None) -> list[PlannedRun]:
        """The baseline and every variant, each on every seed, in a stable order; with
        planned seeds, ``extra`` gives a variant's stage-2 seeds (see :meth:`stage_two`)."""
        return plan_study(self, extra)

    def stein_plans(self, runs_dir: Path,
                    top1_of: Callable[[Iterable[str]], Mapping[str, float]]
                    ) -> dict[str, Any]:
        """Planned seeds: each variant's :class:`~ablate.inference.SteinPlan`, or None
        while its pilot (or the baseline's) is not complete; ``top1_of(hashes)``: the top-1
        of those runs that succeeded (the database's). Empty for a plain list of seeds."""
        if self.planned is None:
            return {}
        rows = self.run_specs(runs_dir)
        top1 = top1_of(r.hash for r in rows)
        by_variant: dict[str, dict[int, float]] = {}
        for r in rows:
            if r.hash in top1:
                by_variant.setdefault(r.variant, {})[r.seed] = top1[r.hash]
        base = by_variant.get(BASELINE, {})
        return {v.name: self.planned.stein(base, by_variant.get(v.name, {}))
                for v in self.variants}

    def planned_specs(self, runs_dir: Path,
                      top1_of: Callable[[Iterable[str]], Mapping[str, float]]
                      ) -> tuple[RunSpec, ...]:
        """:meth:`run_specs` with each variant's stage 2 as far as the pilot's results fix
        it (:meth:`stein_plans`)."""
        extra = {v: p.extra for v, p in self.stein_plans(runs_dir, top1_of).items()
                 if p is not None}
        return self.run_specs(runs_dir, extra)

    def run_specs(self, runs_dir: Path, extra: Mapping[str, int] | None = None
                  ) -> tuple[RunSpec, ...]:
        """The plan placed under ``runs_dir`` (one directory per config hash): made once
        and passed, frozen, to the orchestrator, launchers, store and view; ``extra``: the
        stage-2 seeds of planned seeds (:meth:`stage_two`)."""
        lc = self.launch
        return tuple(RunSpec(
            variant=r.variant, variant_index=r.variant_index, change=r.change, seed=r.seed,
            hash=r.hash, config=r.config.to_dict(),
            run_dir=str((Path(runs_dir) / r.hash).resolve()), nproc=lc.world_size,
            nproc_per_node=lc.nproc_per_node, nnodes=lc.nnodes, epochs=r.config.epochs,
            model=r.model, code=r.code, plugins=self.plugins) for r in self.plan(extra))


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
                parsed = yaml_load(out)
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


def _set_dotted(cfg: dict[str, Any], overrides: Mapping[str, Any], where: str = ""
                ) -> dict[str, Any]:
    """Apply ``set`` overrides: keys may be dotted (``optim.lr``) or nested mappings, which
    merge into what the base has."""
    out = copy.deepcopy(cfg)
    for key, value in overrides.items():
        try:
            set_path(out, str(key), value, merge=True)
        except ZooError as exc:
            raise StudyError(f"{where}: set: {exc}" if where else str(exc)) from None
    return out


def overridden_name(name: str, overrides: Sequence[str]) -> str:
    """The name of a study changed by ``--set`` overrides that leave ``name`` alone:
    ``NAME-set-`` and 8 hex digits of the overrides (keys and parsed values, in order), so
    the same command always lands in the same study and never in the file's own, whose
    stored spec and (variant, seed) links a registration would otherwise replace."""
    pairs = [list(parse_override(item)) for item in overrides]
    digest = hashlib.sha256(json.dumps(pairs, sort_keys=True, default=str).encode())
    return f"{name}-set-{digest.hexdigest()[:8]}"


def load_study(path: str | Path, check_paths: bool = True,
               overrides: Sequence[str] = ()) -> Study:
    """Read and validate a study file, with ``--set KEY=VALUE`` ``overrides`` applied to
    its document first (KEY dotted from the top: ``base.epochs``, ``seeds``); every problem
    is a StudyError naming the file. Overrides that do not set ``name`` give the study the
    name :func:`overridden_name` derives: a study with overrides is another experiment."""
    path = Path(path)
    try:
        return _load(path, check_paths, tuple(overrides))
    except StudyError as exc:
        raise StudyError(f"{path}: {exc}") from None
    except ZooError as exc:  # config errors from zoo (they name the key)
        raise StudyError(f"{path}: {exc}") from None


def _recorded_overrides(value: Any) -> list[str]:
    """A document's ``overrides:``, a record of the ``--set`` items already applied to it
    (a stored spec carries one, so that a spec pasted back into a file loads as the same
    study): checked, kept, never applied again."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(o, str) for o in value):
        raise StudyError(f"overrides: expected a list of KEY=VALUE strings (the --set items "
                         f"this document already includes), got {value!r}; change the "
                         f"document itself or pass --set on the command line")
    for item in value:
        try:
            parse_override(item)
        except ZooError as exc:
            raise StudyError(f"overrides: {exc}") from None
    return list(value)


def _read(path: Path, overrides: tuple[str, ...]) -> dict[str, Any]:
    """The study document, with ``overrides`` applied and its top-level keys checked."""
    try:
        raw = load_yaml(path)
    except ZooError as exc:
        # load_yaml already names file:line:column; strip our own prefix duplication.
        msg = str(exc)
        raise StudyError(msg[len(f"{path}: "):] if msg.startswith(f"{path}: ") else msg) from None
    if not isinstance(raw, Mapping):
        raise StudyError("a study must be a mapping with name, base, seeds and variants")
    if overrides:
        # Before validation: every check below applies to the overridden document.
        raw = apply_overrides(raw, overrides)
    _check_keys(raw, STUDY_KEYS, "")
    return dict(raw)


def _names(raw: dict[str, Any], data: Mapping[str, Any], overrides: tuple[str, ...]
           ) -> tuple[str, str | None]:
    """(the study's name, the file's name when overrides derived another); records the
    overrides in ``raw``, the stored spec."""
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        raise StudyError("name: required, letters, digits, '_', '-' and '.' only")
    file_name = None
    if overrides and all(parse_override(item)[0] != "name" for item in overrides):
        file_name, name = name, overridden_name(name, overrides)
        raw["name"] = name
    recorded = _recorded_overrides(raw.get("overrides"))
    if overrides:
        # The stored spec (the database's, each run directory's studies.json) says what
        # the command line changed, besides holding the changed document.
        raw["overrides"] = [*recorded, *overrides]
    return name, file_name


def _variants(value: Any) -> tuple[Variant, ...]:
    if not isinstance(value, list):
        raise StudyError("variants: expected a list of {name, tricks, set}")
    variants: list[Variant] = []
    seen: set[str] = {BASELINE}
    for i, v in enumerate(value):
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
    return tuple(variants)


def _design(data: Mapping[str, Any], mode: str, variants: tuple[Variant, ...]
            ) -> tuple[float | None, int | None, tuple[str, ...]]:
    """(margin, resolution, models) of the study, checked."""
    margin = data.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))
                               or not margin > 0):
        raise StudyError(f"margin: {margin!r} is not an equivalence margin; give a positive "
                         f"number of top-1 points, e.g. margin: 0.5")
    _check_metrics(data.get("primary"), data.get("metrics"))
    resolution = data.get("resolution")
    if resolution is not None and mode != "factorial":
        raise StudyError("resolution: only with mode: factorial (a fractional design)")
    if resolution is not None and resolution not in (4, 5):
        raise StudyError(f"resolution: {resolution!r}; give 4 or 5 (the standard fractions), "
                         f"or leave it out for the full design")
    if mode == "factorial":
        study_design([v.name for v in variants], resolution)
    models = data.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise StudyError(f"models: expected a list of model names, got {models!r}")
    if len(set(models)) != len(models) or len(models) == 1:
        raise StudyError(f"models: {models}; give two or more distinct models (one model is "
                         f"base.model)")
    return None if margin is None else float(margin), resolution, tuple(models)


def _seeding(data: Mapping[str, Any], mode: str) -> tuple[tuple[int, ...], PlannedSeeds | None]:
    """The seeds, and the planned-seeds form (checked against the mode)."""
    seeds, planned = parse_seeds(data.get("seeds", [0]))
    if planned is not None and mode == "factorial":
        raise StudyError("seeds: planned seeds (a mapping) fix each variant's seeds against "
                         "its baseline; not with mode: factorial, give a list")
    return seeds, planned


def _check_planned(planned: PlannedSeeds | None, launch: Launch,
                   models: tuple[str, ...]) -> None:
    """Planned seeds where the launch and the models axis allow them."""
    if planned is None:
        return
    if launch.backend == "local" and launch.nnodes > 1:
        # The other nodes' followers walk a fixed plan: a stage 2 that node 0 adds would
        # wait at the rendezvous for agents that never come.
        raise StudyError("seeds: planned seeds are not supported with launch.nnodes > 1 "
                         "on backend: local yet; use backend: slurm or a list of seeds")
    if models:
        raise StudyError("seeds: planned seeds (a mapping) fix each variant's seeds against "
                         "its baseline; not with models:, give a list")


def _load(path: Path, check_paths: bool, overrides: tuple[str, ...] = ()) -> Study:
    raw = _read(path, overrides)
    data = expand_env(raw)
    name, file_name = _names(raw, data, overrides)
    # Before anything is checked: their tricks, models and data formats are checked too.
    plugins = import_plugins(data.get("imports") or [], path.resolve().parent)
    base = data.get("base")
    if not isinstance(base, Mapping):
        raise StudyError("base: required, a full run config (model, data, optim, ...)")
    if base.get("imports"):
        raise StudyError("base.imports: a study imports its plugins once, for every run; "
                         "move the list to the study's top-level imports:")
    launch_raw = data.get("launch") or {}
    if not isinstance(launch_raw, Mapping):
        raise StudyError(f"launch: expected a mapping, got {launch_raw!r}")
    launch = parse_launch(launch_raw)
    seeds, planned = _seeding(data, data.get("mode", "add_one"))
    mode = data.get("mode", "add_one")
    if mode not in MODES:
        raise StudyError(f"mode: '{mode}' is not one of {', '.join(MODES)}")
    variants = _variants(data.get("variants") or [])
    margin, resolution, models = _design(data, mode, variants)
    _check_planned(planned, launch, models)
    study = Study(
        name=name, path=path, base=dict(base), launch=launch, seeds=seeds, planned=planned,
        mode=mode, variants=variants, description=str(data.get("description", "")),
        raw=raw, margin=margin, resolution=resolution, models=models, overrides=overrides,
        file_name=file_name, plugins=plugins,
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


def study_design(factors: Sequence[str], resolution: int | None) -> Any:
    """The two-level design of a factorial study over its variants (each one factor)."""
    from ablate.inference import InferenceError, factorial_design

    try:
        return factorial_design(factors, resolution=resolution)
    except InferenceError as exc:
        raise StudyError(f"mode: factorial: {exc}") from None


def factorial_name(on: Sequence[str]) -> str:
    """A factorial run's variant name: the factors it turns on, or the baseline."""
    return " + ".join(on) if on else BASELINE


def _variant_dicts(study: Study) -> list[tuple[str, dict[str, Any], str]]:
    """(name, config dict without seed, change description) for baseline and variants;
    with a models axis, each of them on every model, model by model."""
    if not study.models:
        return _model_variant_dicts(study, dict(study.base))
    out = []
    for model in study.models:
        key = "model.name" if isinstance(study.base.get("model"), Mapping) else "model"
        base = _set_dotted(study.base, {key: model})
        out += [(f"{name}{AT}{model}", cfg, change)
                for name, cfg, change in _model_variant_dicts(study, base)]
    return out


def _model_variant_dicts(study: Study, base: dict[str, Any]
                         ) -> list[tuple[str, dict[str, Any], str]]:
    out: list[tuple[str, dict[str, Any], str]] = []
    if study.mode == "factorial":
        # Each design row turns its + factors on, in the order the study lists them; row 0
        # (every base factor at -) is variant 0, the reference of the per-run table.
        by_name = {v.name: v for v in study.variants}
        for on in study_design(list(by_name), study.resolution).on:
            cfg = copy.deepcopy(base)
            for f in on:
                cfg = _set_dotted(cfg, by_name[f].set, f"variant '{f}'")
                cfg["tricks"] = {**(cfg.get("tricks") or {}), **by_name[f].tricks}
            out.append((factorial_name(on), cfg,
                        " ".join(f"+ {_describe(by_name[f])}" for f in on)))
        return out
    if study.mode == "leave_one_out":
        all_tricks: dict[str, Any] = dict(base.get("tricks") or {})
        full = base
        for v in study.variants:
            all_tricks.update(v.tricks)
            full = _set_dotted(full, v.set, f"variant '{v.name}'")
        full = {**full, "tricks": all_tricks}
        out.append((BASELINE, full, "all changes"))
        for v in study.variants:
            cfg = copy.deepcopy(base)
            for other in study.variants:
                if other is v:
                    continue
                cfg = _set_dotted(cfg, other.set, f"variant '{other.name}'")
            cfg["tricks"] = {k: p for k, p in all_tricks.items() if k not in v.tricks}
            out.append((v.name, cfg, f"- {_describe(v)}"))
        return out
    out.append((BASELINE, base, ""))
    acc = copy.deepcopy(base)
    for v in study.variants:
        start = acc if study.mode == "cumulative" else copy.deepcopy(base)
        cfg = _set_dotted(start, v.set, f"variant '{v.name}'")
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


def plan_study(study: Study, extra: Mapping[str, int] | None = None) -> list[PlannedRun]:
    extra = extra or {}
    runs: list[PlannedRun] = []
    for index, (vname, cfg_dict, change) in enumerate(_variant_dicts(study)):
        where = "base" if index == 0 else f"variant '{vname}'"
        # Planned seeds: the baseline pairs with every variant, so it needs the most.
        more = max(extra.values(), default=0) if index == 0 else extra.get(vname, 0)
        seeds = study.seeds + (study.planned.extra_seeds(more) if study.planned else ())
        for seed in seeds:
            try:
                cfg = build_config({**cfg_dict, "seed": seed})
            except ZooError as exc:
                raise StudyError(f"{where}: {exc}") from None
            code = run_code(cfg)
            runs.append(PlannedRun(vname, index, seed, cfg, run_hash(cfg, code), change,
                                   effective_model(cfg.to_dict()), code))
    seen: dict[str, PlannedRun] = {}
    for r in runs:
        if r.hash in seen and seen[r.hash].variant != r.variant:
            raise StudyError(
                f"variants '{seen[r.hash].variant}' and '{r.variant}' resolve to the same "
                f"config; one of them changes nothing"
            )
        seen[r.hash] = r
    return runs


@lru_cache(maxsize=256)
def _effective_model(name: str, tricks_json: str) -> str:
    tricks = json.loads(tricks_json)
    if not tricks:
        return name
    try:  # a trick may select another version of the model (preactivation, octconv)
        from zoo.tricks import TrickSet
    except ImportError:  # pragma: no cover - the zoo is part of this project
        return name
    try:
        return TrickSet(tricks, name).model_name(name)
    except ZooError:
        return name


def effective_model(config: Mapping[str, Any]) -> str:
    """The model a run really trains: the config's model after model-selecting tricks."""
    model = config.get("model")
    name = model.get("name", "?") if isinstance(model, Mapping) else str(model or "?")
    return _effective_model(name, json.dumps(config.get("tricks") or {}, sort_keys=True))
