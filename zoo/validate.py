"""A run config checked against what is registered: names of tricks, models and data
formats, their parameters and options, the data paths, and the researcher's own code
(``imports:``, imported first). :mod:`zoo.config` holds the config's types and parsing
alone, below the registries (which parse their parameters with it); this module sits above
them, so neither imports the other back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.config import RunConfig, apply_overrides, describe_value, from_dict, load_yaml
from zoo.errors import ConfigError, ZooError


def check_values(cfg: RunConfig) -> None:
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
    check_components(cfg)


def check_components(cfg: RunConfig) -> None:
    """The data format, the model, the tricks and the model options they set, checked
    against what is registered."""
    # The declarations alone (zoo/models/catalog.py, the trick classes): no torch here.
    # Imported here, when a config is checked: a report imports the study module, which
    # imports this one, but never checks a config nor needs the registries.
    from zoo.data.formats import get_data_format
    from zoo.models import check_model_options, get_model_info, is_model
    from zoo.tricks import TrickSet

    get_data_format(cfg.data.format)  # raises with the known formats
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


def build_config(data: Mapping[str, Any], overrides: Sequence[str] = (),
                 base_dir: Path | None = None) -> RunConfig:
    """Validate a config dict (plus ``--set`` overrides) into a :class:`RunConfig`; its
    ``imports`` (paths relative to ``base_dir``, default the working directory) are
    imported first, so their tricks, models and data formats are known to the checks."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"the config must be a mapping of sections, got {describe_value(data)}")
    merged = apply_overrides(dict(data), overrides)
    tricks = merged.get("tricks")
    if isinstance(tricks, Mapping):  # `zero_gamma:` with no value means default parameters
        merged["tricks"] = {k: ({} if v is None else v) for k, v in tricks.items()}
    cfg = from_dict(RunConfig, merged)
    if cfg.imports:
        from zoo.plugins import import_plugins

        import_plugins(cfg.imports, Path.cwd() if base_dir is None else base_dir)
    check_values(cfg)
    return cfg


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Load, override and validate a run config file; errors name the file."""
    data = load_yaml(path)
    try:
        return build_config(data, overrides, base_dir=Path(path).resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
