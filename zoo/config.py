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
import functools
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from zoo.errors import ConfigError, did_you_mean


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as researchers write them: YAML 1.1, which
    PyYAML follows, reads ``1e-3`` as a string (its floats need a dot and a signed
    exponent); YAML 1.2 and JSON read it as 0.001, and so does this loader. Nothing else
    becomes a number that was a string before."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with :class:`YamlLoader`'s numbers."""
    return yaml.load(text, Loader=YamlLoader)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class ModelConfig:
    """Which architecture to build (a name from ``ablate models``) and its options."""

    #: A model of the zoo's catalog (``ablate models``); a string ``model: NAME`` is short
    #: for ``model: {name: NAME}``.
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

    #: The training images (required): an ImageFolder directory (``<class>/<image>``), or
    #: with ``format: lmdb`` a file made by ``ablate data to-lmdb``.
    train: str = ""
    #: The validation images (required), in the same format as ``train``.
    val: str = ""
    #: The storage format of both splits: ``imagefolder``, ``lmdb`` or a format a plugin
    #: registers (``zoo.register_data_format``; see ``ablate data formats``).
    format: str = "imagefolder"
    #: Side of the square crop fed to the model.
    image_size: int = 224
    #: ``imagenet``: random resized crop + flip / resize to size/0.875 + centre crop.
    #: ``small``: pad by size/8 + random crop + flip / no resize (28-32 px data).
    preset: Literal["imagenet", "small"] = "imagenet"
    #: Random horizontal flip in training (off for digits or text).
    hflip: bool = True
    #: Per-channel mean subtracted in the normalisation (ImageNet's by default).
    mean: tuple[float, float, float] = IMAGENET_MEAN
    #: Per-channel standard deviation divided by in the normalisation (ImageNet's by default).
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

    #: The optimizer: SGD (tricks may replace or wrap it: ``lamb``, ``lookahead``).
    name: Literal["sgd"] = "sgd"
    #: Peak learning rate, reached after the warmup.
    lr: float = 0.1
    #: Momentum factor, in [0, 1).
    momentum: float = 0.9
    #: Nesterov momentum (needs ``momentum`` > 0).
    nesterov: bool = True
    #: L2 weight decay on every parameter (``no_bias_decay`` exempts biases and norms).
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning rate per iteration: linear warmup, then cosine decay, constant, or ``step``:
    divided by 10 at 1/4, 1/2 and 3/4 of the iterations (He et al. 2016's ImageNet rule,
    the baseline of Bag of Tricks: epochs 30, 60 and 90 of 120)."""

    #: ``cosine``, ``constant`` or ``step``, stepped every iteration; its length is computed
    #: from the real iterations per epoch at the actual world size.
    name: Literal["cosine", "constant", "step"] = "cosine"
    #: Epochs of linear warmup (a fraction is allowed), from lr * warmup_start_factor.
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
    #: A trick acting per step (mixup, cutmix, label_smoothing, bce_loss, distillation,
    #: gradient_centralization) also takes ``until_epoch: E`` and stops after epoch E.
    tricks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``auto`` is fp16 (autocast + GradScaler) on CUDA and fp32 on CPU.
    #: ``fp16`` on a CPU works but warns: 25-30x slower there than fp32.
    precision: Precision = "auto"
    #: Fixes initialisation, data order and augmentation.
    seed: int = 0
    #: Training epochs; the run is evaluated after each.
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
    #: ``auto``: the process's own GPU (its local rank) when CUDA is available, else the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: ``torch.compile`` the training model. The first steps pay the compilation (about a
    #: minute for ResNet-20 with Inductor on a CPU); checkpoints hold the plain module.
    compile: bool = False
    #: Write TensorBoard event files (per-epoch curves, the config and final metrics as
    #: HParams) into the run directory's ``tensorboard/``, from rank 0 only.
    tensorboard: bool = True
    #: Python files, packages (paths relative to the config file) or module names imported
    #: before the config is checked: the researcher's own tricks, models and data formats
    #: (see docs/extending.md). Not part of the run's identity: the code of the components
    #: a run names is (``zoo.fingerprint``), wherever the files lie.
    imports: tuple[str, ...] = ()
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
                                  "tensorboard": None, "data.skip_bad": None,
                                  "imports": None}
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


def config_hash(cfg: RunConfig | Mapping[str, Any]) -> str:
    """Content hash of the canonical resolved config (sorted keys, every default filled;
    a :meth:`RunConfig.to_dict` mapping works too), execution-only settings (``compile``,
    ``model.channels_last``, ``tensorboard``, ``imports``) left at fixed values. The
    config's part of a run's identity; :func:`run_hash` adds the code."""
    identity = cfg.identity() if isinstance(cfg, RunConfig) else run_identity(cfg)
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def run_hash(cfg: RunConfig, code: Mapping[str, str]) -> str:
    """A run's id: the content hash of its config's identity and of ``code``, the
    fingerprints of the components it names (:func:`zoo.fingerprint.run_code`), so that
    the same config trained by edited code is another run (its directory, its row)."""
    canonical = json.dumps({"config": cfg.identity(), "code": dict(code)}, sort_keys=True,
                           separators=(",", ":"))
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
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0]).removeprefix('a ')}s"
        return f"a list of {len(args)} numbers"
    return str(tp)


def describe_value(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert_union(value: Any, args: tuple[Any, ...], key: str) -> Any:
    """``value`` as the first arm of a union type that fits (``None`` for an optional)."""
    if value is None and type(None) in args:
        return None
    inner = [a for a in args if a is not type(None)]
    if type(None) in args and inner[0] in (bool, int, float, str):
        try:
            return _convert(value, inner[0], key)
        except ConfigError:
            raise ConfigError(f"{key}: expected {_type_name(inner[0])} or null, "
                              f"got {describe_value(value)}") from None
    if len(inner) > 1:  # e.g. ``int | Literal["auto"]``: the first arm that fits
        for arm in inner:
            try:
                return _convert(value, arm, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected " + " or ".join(_type_name(a) for a in inner)
                          + f", got {describe_value(value)}")
    return _convert(value, inner[0], key)


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp``; return it converted (int -> float, list -> tuple)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_union(value, get_args(tp), key)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and "name" in {f.name for f in dataclasses.fields(tp)}:
            value = {"name": value}  # shorthand: `model: resnet50`
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {describe_value(value)}")
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
        if ok and len(args) == 2 and args[1] is Ellipsis:  # ``tuple[str, ...]``: any length
            args = (args[0],) * len(value)
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
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {describe_value(value)}")
    return value


@functools.lru_cache(maxsize=512)
def _fields(cls: type) -> tuple[dict[str, Any], list[str]]:
    """The resolved type hints and field names of dataclass ``cls``: resolving string
    annotations compiles each one, which planning a study of 900 runs paid 11,000 times."""
    return typing.get_type_hints(cls), [f.name for f in dataclasses.fields(cls)]


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    hints, names = _fields(cls)
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
            raise ConfigError(f"{key}: is {describe_value(child)}, not a mapping, so '{dotted}' "
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
        value = yaml_load(raw) if raw != "" else ""
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


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; syntax errors become ``file:line:column: problem``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    try:
        return yaml_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
