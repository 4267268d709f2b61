"""The resolved run config: one typed, frozen, validated description of a training run.

A config is read from YAML (or a dict), overridden with ``--set key=value`` pairs, checked
key by key against the dataclasses below, and written back in full, every default filled
in, to the run directory's ``config.json``. Unknown keys, wrong types and values out of
range raise :class:`~zoo.errors.ConfigError` with a one-line message that names the key
and, for a misspelt key, the closest valid one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from zoo.errors import ConfigError, ZooError, did_you_mean

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class ModelConfig:
    """Which architecture to build (a name from ``ablate models``) and its options."""

    name: str = "resnet50"
    #: Model options (act, drop_rate, drop_path_rate, zero_init_last, norm, ...).
    options: dict[str, Any] = field(default_factory=dict)
    #: Train in channels_last (NHWC) memory format. ``null``: the model's registry default
    #: on CUDA (on for dense-conv models, off for grouped/depthwise ones, which it can slow
    #: down) and off on the CPU; ``true``/``false`` are honoured on any device.
    channels_last: bool | None = None


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are turned into tensors."""

    train: str = ""
    val: str = ""
    format: Literal["imagefolder", "lmdb"] = "imagefolder"
    #: Side of the square crop fed to the model.
    image_size: int = 224
    #: ``imagenet``: random resized crop + flip / resize to size/0.875 + centre crop.
    #: ``small``: pad by size/8 + random crop + flip / no resize (28-32 px data).
    preset: Literal["imagenet", "small"] = "imagenet"
    #: Random horizontal flip in training (off for digits or text).
    hflip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    #: Where images are decoded. ``cpu``: loader workers decode, crop and flip, and hand
    #: uint8 batches over. ``gpu``: workers only read the bytes and draw each crop box and
    #: flip; the training process decodes (nvJPEG on CUDA), crops and flips on the device.
    #: ``auto``: ``gpu`` on CUDA for the imagenet preset without per-image trick transforms,
    #: else ``cpu``. Both draw the same boxes; pixels differ by decoder/interpolation
    #: rounding, so ``gpu``/``auto`` are part of a run's identity and ``cpu`` is not.
    decode: Literal["cpu", "gpu", "auto"] = "cpu"
    #: Skip images that fail to decode (counted, reported in the run's audit) instead of
    #: failing the run with an error that names the image.
    skip_bad: bool = False


@dataclass(frozen=True)
class OptimConfig:
    """SGD with (Nesterov) momentum and weight decay."""

    name: Literal["sgd"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning rate per iteration: linear warmup, then cosine decay, constant, or ``step``:
    divided by 10 at 1/4, 1/2 and 3/4 of the iterations (He et al. 2016's ImageNet rule,
    the baseline of Bag of Tricks: epochs 30, 60 and 90 of 120)."""

    name: Literal["cosine", "constant", "step"] = "cosine"
    warmup_epochs: float = 0.0
    #: The warmup starts at lr * warmup_start_factor.
    warmup_start_factor: float = 0.01
    #: Cosine decays to this learning rate at the last iteration.
    min_lr: float = 0.0


@dataclass(frozen=True)
class EvalConfig:
    """What the evaluation measures beyond loss, top-1/5, calibration and worst class."""

    #: After the last epoch, top-1 under a fixed, seeded set of common corruptions at five
    #: severities each (:data:`zoo.metrics.CORRUPTIONS`): 25 more evaluation passes.
    corruptions: bool = False


@dataclass(frozen=True)
class RunConfig:
    """One training run, fully resolved."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    #: Trick name -> its parameters, e.g. ``{label_smoothing: {smoothing: 0.1}}``.
    tricks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``auto`` is fp16 (autocast + GradScaler) on CUDA and fp32 on CPU.
    precision: Precision = "auto"
    seed: int = 0
    epochs: int = 90
    #: Images per process per step; the global batch is batch_size x world size.
    batch_size: int = 128
    #: DataLoader worker processes per training process. ``auto``: the cores of this node
    #: per local process, minus one for the process itself (at least 1); config.json
    #: records the resolved number under ``input``. The workers' augmentation streams
    #: depend on the number (worker ``w`` is seeded with ``base + w``), so an ``auto`` run
    #: repeats exactly on machines that resolve it alike.
    workers: int | Literal["auto"] = "auto"
    #: Steps between progress updates and non-finite-loss checks (host syncs).
    log_every: int = 20
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: ``torch.compile`` the training model. The first steps pay the compilation (about a
    #: minute for ResNet-20 with Inductor on a CPU); checkpoints hold the plain module.
    compile: bool = False
    #: Write TensorBoard event files (per-epoch curves, the config and final metrics as
    #: HParams) into the run directory's ``tensorboard/``, from rank 0 only.
    tensorboard: bool = True
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with every default filled in (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def identity(self) -> dict[str, Any]:
        """What the run trains, as a plain dict: its hash and the check that a run
        directory holds this run use it (see :func:`run_identity`)."""
        return run_identity(self.to_dict())


#: Settings that change how a run executes, not what it trains: a run's identity holds
#: them at these fixed values (None: left out), so switching one on never forks a run
#: into a new hash nor retrains a finished one. ``model.channels_last`` was part of every
#: identity as ``false`` before it became a per-model default; it stays there with that
#: value so the hashes of runs made before keep matching. ``tensorboard`` only says whether
#: event files are written next to the metrics.
EXECUTION_ONLY: dict[str, Any] = {"compile": None, "model.channels_last": False,
                                  "tensorboard": None, "data.skip_bad": None}
#: Settings left out of a run's identity while they hold their default, so the runs made
#: before the setting existed keep their hashes: ``data.decode: cpu`` trains on the same
#: samples as the trainer did before (tests/test_pipeline.py); ``eval.corruptions: false``
#: measures what runs measured before (a section left empty this way is left out too).
DEFAULT_OMITTED: dict[str, Any] = {"data.decode": "cpu", "eval.corruptions": False}


def run_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a :meth:`RunConfig.to_dict`, possibly from an older version's
    config.json) with :data:`EXECUTION_ONLY` settings at their fixed values."""
    out = copy.deepcopy(dict(config))
    for key, value in EXECUTION_ONLY.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    for key, default in DEFAULT_OMITTED.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node.get(part), dict) else {}
        if node.get(leaf, default) == default:
            node.pop(leaf, None)
            if parents and node == {} and out.get(parents[0]) is node:
                del out[parents[0]]
    return out


def config_hash(cfg: RunConfig) -> str:
    """Content hash of the canonical resolved config (sorted keys, every default filled),
    execution-only settings (``compile``, ``model.channels_last``, ``tensorboard``) left
    at fixed values."""
    canonical = json.dumps(cfg.identity(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (dict, Mapping) or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is tuple:
        return f"a list of {len(get_args(tp))} numbers"
    return str(tp)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp``; return it converted (int -> float, list -> tuple)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if type(None) in args and inner[0] in (bool, int, float, str):
            try:
                return _convert(value, inner[0], key)
            except ConfigError:
                raise ConfigError(f"{key}: expected {_type_name(inner[0])} or null, "
                                  f"got {_describe(value)}") from None
        if len(inner) > 1:  # e.g. ``int | Literal["auto"]``: the first arm that fits
            for arm in inner:
                try:
                    return _convert(value, arm, key)
                except ConfigError:
                    pass
            raise ConfigError(f"{key}: expected " + " or ".join(_type_name(a) for a in inner)
                              + f", got {_describe(value)}")
        return _convert(value, inner[0], key)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and "name" in {f.name for f in dataclasses.fields(tp)}:
            value = {"name": value}  # shorthand: `model: resnet50`
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_describe(value)}")
        return from_dict(tp, value, prefix=f"{key}.")
    ok = True
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is Any:
        ok = True
    elif origin is Literal:
        ok = value in get_args(tp) and not isinstance(value, bool)
    elif origin is tuple:
        args = get_args(tp)
        ok = isinstance(value, Sequence) and not isinstance(value, str)
        ok = ok and len(value) == len(args)
        if ok:
            pairs = enumerate(zip(value, args, strict=True))
            value = tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    elif origin in (dict, Mapping):
        ok = isinstance(value, Mapping)
        if ok:
            _, vt = get_args(tp) or (str, Any)
            value = {str(k): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_describe(value)}")
    return value


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                f"unknown key '{prefix}{key}'{did_you_mean(str(key), names, prefix)}"
            )
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def merge_trees(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge into a copy of ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_trees(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_path(tree: dict[str, Any], dotted: str, value: Any, merge: bool = False) -> None:
    """``tree[a][b][c] = value`` for ``dotted`` = 'a.b.c', creating mappings on the way
    (``model: NAME`` counts as ``{name: NAME}``). With ``merge``, a mapping merges into the
    mapping already there and a string for ``model`` replaces only the model's name.

    A path through something that is neither a mapping nor empty (``seeds.x`` when
    ``seeds`` is a list) is a :class:`ConfigError` naming the key: replacing the list with
    a mapping would silently drop what the user meant to change inside it."""
    node = tree
    parts = dotted.strip().split(".")
    if not all(parts):
        raise ConfigError(f"'{dotted}' is not a key; give a dotted path like optim.lr")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str) and part == "model":
            child = {"name": child}
        elif child is None:  # absent, or written empty in YAML
            child = {}
        elif not isinstance(child, dict):
            key = ".".join(parts[: i + 1])
            raise ConfigError(f"{key}: is {_describe(child)}, not a mapping, so '{dotted}' "
                              f"cannot be set inside it; set {key} as a whole")
        node[part] = child
        node = child
    last, current = parts[-1], node.get(parts[-1])
    if merge and last == "model" and isinstance(value, str) and isinstance(current, dict):
        node[last] = {**current, "name": value}
    elif merge and isinstance(value, Mapping) and isinstance(current, Mapping):
        node[last] = merge_trees(current, value)
    else:
        node[last] = copy.deepcopy(value)


def parse_override(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as ``(KEY, VALUE parsed as YAML)``; ``1`` is an int, ``[0]`` a list,
    ``true`` a bool, anything YAML cannot parse the string as typed."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr=0.2")
    dotted, raw = item.split("=", 1)
    if not dotted.strip():
        raise ConfigError(f"--set {item!r}: no key before '='; give KEY=VALUE, e.g. "
                          f"--set optim.lr=0.2")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return dotted.strip(), value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict copy; a
    bad one is a :class:`ConfigError` naming the ``--set`` argument."""
    out = _plain(data)
    for item in overrides:
        dotted, value = parse_override(item)
        try:
            set_path(out, dotted, value)
        except ConfigError as exc:
            raise ConfigError(f"--set {item!r}: {exc}") from None
    return out


def _check_values(cfg: RunConfig) -> None:
    """Range checks that types alone cannot express."""
    positive = {
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "data.image_size": cfg.data.image_size,
        "log_every": cfg.log_every,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if cfg.workers != "auto" and cfg.workers < 0:
        raise ConfigError(f"workers: must be 0 or more, got {cfg.workers}")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr: must be positive, got {cfg.optim.lr}")
    if cfg.optim.weight_decay < 0:
        raise ConfigError(f"optim.weight_decay: must be 0 or more, got {cfg.optim.weight_decay}")
    if not 0 <= cfg.optim.momentum < 1:
        raise ConfigError(f"optim.momentum: must be in [0, 1), got {cfg.optim.momentum}")
    if cfg.optim.nesterov and cfg.optim.momentum == 0:
        raise ConfigError("optim.nesterov: needs optim.momentum > 0; set nesterov: false")
    if cfg.eval.corruptions and cfg.data.decode != "cpu":
        # Checked here, not after the last epoch: the corruptions act on the uint8 images
        # the loader workers decode, which the gpu path never has on the host.
        raise ConfigError(f"eval.corruptions: needs data.decode: cpu, got "
                          f"{cfg.data.decode!r}")
    if not 0 <= cfg.schedule.warmup_epochs <= cfg.epochs:
        raise ConfigError(
            f"schedule.warmup_epochs: must be in [0, epochs={cfg.epochs}], "
            f"got {cfg.schedule.warmup_epochs}"
        )
    if not 0 < cfg.schedule.warmup_start_factor <= 1:
        raise ConfigError(
            "schedule.warmup_start_factor: must be in (0, 1], "
            f"got {cfg.schedule.warmup_start_factor}"
        )
    if any(s <= 0 for s in cfg.data.std):
        raise ConfigError(f"data.std: every value must be positive, got {list(cfg.data.std)}")
    # The declarations alone (zoo/models/catalog.py, the trick classes): no torch here.
    from zoo.models import check_model_options, get_model_info, is_model
    from zoo.tricks import TrickSet

    if not is_model(cfg.model.name):
        get_model_info(cfg.model.name)  # raises with the closest names
    tricks = TrickSet(cfg.tricks, cfg.model.name)  # validates names, parameters, the model
    for key, value in tricks.model_options().items():
        if key in cfg.model.options and cfg.model.options[key] != value:
            raise ConfigError(
                f"model.options.{key}: {cfg.model.options[key]!r} conflicts with a trick that "
                f"sets it to {value!r}; remove one of them"
            )
    # The options as the trainer passes them, to the model the tricks select.
    try:
        check_model_options(tricks.model_name(cfg.model.name),
                            {**cfg.model.options, **tricks.model_options()})
    except (ZooError, ValueError) as exc:
        raise ConfigError(f"model.options: {exc}") from None


def check_data_paths(cfg: RunConfig) -> None:
    """The data directories (or LMDB files) must exist before any work starts."""
    for key in ("train", "val"):
        value = getattr(cfg.data, key)
        if not value:
            raise ConfigError(
                f"data.{key}: missing; set it to the {key} split's directory "
                f"(e.g. data/digits/{key} from 'ablate data prepare digits --out data/digits')"
            )
        if not Path(value).exists():
            how = ("'ablate data to-lmdb TREE DST'" if cfg.data.format == "lmdb"
                   else "'ablate data prepare fashion-mnist|digits --out DIR'")
            if "imagenet" in str(value).lower():
                # ImageNet cannot be prepared here: the studies read its place from $IMAGENET
                # (``${IMAGENET:-/data/imagenet}/train``), which the error must name.
                how = ("ImageNet: export IMAGENET=DIR, the directory holding its train/ and "
                       "val/ ImageFolder trees (the study files read "
                       "${IMAGENET:-/data/imagenet})")
                raise ConfigError(f"data.{key}: '{value}' does not exist; {how}")
            raise ConfigError(
                f"data.{key}: '{value}' does not exist; fix the path or create it with {how}"
            )


def build_config(data: Mapping[str, Any], overrides: Sequence[str] = ()) -> RunConfig:
    """Validate a config dict (plus ``--set`` overrides) into a :class:`RunConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"the config must be a mapping of sections, got {_describe(data)}")
    merged = apply_overrides(dict(data), overrides)
    tricks = merged.get("tricks")
    if isinstance(tricks, Mapping):  # `zero_gamma:` with no value means default parameters
        merged["tricks"] = {k: ({} if v is None else v) for k, v in tricks.items()}
    cfg = from_dict(RunConfig, merged)
    _check_values(cfg)
    return cfg


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; syntax errors become ``file:line:column: problem``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Load, override and validate a run config file; errors name the file."""
    data = load_yaml(path)
    try:
        return build_config(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
