"""The trick registry, and :class:`TrickSet`, which runs the hooks of the tricks in a run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError, UnknownNameError, defined_at, did_you_mean
from zoo.tricks.base import TOUCHES, Audit, RunFacts, TrainContext, Trick

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from torch import nn

#: The parameter every ``stoppable`` trick takes besides its own (see ``zoo.tricks.base``).
UNTIL_EPOCH = "until_epoch"

_TRICKS: dict[str, type[Trick]] = {}


#: The hooks a trick may override, as :class:`Trick` declares them.
HOOKS = tuple(n for n, v in vars(Trick).items()
              if not n.startswith("_") and not isinstance(v, type)
              and (callable(v) or isinstance(v, classmethod)) and n != "active")


def _check_hooks(cls: type[Trick]) -> None:
    """Every overridden hook takes the arguments the trainer passes it."""
    import inspect

    for hook in HOOKS:
        if getattr(cls, hook) is getattr(Trick, hook):
            continue
        base = inspect.signature(getattr(Trick, hook))
        ours = inspect.signature(getattr(cls, hook))
        try:
            ours.bind(*base.parameters)
        except TypeError:
            raise ValueError(
                f"trick '{cls.name}' ({cls.__qualname__}, {defined_at(cls)}): hook {hook}"
                f"({', '.join(ours.parameters)}) does not take the arguments of "
                f"Trick.{hook}({', '.join(base.parameters)})") from None


def _check_trick(cls: type[Trick]) -> None:
    """What a trick class must declare; one line naming the class on the first problem."""
    what = f"{getattr(cls, '__qualname__', cls)} ({defined_at(cls)})"
    if not isinstance(cls, type) or not issubclass(cls, Trick):
        raise TypeError(f"register_trick: {what} is not a subclass of zoo.Trick")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"trick class {what}: set name to a Python identifier, e.g. "
                         f"name = 'sam' (got {name!r})")
    if not (isinstance(cls.Params, type) and dataclasses.is_dataclass(cls.Params)):
        raise ValueError(f"trick '{name}' ({what}): Params must be a dataclass of typed "
                         f"parameters (or zoo.NoParams), got {cls.Params!r}")
    if isinstance(cls.touches, str) or any(t not in TOUCHES for t in cls.touches):
        unknown = [cls.touches] if isinstance(cls.touches, str) else \
            [t for t in cls.touches if t not in TOUCHES]
        raise ValueError(f"trick '{name}' ({what}) touches unknown {unknown} (a tuple of: "
                         f"{', '.join(TOUCHES)})")
    _check_hooks(cls)


def register_trick(cls: type[Trick]) -> type[Trick]:
    """Class decorator: make a trick available by its ``name``.

    The class is checked first (a name, a dataclass ``Params``, known ``touches``, hooks
    with the trainer's arguments). A name another definition holds is an error naming
    both; the same class registered again (its module imported anew) replaces itself.
    """
    _check_trick(cls)
    old = _TRICKS.get(cls.name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__,
                                                                  cls.__qualname__):
        raise ValueError(f"trick '{cls.name}' is defined twice: {defined_at(old)} and "
                         f"{defined_at(cls)}; rename one")
    _TRICKS[cls.name] = cls
    return cls


def list_tricks() -> list[str]:
    return sorted(_TRICKS)


def get_trick(name: str) -> type[Trick]:
    try:
        return _TRICKS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown trick '{name}'{did_you_mean(name, _TRICKS)} (see 'ablate tricks')"
        ) from None


def parse_params(name: str, raw: Mapping[str, Any] | None) -> Any:
    """Typed parameters of trick ``name`` from a mapping (None means all defaults)."""
    from zoo.config import from_dict  # the same key/type checks as the run config

    cls = get_trick(name)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"tricks.{name}: expected a mapping of parameters, got {raw!r}")
    raw = {k: v for k, v in raw.items() if k != UNTIL_EPOCH}
    params = from_dict(cls.Params, raw, prefix=f"tricks.{name}.")
    cls.check(params)
    return params


def parse_until_epoch(name: str, raw: Mapping[str, Any] | None) -> int | None:
    """The ``until_epoch`` of trick ``name`` (None when not given)."""
    if not isinstance(raw, Mapping) or raw.get(UNTIL_EPOCH) is None:
        return None
    value = raw[UNTIL_EPOCH]
    if not get_trick(name).stoppable:
        raise ConfigError(
            f"tricks.{name}.{UNTIL_EPOCH}: {name} does not act per step, so it cannot be "
            f"stopped after an epoch; remove {UNTIL_EPOCH}"
        )
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"tricks.{name}.{UNTIL_EPOCH}: must be an epoch number (0 or "
                          f"more), got {value!r}")
    return value


def _build(tricks: Mapping[str, Any]) -> list[Trick]:
    """Instances of the tricks of a config, sorted by (order, name)."""
    built = []
    for name, raw in tricks.items():
        trick = get_trick(name)(parse_params(name, raw))
        trick.until_epoch = parse_until_epoch(name, raw)
        built.append(trick)
    return sorted(built, key=lambda t: (t.order, t.name))


def validate_tricks(tricks: Mapping[str, Any], model_name: str | None = None) -> None:
    """Check names, parameters and combinations; raise ConfigError on the first problem.

    With ``model_name`` also check that the model can take every trick (``check_model``),
    each trick seeing the model as chosen by the model-selecting tricks before it.
    """
    built = _build(tricks)
    names = list(tricks)
    for i, name in enumerate(names):
        for other in names[i + 1:]:
            a, b = get_trick(name), get_trick(other)
            if other in a.conflicts or name in b.conflicts:
                reason = a.conflict_reason if other in a.conflicts else b.conflict_reason
                raise ConfigError(f"tricks: '{name}' and '{other}' cannot be combined"
                                  + (f": {reason}" if reason else ""))
    owner: dict[str, str] = {}
    for t in built:
        for key in t.model_options():
            if key in owner:
                raise ConfigError(f"tricks: '{owner[key]}' and '{t.name}' cannot be combined: "
                                  f"both set model option '{key}'")
            owner[key] = t.name
    if model_name is not None:
        for t in built:
            t.check_model(model_name)
            model_name = t.model_name(model_name)


class TrickSet:
    """The tricks of one run, applied through their hooks in a fixed, documented order."""

    def __init__(self, tricks: Mapping[str, Any], model_name: str | None = None) -> None:
        validate_tricks(tricks, model_name)
        self.tricks: list[Trick] = _build(tricks)
        groups: dict[str, list[Trick]] = {}
        for t in self.tricks:
            if t.batch_group:
                groups.setdefault(t.batch_group, []).append(t)
        #: Groups of per-batch alternatives (more than one member), in hook order.
        self.alternatives = {g: members for g, members in groups.items() if len(members) > 1}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.tricks)

    def __len__(self) -> int:
        return len(self.tricks)

    @property
    def wants_closure(self) -> bool:
        """Whether the optimizer step takes a closure (a trick sets ``closure``)."""
        return any(t.closure for t in self.tricks)

    def model_name(self, name: str) -> str:
        for t in self.tricks:
            name = t.model_name(name)
        return name

    def model_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for t in self.tricks:
            options.update(t.model_options())  # validate_tricks rejected two setting one
        return options

    def build_model(self, name: str, options: Mapping[str, Any], num_classes: int
                    ) -> nn.Module:
        """The model ``name`` with ``options`` as these tricks choose and set them (before
        ``apply_model``)."""
        from zoo.models import create_model

        return create_model(self.model_name(name), num_classes=num_classes,
                            **{**options, **self.model_options()})

    def resolve(self, facts: RunFacts) -> dict[str, dict[str, Any]]:
        """The settings tricks decide, as ``{setting: {value, trick}}`` (for config.json);
        a later trick's value wins."""
        out: dict[str, dict[str, Any]] = {}
        for t in self.tricks:
            for key, value in dataclasses.asdict(t.resolve(facts)).items():
                if value is not None:
                    out[key] = {"value": value, "trick": t.name}
        return out

    def resolved_lr(self, facts: RunFacts) -> float:
        """The learning rate after the tricks' ``resolve`` (the configured one without)."""
        return self.resolve(facts).get("lr", {"value": facts.lr})["value"]

    def train_image_size(self, size: int) -> int:
        for t in self.tricks:
            size = t.train_image_size(size)
        return size

    def train_sampler(self, dataset: Any, num_replicas: int, rank: int, seed: int) -> Any:
        """The first trick's training sampler, or None for the trainer's default."""
        for t in self.tricks:
            sampler = t.train_sampler(dataset, num_replicas, rank, seed)
            if sampler is not None:
                return sampler
        return None

    def apply_model(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        for t in self.tricks:
            model = t.apply_model(model, ctx)
        return model

    def param_groups(self, model: nn.Module, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for t in self.tricks:
            groups = t.param_groups(model, groups)
        return groups

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        for t in self.tricks:
            optimizer = t.wrap_optimizer(optimizer)
        return optimizer

    def transforms(self, pre: list[Any], post: list[Any]) -> tuple[list[Any], list[Any]]:
        for t in self.tricks:
            pre, post = t.transforms(pre, post)
        return pre, post

    def batch(
        self, images: torch.Tensor, targets: torch.Tensor, ctx: TrainContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        # One uniform draw per group of alternatives (among those still active), before
        # any trick's own draws.
        chosen = {}
        for group, members in self.alternatives.items():
            live = [t for t in members if t.active(ctx.epoch)]
            if len(live) > 1:
                chosen[group] = live[int(torch.randint(len(live), (1,),
                                                       generator=ctx.generator))]
        for t in self.tricks:
            if not t.active(ctx.epoch) or chosen.get(t.batch_group, t) is not t:
                continue
            images, targets = t.batch(images, targets, ctx)
        return images, targets

    def loss_kwargs(self, epoch: int = 0) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for t in self.tricks:
            if t.active(epoch):
                kwargs.update(t.loss_kwargs())
        return kwargs

    def criterion(self, ctx: TrainContext) -> Callable[..., torch.Tensor]:
        """The loss of epoch ``ctx.epoch``: ``fn(logits, targets, images)``, cross-entropy
        with the active tricks' ``loss_kwargs``, then their ``loss`` hooks in order."""
        from torch import nn

        ce = nn.CrossEntropyLoss(**self.loss_kwargs(ctx.epoch))

        def cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                          images: torch.Tensor) -> torch.Tensor:
            return ce(logits, targets)

        fn: Callable[..., torch.Tensor] = cross_entropy
        for t in self.tricks:
            if t.active(ctx.epoch):
                fn = t.loss(fn, ctx)
        return fn

    def epoch_start(self, ctx: TrainContext) -> None:
        for t in self.tricks:
            t.epoch_start(ctx)

    def epoch_end(self, ctx: TrainContext) -> None:
        for t in self.tricks:
            t.epoch_end(ctx)

    def after_backward(self, model: nn.Module, epoch: int = 0) -> None:
        for t in self.tricks:
            if t.active(epoch):
                t.after_backward(model)

    def after_step(self, model: nn.Module) -> None:
        for t in self.tricks:
            t.after_step(model)

    def eval_model(self, model: nn.Module) -> nn.Module:
        for t in self.tricks:
            model = t.eval_model(model)
        return model

    def state_dict(self) -> dict[str, Any]:
        return {t.name: t.state_dict() for t in self.tricks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for t in self.tricks:
            if t.name in state:
                t.load_state_dict(state[t.name])

    def audits(self) -> list[Audit]:
        return [t.audit() for t in self.tricks]

    def describe(self) -> list[dict[str, Any]]:
        return [{"trick": t.name, "params": dataclasses.asdict(t.params),
                 **({UNTIL_EPOCH: t.until_epoch} if t.until_epoch is not None else {})}
                for t in self.tricks]
