"""The model zoo, tested registry-first: every registered model gets every test below, and
every option a model declares is checked to do what it claims (or to be refused when it
is not declared). Costs at 224 px are counted on the meta device (shapes only, no
arithmetic); everything that needs real numbers runs on small inputs.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import typer
from timm.layers import DropPath
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.ops import StochasticDepth
from typer.testing import CliRunner

from ablate.cli.models import models as models_command
from zoo.errors import UnknownNameError
from zoo.measure import count_macs, count_params
from zoo.models import KNOWN_OPTIONS, create_model, get_model_info, list_models
from zoo.models._layers import ACTIVATIONS, NORMS, REPLACEABLE_ACTS
from zoo.models._options import ACTIVATION_NAMES, NORM_NAMES
from zoo.models.catalog import MODELS
from zoo.models.switchnorm import SwitchNorm2d

ALL = list_models()
NUM_CLASSES = 10
NORM_MODULES = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm, SwitchNorm2d)
#: Pre-activation blocks end their branch with a convolution, not a BN: zero-γ zeroes it
#: (see zoo/models/preact_resnet.py for why zeroing that BN's γ would kill the block).
PREACT = ("resnet50v2", "resnet101v2")
#: The aten op each activation runs as (ReLU6 is hardtanh(0, 6)).
ACT_OPS = {"relu": "relu", "relu6": "hardtanh", "silu": "silu", "swish": "silu",
           "hardswish": "hardswish"}


def with_option(option: str) -> list[str]:
    return [n for n in ALL if option in get_model_info(n).options]


def side(name: str) -> int:
    return max(get_model_info(name).min_input, 32)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These tensors are tiny, so threads cost more than they save; and when other jobs
    share the 2 cores, OpenMP barriers made a 32 px ResNet-101 step take 13 s instead of
    0.2 s. Restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def default_model(name: str) -> nn.Module:
    """The default model on the CPU, built once per session (read-only use)."""
    torch.manual_seed(0)
    return create_model(name, num_classes=NUM_CLASSES)


def meta_model(name: str, num_classes: int = 1000, **options: Any) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, num_classes=num_classes, **options)


def norms_eval(model: nn.Module) -> nn.Module:
    """Train mode with every norm layer in eval: only dropout-like randomness remains."""
    model.train()
    for m in model.modules():
        if isinstance(m, NORM_MODULES):
            m.eval()
    return model


def classifier(model: nn.Module) -> nn.Module:
    """The last linear or convolutional layer: the classifier of every model here."""
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]


def classifier_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = classifier(model).register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0].detach().flatten()


def residual_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Modules with a per-block zero-γ hook, by qualified name."""
    return {n: m for n, m in model.named_modules()
            if n and callable(getattr(m, "zero_init_last", None))}


def zeroed(model: nn.Module) -> set[str]:
    """Names of weight tensors that are entirely zero."""
    return {n for n, p in model.named_parameters()
            if n.endswith("weight") and not p.detach().any()}


def drop_path_rates(model: nn.Module) -> list[float]:
    rates = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
    return rates + [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]


class OpRecorder(TorchDispatchMode):
    """Records the aten ops a forward runs (trailing '_' of in-place ops dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        self.ops.add(func.overloadpacket.__name__.rstrip("_"))
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------------------- registry


def test_zoo_has_every_model_of_the_issue() -> None:
    expected = {
        "resnet50", "resnet101", "resnet50v2", "resnet101v2", "resnext50_32x4d",
        "regnetx_4.0gf", "regnety_4.0gf", "regnety_6.4gf", "resnest50", "mobilenetv1",
        "mobilenetv2", "mobilenetv3_large", "mobilenetv3_small", "ghostnet_1.0",
        "ghostnet_1.3", "oct_resnet50", "lip_resnet50", "resnet18", "resnet18_cifar", "resnet20",
    }
    assert expected <= set(ALL)
    for name in ALL:
        info = get_model_info(name)
        assert info.paper and info.reference, name
        assert set(info.options) <= set(KNOWN_OPTIONS), name


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_small_input(name: str) -> None:
    model = default_model(name).train()
    x = torch.randn(2, 3, side(name), side(name))
    out = model(x)
    assert out.shape == (2, NUM_CLASSES)
    loss = F.cross_entropy(out, torch.tensor([0, 1]))
    assert torch.isfinite(loss)
    model.zero_grad(set_to_none=True)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: parameters unused in forward: {missing[:5]}"


@pytest.mark.parametrize("name", ALL)
def test_params_and_macs_match_reference(name: str) -> None:
    info = get_model_info(name)
    if info.ref_params_m is None and info.ref_macs_g is None:
        pytest.skip(f"{name} has no published 224 px reference")
    model = meta_model(name)
    if info.ref_params_m is not None:
        params_m = count_params(model) / 1e6
        assert params_m == pytest.approx(info.ref_params_m, rel=0.005), name
    if info.ref_macs_g is not None:
        macs_g = count_macs(model, 224) / 1e9
        assert macs_g == pytest.approx(info.ref_macs_g, rel=0.03), name


@pytest.mark.parametrize("name", ALL)
def test_defaults_are_the_plain_baseline(name: str) -> None:
    model = default_model(name)
    zero_norms = [n for n, m in model.named_modules()
                  if isinstance(m, NORM_MODULES) and m.weight is not None and not m.weight.any()]
    assert not zero_norms, f"{name}: zero-γ on by default: {zero_norms[:3]}"
    assert not [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
    assert not drop_path_rates(model), f"{name}: drop-path modules by default"
    # Behaviour, which also catches functional dropout: with the norms frozen, train mode
    # must compute exactly what eval mode does.
    x = torch.randn(2, 3, side(name), side(name))
    with torch.no_grad():
        expected = model.eval()(x)
        got = norms_eval(model)(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_channels_last_default_follows_the_convolutions(name: str) -> None:
    """channels_last by default on CUDA for dense convolutions only: grouped and depthwise
    convolutions (ResNeXt, RegNet, MobileNets, GhostNet, ResNeSt) can be slower in NHWC."""
    grouped = [m for m in meta_model(name, num_classes=NUM_CLASSES).modules()
               if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert get_model_info(name).channels_last == (not grouped), (name, len(grouped))


@pytest.mark.parametrize("name", ALL)
def test_undeclared_options_are_refused(name: str) -> None:
    info = get_model_info(name)
    for option in [o for o in KNOWN_OPTIONS if o not in info.options] + ["bogus"]:
        with pytest.raises(UnknownNameError, match=rf"'{name}'.*'{option}'"):
            create_model(name, **{option: 1})


def test_option_values_are_validated() -> None:
    with pytest.raises(UnknownNameError, match=r"'resnet20'.*'gelu'.*'act'"):
        create_model("resnet20", act="gelu")
    with pytest.raises(UnknownNameError, match=r"'resnet20'.*'layernorm'.*'norm'"):
        create_model("resnet20", norm="layernorm")
    with pytest.raises(ValueError, match="drop_rate"):
        create_model("resnet20", drop_rate=1.5)
    with pytest.raises(ValueError, match="zero_init_last"):
        create_model("resnet20", zero_init_last=1)


def test_every_constructor_is_declared_once() -> None:
    """The catalog names each model's constructor; every public constructor of the model
    modules (a function whose first parameter is ``num_classes``) has one declaration."""
    declared: dict[str, set[str]] = {}
    for info in MODELS:
        module, _, function = info.builder.partition(":")
        declared.setdefault(module, set()).add(function)
        assert callable(info.fn), info.name
    for module_name, functions in declared.items():
        module = importlib.import_module(module_name)
        constructors = {
            name for name, obj in vars(module).items()
            if inspect.isfunction(obj) and obj.__module__ == module_name
            and not name.startswith("_")
            and next(iter(inspect.signature(obj).parameters), None) == "num_classes"
        }
        assert constructors == functions, module_name
    assert len({info.name for info in MODELS}) == len(MODELS)


def test_option_values_are_the_layers_values() -> None:
    """The torch-free option values (what a config may say) are the ones the layers build."""
    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
    assert tuple(NORMS) == NORM_NAMES


def test_model_specific_arguments() -> None:
    assert get_model_info("oct_resnet50").arch_args == {"alpha": 0.125}
    meta_model("oct_resnet50", alpha=0.25)
    with pytest.raises(UnknownNameError, match=r"'resnet50'.*'alpha'"):
        create_model("resnet50", alpha=0.25)


# ----------------------------------------------------------------------------- options


def _act_cases() -> Iterator[Any]:
    for name in with_option("act"):
        for act in ("relu6", "silu", "hardswish"):
            yield pytest.param(name, act, id=f"{name}-{act}")


@pytest.mark.parametrize(("name", "act"), list(_act_cases()))
def test_act_option_replaces_every_activation(name: str, act: str) -> None:
    model = meta_model(name, act=act)
    kinds = {type(m) for m in model.modules() if isinstance(m, REPLACEABLE_ACTS)}
    assert kinds == {ACTIVATIONS[act]}, f"{name}: activations left: {kinds}"
    # What the forward runs, which also catches functional activations.
    recorder = OpRecorder()
    with recorder, torch.no_grad():
        model.eval()(torch.zeros(1, 3, 64, 64, device="meta"))
    act_ops = recorder.ops & set(ACT_OPS.values())
    assert act_ops == {ACT_OPS[act]}, f"{name}: activation ops run: {act_ops}"


@pytest.mark.parametrize("name", with_option("drop_rate"))
def test_drop_rate_option_drops_classifier_input(name: str) -> None:
    p = 0.5
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, drop_rate=p)
    x = torch.randn(2, 3, 64, 64)
    reference = classifier_input(model.eval(), x)
    dropped = classifier_input(norms_eval(model), x)
    live = reference != 0  # an untrained net in eval mode may carry tiny values
    assert live.sum() >= 64
    ratio = dropped[live] / reference[live]
    kept = (ratio - 1 / (1 - p)).abs() < 1e-3
    gone = ratio.abs() < 1e-6
    assert bool((kept | gone).all()), f"{name}: not a dropout of the classifier input"
    assert gone.float().mean().item() == pytest.approx(p, abs=0.15)


@pytest.mark.parametrize("name", with_option("drop_path_rate"))
def test_drop_path_option_adds_stochastic_depth(name: str) -> None:
    rate = 0.3
    rates = drop_path_rates(meta_model(name, drop_path_rate=rate))
    assert rates, f"{name}: no stochastic-depth modules"
    assert max(rates) == pytest.approx(rate)
    assert all(0 < r <= rate + 1e-6 for r in rates)  # timm's rates are float32
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, drop_path_rate=0.5)
    x = torch.randn(4, 3, side(name), side(name))
    with torch.no_grad():
        assert not torch.equal(norms_eval(model)(x), model.eval()(x))


@pytest.mark.parametrize("name", with_option("drop_path_rate"))
def test_every_model_drops_block_l_of_L_with_rate_l_over_L(name: str) -> None:
    """One stochastic-depth rule for every model, the paper's (Huang et al. 2016, sec. 4):
    p_l = rate * l / L over the L residual blocks in depth order (timm's own
    linspace(0, rate, L) would leave the first block undropped)."""
    rate = 0.3
    rates = drop_path_rates(meta_model(name, drop_path_rate=rate))
    n = len(rates)
    assert n >= 8, name
    expected = [rate * (i + 1) / n for i in range(n)]
    assert rates == pytest.approx(expected, rel=1e-6), name


def test_resnet18_is_torchvisions_standard_resnet18() -> None:
    import torchvision

    ours, ref = meta_model("resnet18"), torchvision.models.resnet18()
    assert count_params(ours) == count_params(ref) == 11_689_512
    assert count_macs(ours, 224) == count_macs(ref, 224)
    assert count_macs(ours, 224) / 1e9 == pytest.approx(1.814, abs=0.001)
    assert [tuple(p.shape) for p in ours.state_dict().values()] == \
        [tuple(p.shape) for p in ref.state_dict().values()]


def test_resnet18_cifar_keeps_the_small_image_stem() -> None:
    model = meta_model("resnet18_cifar", num_classes=10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)


@pytest.mark.parametrize(("options", "timm_name"), [
    ({"stem": "deep"}, "resnet50c"),
    ({"stem": "deep", "avg_down": True}, "resnet50d"),
])
def test_bag_of_tricks_tweaks_match_timm_counts(options: dict[str, Any], timm_name: str) -> None:
    import timm

    ours = meta_model("resnet50", **options)
    with torch.device("meta"):
        ref = timm.create_model(timm_name, pretrained=False)
    assert count_params(ours) == pytest.approx(count_params(ref), rel=0.005)
    assert count_macs(ours, 224) == pytest.approx(count_macs(ref, 224), rel=0.03)
    # The same tensors in the same order: the same architecture, not just the same size.
    assert sorted(tuple(p.shape) for p in ours.parameters()) == \
        sorted(tuple(p.shape) for p in ref.parameters())


def test_stride_1x1_moves_the_bottleneck_stride_and_keeps_the_output_size() -> None:
    """ResNet v1 (the paper's baseline of Bag of Tricks) strides the bottleneck's 1x1;
    ResNet-B (the default) its 3x3."""
    v1 = create_model("resnet50", num_classes=10, stride_1x1=True)
    b = create_model("resnet50", num_classes=10)
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert b.layer2[0].conv1.stride == (1, 1) and b.layer2[0].conv2.stride == (2, 2)
    assert count_macs(v1, 224) < count_macs(b, 224)  # the 3x3 runs at a quarter the size
    assert v1(torch.randn(1, 3, 64, 64)).shape == (1, 10)


@pytest.mark.parametrize("name", with_option("zero_init_last"))
def test_zero_init_last_zeroes_the_end_of_every_residual_branch(name: str) -> None:
    model = create_model(name, num_classes=NUM_CLASSES, zero_init_last=True)
    blocks = residual_blocks(model)
    assert blocks, f"{name}: no residual block exposes a zero_init_last() hook"
    new = zeroed(model) - zeroed(default_model(name))
    hit = {b for b in blocks for n in new if n.startswith(b + ".")}
    outside = [n for n in new if not any(n.startswith(b + ".") for b in blocks)]
    assert not outside, f"{name}: zeroed outside residual blocks: {outside[:3]}"
    assert hit == set(blocks), f"{name}: blocks left unzeroed: {sorted(set(blocks) - hit)[:3]}"
    modules = dict(model.named_modules())
    for n in new:
        owner = modules[n.rsplit(".", 1)[0]]
        if name in PREACT:
            assert n.endswith("conv3.weight"), n
        else:
            assert isinstance(owner, NORM_MODULES), f"{name}: zeroed a non-norm weight {n}"
    if name not in ("oct_resnet50",):  # octave blocks have one BN per frequency
        assert len(new) == len(blocks)


@pytest.mark.parametrize("name", with_option("norm"))
def test_norm_option_switchnorm_replaces_batchnorm(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, norm="switchnorm")
    assert not [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert any(isinstance(m, SwitchNorm2d) for m in model.modules())
    out = model.train()(torch.randn(2, 3, side(name), side(name)))
    out.sum().backward()
    assert torch.isfinite(out).all()


# ------------------------------------------------------------------ model-specific facts


def test_oct_resnet50_costs_less_as_alpha_grows() -> None:
    resnet50_macs = count_macs(meta_model("resnet50"), 224)
    resnet50_params = count_params(meta_model("resnet50"))
    macs = []
    for alpha in (0.0, 0.125, 0.25, 0.5, 0.75):
        model = meta_model("oct_resnet50", alpha=alpha)
        assert count_params(model) == resnet50_params  # OctConv splits, never adds, weights
        macs.append(count_macs(model, 224))
    assert macs[0] == resnet50_macs  # alpha 0 is ResNet-50
    assert all(a > b for a, b in itertools.pairwise(macs)), macs
    assert count_macs(meta_model("oct_resnet50"), 224) < resnet50_macs
    # A second, independent implementation on the same torchvision layout
    # (d-li14/octconv.pytorch, its ImageNet table): alpha 0.5, 25.557M and 2.367 GMACs.
    assert macs[3] / 1e9 == pytest.approx(2.367, abs=0.0005)


def test_switchnorm_reduces_to_each_of_its_statistics() -> None:
    """Independent reference: with one mixing logit dominant, SwitchNorm is IN, LN or BN."""
    torch.manual_seed(0)
    x = torch.randn(4, 6, 5, 5)
    norm = SwitchNorm2d(6)
    cases = {
        0: F.instance_norm(x, eps=norm.eps),
        1: F.layer_norm(x, x.shape[1:], eps=norm.eps),
        2: F.batch_norm(x, None, None, training=True, eps=norm.eps),
    }
    for index, expected in cases.items():
        with torch.no_grad():
            for logits in (norm.mean_weight, norm.var_weight):
                logits.fill_(-1e4)
                logits[index] = 0.0
        torch.testing.assert_close(norm.train()(x), expected, rtol=1e-4, atol=1e-4)
    # eval mode uses the running BN statistics
    assert not torch.equal(norm.running_mean, torch.zeros(6))
    norm.eval()(x)


# --------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("models")(models_command)
    app.command("noop")(lambda: None)  # two commands, so "models" is a sub-command
    return app


def test_models_cli_json(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["models", "--json", "--check", "mobilenetv3*"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["mobilenetv3_large", "mobilenetv3_small"]
    for r in rows:
        assert r["params_m"] == pytest.approx(r["ref_params_m"], rel=0.005)
        assert r["macs_g"] == pytest.approx(r["ref_macs_g"], rel=0.03)
        assert r["paper"] and r["options"] == ["act", "drop_rate"]


def test_models_cli_table_and_errors(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["models", "oct_resnet50"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "oct_resnet50" in result.output and "alpha=0.125" in result.output
    result = CliRunner().invoke(cli, ["models", "resnet5"])
    assert result.exit_code == 2
    assert "did you mean" in result.output
