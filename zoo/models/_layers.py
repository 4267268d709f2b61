"""The layers and helpers the models share to honour the model options (their meaning and
validation: ``_options.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from zoo.models._options import check_option
from zoo.models.switchnorm import SwitchNorm2d, switchnorm_act_factory

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "hardswish": nn.Hardswish,
}

NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    "switchnorm": SwitchNorm2d,
}

#: The activation classes ``act`` replaces in a built model (see ``replace_act``).
REPLACEABLE_ACTS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish)


def act_layer(name: str) -> type[nn.Module]:
    """The activation class of an ``act`` value."""
    check_option("?", "act", name)
    return ACTIVATIONS[name]


def norm_layer(name: str) -> Callable[[int], nn.Module]:
    """The normalisation layer ``fn(num_features)`` of a ``norm`` value."""
    check_option("?", "norm", name)
    return NORMS[name]


def timm_norm_act_layer(name: str, act: str) -> Any:
    """The ``norm_layer`` to give timm models built from fused norm+act layers (ResNetV2,
    RegNet): ``None`` keeps the model's own BatchNormAct."""
    if norm_layer(name) is nn.BatchNorm2d:
        return None
    return switchnorm_act_factory(act_layer(act))


def replace_act(model: nn.Module, act: type[nn.Module]) -> nn.Module:
    """Swap every activation module of ``REPLACEABLE_ACTS`` in ``model`` for ``act``.

    For libraries whose constructors take no activation argument (torchvision's ResNet and
    MobileNets, timm's GhostNet). Keeps each module's ``inplace`` flag. Returns ``model``.
    """
    for name, child in model.named_children():
        if type(child) in REPLACEABLE_ACTS:
            if type(child) is not act:
                setattr(model, name, act(inplace=getattr(child, "inplace", False)))
        else:
            replace_act(child, act)
    return model


def drop_path_rates(rate: float, num_blocks: int) -> list[float]:
    """Per-block stochastic-depth rates by the linear decay rule of Huang et al. 2016:
    block ``l`` of ``L`` (1-based) drops with ``rate * l / L``; the deepest with ``rate``."""
    return [rate * (i + 1) / num_blocks for i in range(num_blocks)]


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """The residual blocks of ``model`` in module order: the modules with a per-block
    ``zero_init_last`` hook (ours and timm's blocks all have one)."""
    return [m for m in model.modules() if callable(getattr(m, "zero_init_last", None))]


def set_drop_path(model: nn.Module, rate: float) -> nn.Module:
    """Stochastic depth by :func:`drop_path_rates` on every residual block of a timm model
    built with ``drop_path_rate=0``: timm spreads ``linspace(0, rate, L)`` over its blocks
    (the first never drops), the zoo keeps the paper's ``rate * l / L`` for every model.
    Each block applies its ``drop_path`` module to the residual branch. Returns ``model``."""
    if rate <= 0:
        return model
    from timm.layers import DropPath

    blocks = residual_blocks(model)
    for block, p in zip(blocks, drop_path_rates(rate, len(blocks)), strict=True):
        if not hasattr(block, "drop_path"):
            raise TypeError(f"{type(block).__name__} has no drop_path attribute")
        block.drop_path = DropPath(p)
    return model


def kaiming_init(model: nn.Module) -> None:
    """He (fan-out) init of convolutions, γ = 1 and β = 0 in norm layers, as torchvision's
    ResNet does; linear layers keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm | SwitchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def timm_with_options(
    timm_name: str,
    num_classes: int = 1000,
    *,
    act: str = "relu",
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    zero_init_last: bool = False,
    norm: str = "batchnorm",
) -> nn.Module:
    """A timm model whose constructor takes the five options directly (ResNetV2, RegNet);
    stochastic depth follows the zoo's rule (:func:`set_drop_path`).

    ``zero_init_last`` is passed explicitly: timm turns zero-gamma on by default, our
    baselines must not."""
    import timm

    extra = {}
    if (layer := timm_norm_act_layer(norm, act)) is not None:
        extra["norm_layer"] = layer
    model = timm.create_model(
        timm_name,
        pretrained=False,
        num_classes=num_classes,
        act_layer=act_layer(act),
        drop_rate=drop_rate,
        drop_path_rate=0.0,  # set below by the paper's rule
        zero_init_last=zero_init_last,
        **extra,
    )
    return set_drop_path(model, drop_path_rate)
