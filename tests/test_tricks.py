"""Tricks against independent reference computations, and the trick registry's checks.

The registry-driven training of every trick (two steps, then a resume) is in
``test_tricks_train.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
import typer
from torch import nn
from torchvision import tv_tensors
from torchvision.ops import StochasticDepth
from typer.testing import CliRunner

from tests.conftest import ROOT
from zoo.config import RunConfig
from zoo.engine import build_optimizer, build_scheduler
from zoo.errors import ConfigError, UnknownNameError
from zoo.models import create_model, resnet_cifar
from zoo.models import resnet as tv_resnet
from zoo.models.switchnorm import SwitchNorm2d
from zoo.tricks import TrainContext, TrickSet, get_trick, list_tricks, validate_tricks
from zoo.tricks._ops import Lookahead, ModulatedDeformConv2d
from zoo.tricks.base import TOUCHES
from zoo.tricks.cutmix import cutmix_batch
from zoo.tricks.mixup import mixup_batch
from zoo.tricks.sync_bn import convert_sync_bn
from zoo.validate import build_config


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.9])
def test_label_smoothing_loss_equals_the_formula(eps: float) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 5, generator=g)
    targets = torch.randint(0, 5, (16,), generator=g)
    criterion = nn.CrossEntropyLoss(**TrickSet({"label_smoothing": {"smoothing": eps}})
                                    .loss_kwargs())
    logp = torch.log_softmax(logits, 1)
    q = torch.full_like(logp, eps / 5)
    q[torch.arange(16), targets] += 1 - eps
    assert criterion(logits, targets).item() == pytest.approx(-(q * logp).sum(1).mean().item(),
                                                              rel=1e-6)


def test_label_smoothing_smooths_soft_targets_too() -> None:
    logits = torch.randn(4, 3)
    soft = torch.softmax(torch.randn(4, 3), 1)
    eps = 0.2
    criterion = nn.CrossEntropyLoss(**TrickSet({"label_smoothing": {"smoothing": eps}})
                                    .loss_kwargs())
    q = soft * (1 - eps) + eps / 3
    ref = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    assert criterion(logits, soft).item() == pytest.approx(ref.item(), rel=1e-6)


def test_registry_names_and_errors() -> None:
    assert "label_smoothing" in list_tricks()
    assert get_trick("label_smoothing").paper
    with pytest.raises(UnknownNameError, match="did you mean 'label_smoothing'"):
        validate_tricks({"labelsmoothing": {}})
    with pytest.raises(ConfigError, match="smoothing: must be in"):
        validate_tricks({"label_smoothing": {"smoothing": -0.1}})
    with pytest.raises(ConfigError, match="expected a number"):
        validate_tricks({"label_smoothing": {"smoothing": "a lot"}})


def test_default_parameters_and_audit() -> None:
    tricks = TrickSet({"label_smoothing": None})
    assert tricks.loss_kwargs() == {"label_smoothing": 0.1}
    assert not tricks.audits()[0].effective  # no batch trained yet: nothing observed
    logits, targets = torch.randn(2, 10), torch.tensor([1, 2])
    tricks.criterion(_ctx())(logits, targets, torch.empty(0))
    (audit,) = tricks.audits()
    assert audit.effective and "0.1" in audit.summary
    off_set = TrickSet({"label_smoothing": {"smoothing": 0.0}})
    off_set.criterion(_ctx())(logits, targets, torch.empty(0))
    assert not off_set.audits()[0].effective


# --------------------------------------------------------------------------- shared helpers

BN = nn.modules.batchnorm._BatchNorm


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tests share two cores with other work: more threads only oversubscribe them."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ctx(seed: int = 0, world_size: int = 1, device: str = "cpu") -> TrainContext:
    return TrainContext(num_classes=10, world_size=world_size, device=torch.device(device),
                        epochs=1, steps_per_epoch=1,
                        generator=torch.Generator().manual_seed(seed))


def _built(tricks: dict, model_name: str, ctx: TrainContext | None = None
           ) -> tuple[TrickSet, nn.Module]:
    """A model built and changed the way the trainer does it."""
    ts = TrickSet(tricks, model_name=model_name)
    model = create_model(ts.model_name(model_name), num_classes=10, **ts.model_options())
    ctx = ctx or _ctx()
    ctx.model_name, ctx.model_options = ts.model_name(model_name), ts.model_options()
    return ts, ts.apply_model(model, ctx)


# --------------------------------------------------------------------------- the registry


#: Parameters without a usable default (a teacher's run directory), for registry-wide tests.
REQUIRED: dict[str, dict] = {"distillation": {"teacher": "runs/teacher"}}


def test_every_trick_declares_its_facts() -> None:
    for name in list_tricks():
        cls = get_trick(name)
        assert cls.name == name
        assert cls.paper, name
        assert cls.touches and set(cls.touches) <= set(TOUCHES), name
        assert dataclasses.is_dataclass(cls.Params), name
        # The module docstring cites the paper: its first author and year.
        doc = sys.modules[cls.__module__].__doc__ or ""
        author, year = cls.paper.split()[0].strip(","), re.search(r"\d{4}", cls.paper)
        assert author in doc and year and year.group() in doc, name
        for other in cls.conflicts:
            assert other in list_tricks(), (name, other)
            assert name in get_trick(other).conflicts, f"{other} should list {name} too"
        TrickSet({name: REQUIRED.get(name)})  # the defaults are valid


def test_validating_tricks_imports_no_torch() -> None:
    """``ablate run`` validates a study's tricks before launching its runs; importing torch
    for that costs seconds of start-up. Hooks import torch when they run, not before."""
    code = """if True:
        import sys
        from zoo.tricks import TrickSet, get_trick, list_tricks, parse_params, validate_tricks

        required = {"distillation": {"teacher": "runs/teacher"}}
        for name in list_tricks():
            cls = get_trick(name)
            assert cls.name == name and cls.paper and cls.touches and cls.Params
            cls.check(parse_params(name, required.get(name)))
            cls.check_model("resnet50")
            validate_tricks({name: required.get(name)}, "resnet50")
        ts = TrickSet({"octconv": {"alpha": 0.25}, "zero_gamma": None, "swish": None,
                       "dropout": None, "stochastic_depth": None, "mixup": None,
                       "cutmix": None, "cutout": None, "lookahead": None,
                       "label_smoothing": None, "autoaugment": None, "ema": None,
                       "sync_bn": None}, "resnet50")
        assert ts.model_name("resnet50") == "oct_resnet50"
        assert set(ts.model_options()) == {"alpha", "zero_init_last", "act", "drop_rate",
                                           "drop_path_rate"}
        ts.describe()
        print(sorted(m for m in ("torch", "torchvision", "timm") if m in sys.modules))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("a", "b"), [
    ("relu6", "swish"), ("swish", "relu6"), ("octconv", "lip"), ("octconv", "preactivation"),
    ("preactivation", "lip"), ("deformable_conv", "octconv"), ("cutout", "random_erasing"),
    ("autoaugment", "randaugment"), ("trivialaugment", "autoaugment"),
    ("sync_bn", "switchnorm"),
])
def test_combinations_that_make_no_sense_name_both_tricks(a: str, b: str) -> None:
    with pytest.raises(ConfigError, match=f"'{a}' and '{b}' cannot be combined"):
        validate_tricks({a: None, b: None})


@pytest.mark.parametrize(("tricks", "words"), [
    ({"mixup": {"alpha": -0.2}}, ["tricks.mixup.alpha", "positive"]),
    ({"cutmix": {"alpha": 0}}, ["tricks.cutmix.alpha"]),
    ({"mixup": {"alpha": "a lot"}}, ["tricks.mixup.alpha", "expected a number"]),
    ({"lookahead": {"k": 0}}, ["tricks.lookahead.k"]),
    ({"lookahead": {"alpha": 1.5}}, ["tricks.lookahead.alpha"]),
    ({"ema": {"decay": 1.0}}, ["tricks.ema.decay"]),
    ({"randaugment": {"magnitude": 31}}, ["tricks.randaugment.magnitude"]),
    ({"cutout": {"size": 8, "scale": 0.5}}, ["tricks.cutout", "not both"]),
    ({"random_erasing": {"scale": [0.5, 0.1]}}, ["tricks.random_erasing.scale"]),
    ({"dropout": {"rate": 1.0}}, ["tricks.dropout.rate"]),
    ({"stochastic_depth": {"rate": -0.1}}, ["tricks.stochastic_depth.rate"]),
    ({"octconv": {"alpha": 1.0}}, ["tricks.octconv.alpha"]),
    ({"gradient_centralization": {"conv_only": 1}}, ["conv_only", "true or false"]),
    ({"zero_gamma": {"on": True}}, ["unknown key 'tricks.zero_gamma.on'"]),
    ({"mixupp": {}}, ["unknown trick 'mixupp'", "'mixup'"]),
])
def test_bad_parameters_name_trick_and_parameter(tricks: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        validate_tricks(tricks)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("trick", "model", "words"), [
    ("zero_gamma", "mobilenetv2", ["tricks.zero_gamma", "mobilenetv2", "zero_init_last"]),
    ("stochastic_depth", "ghostnet_1.0", ["tricks.stochastic_depth", "ghostnet_1.0"]),
    ("preactivation", "mobilenetv2", ["tricks.preactivation", "mobilenetv2"]),
    ("octconv", "resnet101", ["tricks.octconv", "resnet101"]),
    ("lip", "resnet20", ["tricks.lip", "resnet20"]),
    ("deformable_conv", "mobilenetv2", ["tricks.deformable_conv", "mobilenetv2"]),
])
def test_a_model_that_cannot_take_the_trick_is_a_config_error(
    trick: str, model: str, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"model": model, "tricks": {trick: {}}})
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("tricks", "model", "selected", "options"), [
    ({"octconv": None}, "resnet50", "oct_resnet50", {"alpha": 0.125}),
    ({"octconv": {"alpha": 0.25}, "zero_gamma": None}, "resnet50", "oct_resnet50",
     {"alpha": 0.25, "zero_init_last": True}),
    ({"lip": None}, "resnet50", "lip_resnet50", {}),
    ({"preactivation": None}, "resnet50", "resnet50v2", {}),
    ({"preactivation": None, "swish": None}, "resnet101", "resnet101v2", {"act": "silu"}),
    ({"preactivation": None}, "resnet50v2", "resnet50v2", {}),
])
def test_model_selectors_choose_the_variant(tricks: dict, model: str, selected: str,
                                            options: dict) -> None:
    ts = TrickSet(tricks, model_name=model)
    assert ts.model_name(model) == selected
    assert ts.model_options() == options
    audit = next(a for a in ts.audits() if a.trick in ("octconv", "lip", "preactivation"))
    assert selected in audit.summary


def test_tricks_checked_against_the_selected_model() -> None:
    # oct_resnet50 declares zero_init_last: fine; deformable_conv on it is the conflict.
    validate_tricks({"octconv": None, "zero_gamma": None}, "resnet50")
    with pytest.raises(ConfigError, match="'deformable_conv' and 'octconv'"):
        validate_tricks({"deformable_conv": None, "octconv": None}, "resnet50")
    validate_tricks({"preactivation": None, "deformable_conv": None}, "resnet101")


def test_ablate_tricks_lists_parameters_defaults_touches_and_paper() -> None:
    from ablate.cli.tricks import tricks

    app = typer.Typer()
    app.command()(tricks)
    result = CliRunner().invoke(app, ["--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert set(rows) == set(list_tricks())
    assert rows["mixup"]["params"] == [{"name": "alpha", "type": "float", "default": 0.2}]
    assert {p["name"]: p["default"] for p in rows["randaugment"]["params"]} == {
        "num_ops": 2, "magnitude": 9}
    assert rows["lookahead"]["touches"] == ["optimizer"]
    assert "Zhang et al. 2019" in rows["lookahead"]["paper"]
    assert rows["relu6"]["conflicts"] == ["swish"]
    orders = [r["order"] for r in json.loads(result.output)]
    assert orders == sorted(orders)
    table = CliRunner().invoke(app, [])
    assert table.exit_code == 0 and "gradient_centralization" in table.output


# --------------------------------------------------------------------------- batch tricks


def _labelled_batch(n: int = 16, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_mixup_mixes_images_and_targets_by_the_same_lambda(alpha: float) -> None:
    x, y = _labelled_batch()
    out = mixup_batch(x, y, 10, alpha, torch.Generator().manual_seed(3))
    lam, j = out.lam, torch.arange(16).roll(1)  # sample i is paired with i - 1
    assert torch.allclose(out.images, lam * x + (1 - lam) * x[j], atol=1e-6)
    onehot = nn.functional.one_hot(y, 10).float()
    assert torch.allclose(out.targets, lam * onehot + (1 - lam) * onehot[j], atol=1e-6)
    assert out.targets.shape == (16, 10) and out.targets.sum(1).allclose(torch.ones(16))
    # The same generator state gives the same batch: no hidden randomness.
    again = mixup_batch(x, y, 10, alpha, torch.Generator().manual_seed(3))
    assert again.lam == lam and torch.equal(again.images, out.images)
    assert mixup_batch(x, y, 10, alpha, torch.Generator().manual_seed(4)).lam != lam


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_mixup_lambda_follows_beta_alpha_alpha(alpha: float) -> None:
    g = torch.Generator().manual_seed(0)
    x, y = _labelled_batch(2, 1)
    lams = torch.tensor([mixup_batch(x, y, 10, alpha, g).lam for _ in range(600)])
    var = 1 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1/(4(2a+1))
    assert lams.mean().item() == pytest.approx(0.5, abs=4 * math.sqrt(var / 600))
    assert lams.var().item() == pytest.approx(var, rel=0.2)


@pytest.mark.parametrize(("alpha", "seed"), [(0.5, 0), (1.0, 1), (1.0, 2), (2.0, 3)])
def test_cutmix_box_area_matches_the_target_weight(alpha: float, seed: int) -> None:
    n, h, w = 6, 12, 16
    # Each image is one distinct constant, so a pixel shows which image it came from.
    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, h, w).clone()
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    out = cutmix_batch(x, y, 10, alpha, torch.Generator().manual_seed(seed))
    x1, y1, x2, y2 = out.box  # type: ignore[misc]
    pasted = out.images != x
    area = int(pasted[0, 0].sum())
    assert area == (x2 - x1) * (y2 - y1)
    for i in range(n):  # the same box in every image, filled from the previous image
        assert int(pasted[i, 0].sum()) == area
        assert (out.images[i][pasted[i]] == (i - 1) % n).all()
    assert out.lam == pytest.approx(1 - area / (h * w))
    for i in range(n):
        assert out.targets[i, i] == pytest.approx(out.lam)
        assert out.targets[i, (i - 1) % n] == pytest.approx(1 - out.lam)


def test_mixup_and_cutmix_together_switch_per_batch_half_and_half() -> None:
    x, y = _labelled_batch(8, 8)
    ts = TrickSet({"mixup": {"alpha": 1.0}, "cutmix": None})
    ctx = _ctx(seed=5)
    reference = torch.Generator().manual_seed(5)
    kinds = []
    for _ in range(200):
        choice = int(torch.randint(2, (1,), generator=reference))  # the same draw, replayed
        images, targets = ts.batch(x, y, ctx)
        ts.after_step(nn.Identity())
        expected = (mixup_batch if choice == 0 else cutmix_batch)(
            x, y, 10, 1.0, reference)
        assert torch.equal(images, expected.images) and torch.equal(targets, expected.targets)
        kinds.append(choice)
    assert 0.4 < sum(kinds) / len(kinds) < 0.6
    audits = {a.trick: a for a in ts.audits()}
    shares = {t: a.details["batches"] for t, a in audits.items()}
    assert shares["mixup"] + shares["cutmix"] == 200
    assert shares["cutmix"] == sum(kinds)
    assert "% of batches" in audits["mixup"].summary
    (alone,) = TrickSet({"mixup": None}).audits()
    assert not alone.effective  # no batch seen yet


def test_mixed_targets_are_smoothed_by_label_smoothing() -> None:
    x, y = _labelled_batch()
    ts = TrickSet({"mixup": None, "label_smoothing": {"smoothing": 0.2}})
    _, soft = ts.batch(x, y, _ctx())
    logits = torch.randn(16, 10)
    q = soft * 0.8 + 0.2 / 10
    ref = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    got = nn.CrossEntropyLoss(**ts.loss_kwargs())(logits, soft)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)


# --------------------------------------------------------------------------- image transforms


def _ops(trick: str, params: dict | None = None) -> tuple[list, list]:
    return TrickSet({trick: params}).transforms([], [])


def _erased(image: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return (out != image).any(0)


@pytest.mark.parametrize(("params", "side"), [
    ({"size": 4}, 4), ({"size": 5}, 5), ({"scale": 0.5}, 8), ({}, 8), ({"scale": 0.25}, 4),
])
def test_cutout_zeroes_a_square_of_the_configured_side_clipped_at_the_border(
    params: dict, side: int
) -> None:
    pre, post = _ops("cutout", params)
    assert pre == [] and len(post) == 1
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.rand(3, 16, 16) + 1.0)  # no pixel is 0 before
    whole = 0
    for _ in range(60):
        out = post[0](image)
        erased = _erased(image, out)
        assert (out[:, erased] == 0).all()
        rows, cols = erased.any(1).nonzero().flatten(), erased.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert int(erased.sum()) == h * w  # one rectangle
        # The square's side, or less where it was clipped at the image border.
        assert h == side or rows[0] == 0 or rows[-1] == 15
        assert w == side or cols[0] == 0 or cols[-1] == 15
        assert h <= side and w <= side
        whole += h * w == side * side
    assert whole > 10


def test_cutout_probability() -> None:
    (op,) = _ops("cutout", {"size": 4, "p": 0.5})[1]
    torch.manual_seed(0)
    image = torch.ones(3, 8, 8)
    hits = sum(bool(_erased(image, op(image)).any()) for _ in range(400))
    assert 160 < hits < 240


@pytest.mark.parametrize(("scale", "value"), [(0.04, "zero"), (0.16, "random"),
                                              (0.25, "random"), (0.36, "zero")])
def test_random_erasing_erases_the_configured_area(scale: float, value: str) -> None:
    pre, post = _ops("random_erasing", {"p": 1.0, "scale": [scale, scale],
                                        "ratio": [1.0, 1.0], "value": value})
    assert pre == [] and len(post) == 1
    torch.manual_seed(1)
    image = tv_tensors.Image(torch.full((3, 20, 20), 5.0))
    side = round(math.sqrt(scale * 400))
    for _ in range(20):
        out = post[0](image)
        assert out.shape == image.shape and out.dtype == image.dtype
        assert int(_erased(image, out).sum()) == side * side
        if value == "zero":
            assert (out[:, _erased(image, out)] == 0).all()


def test_random_erasing_probability() -> None:
    (op,) = _ops("random_erasing", {"p": 0.25})[1]
    torch.manual_seed(0)
    image = torch.ones(3, 16, 16)
    hits = sum(bool(_erased(image, op(image)).any()) for _ in range(400))
    assert 70 < hits < 130


@pytest.mark.parametrize(("trick", "params"), [
    ("random_rotation", None), ("random_rotation", {"degrees": 45}),
    ("autoaugment", None), ("autoaugment", {"policy": "cifar10"}),
    ("autoaugment", {"policy": "svhn"}), ("randaugment", None),
    ("randaugment", {"num_ops": 1, "magnitude": 20}), ("trivialaugment", None),
])
def test_augment_tricks_change_the_image_and_keep_shape_and_dtype(
    trick: str, params: dict | None
) -> None:
    pre, post = _ops(trick, params)
    assert post == [] and len(pre) == 1
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    changed = 0
    for _ in range(10):
        image = tv_tensors.Image(torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8,
                                               generator=g))
        out = pre[0](image)
        assert out.shape == image.shape and out.dtype == torch.uint8
        changed += not torch.equal(out, image)
    assert changed >= 7


@pytest.mark.parametrize("degrees", [10.0, 30.0])
def test_random_rotation_stays_within_the_configured_angle(degrees: float) -> None:
    (op,) = _ops("random_rotation", {"degrees": degrees})[0]
    torch.manual_seed(0)
    image = torch.zeros(1, 41, 41, dtype=torch.uint8)
    image[0, 20, 35] = 255  # 15 px right of the centre
    angles = []
    for _ in range(60):
        out = op(image)[0].float()
        yx = (out == out.max()).nonzero().float().mean(0)
        angles.append(math.degrees(math.atan2(-(yx[0] - 20).item(), (yx[1] - 20).item())))
    assert max(abs(a) for a in angles) <= degrees + 4  # one pixel at radius 15: ~4 degrees
    assert min(angles) < -degrees / 3 and max(angles) > degrees / 3


# --------------------------------------------------------------------------- model tricks


def _pooled_dropout_fraction(model: nn.Module, rate: float) -> float:
    drop = next(m for m in model.modules() if isinstance(m, nn.Dropout) and m.p == rate)
    return float((drop.train()(torch.ones(200, 100)) == 0).float().mean())


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.6])
def test_dropout_drops_the_pooled_features_at_the_rate(rate: float) -> None:
    ts, model = _built({"dropout": {"rate": rate}}, "resnet20")
    assert _pooled_dropout_fraction(model, rate) == pytest.approx(rate, abs=0.02)
    (audit,) = ts.audits()
    assert audit.effective and f"p={rate}" in audit.summary
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model(x), model(x))


def test_dropout_on_a_model_without_classifier_dropout_says_no_effect() -> None:
    ts = TrickSet({"dropout": None})
    ts.apply_model(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), _ctx())
    (audit,) = ts.audits()
    assert not audit.effective and "no effect" in audit.summary
    _, timm_head = _built({"dropout": None}, "mobilenetv1")  # timm: F.dropout in the head
    assert getattr(timm_head, "drop_rate", None) == 0.3


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_stochastic_depth_drops_branches_at_the_rate_in_training_only(rate: float) -> None:
    ts, model = _built({"stochastic_depth": {"rate": rate}}, "resnet20")
    layers = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    blocks = [m for m in model.modules() if isinstance(m, resnet_cifar.BasicBlock)]
    assert len(layers) == len(blocks) == 9
    # Huang et al.: block l of L drops with rate * l / L.
    assert [m.p for m in layers] == pytest.approx([rate * (i + 1) / 9 for i in range(9)])
    ones = torch.ones(20000, 1, 1, 1)
    for m in layers:
        m.train()
        dropped = float((m(ones) == 0).float().mean())
        assert dropped == pytest.approx(m.p, abs=4 * math.sqrt(m.p * (1 - m.p) / 20000) + 1e-3)
        kept = m(ones)
        assert torch.allclose(kept[kept != 0], torch.tensor(1 / (1 - m.p)))
        m.eval()
        assert torch.equal(m(ones), ones)
    (audit,) = ts.audits()
    assert audit.effective and "9 residual branches" in audit.summary


def _blocks(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(block, its last BN), counted from the block classes themselves."""
    out = []
    for m in model.modules():
        if isinstance(m, resnet_cifar.BasicBlock | tv_resnet.BasicBlock):
            out.append((m, m.bn2))
        elif isinstance(m, tv_resnet.Bottleneck):
            out.append((m, m.bn3))
    return out


@pytest.mark.parametrize(("model_name", "n_blocks"), [("resnet20", 9), ("resnet18", 8),
                                                      ("resnet18_cifar", 8), ("resnet50", 16)])
def test_zero_gamma_zeroes_exactly_the_last_bn_of_each_residual_block(
    model_name: str, n_blocks: int
) -> None:
    ts, model = _built({"zero_gamma": None}, model_name)
    blocks = _blocks(model)
    assert len(blocks) == n_blocks
    last = {id(bn) for _, bn in blocks}
    zeroed = [m for m in model.modules() if isinstance(m, BN) and not m.weight.any()]
    assert {id(m) for m in zeroed} == last
    for block, _ in blocks:  # exactly one per block
        assert sum(1 for m in block.modules() if isinstance(m, BN) and not m.weight.any()) == 1
    (audit,) = ts.audits()
    assert audit.summary.startswith(f"zero_gamma: {n_blocks} BN weights set to 0")


@pytest.mark.parametrize(("trick", "act"), [("relu6", nn.ReLU6), ("swish", nn.SiLU)])
@pytest.mark.parametrize("model_name", ["resnet20", "resnet50v2", "mobilenetv3_small"])
def test_activation_tricks_leave_no_plain_relu(trick: str, act: type, model_name: str
                                               ) -> None:
    ts, model = _built({trick: None}, model_name)
    assert not any(type(m) is nn.ReLU for m in model.modules())
    n = sum(1 for m in model.modules() if type(m) is act)
    assert n > 0
    (audit,) = ts.audits()
    assert audit.effective and f"{n} activations are {act.__name__}, 0 plain ReLU" in \
        audit.summary


def test_switchnorm_replaces_every_batchnorm() -> None:
    plain = create_model("resnet20", num_classes=10)
    n_bn = sum(1 for m in plain.modules() if isinstance(m, BN))
    ts, model = _built({"switchnorm": None}, "resnet20")
    assert not any(isinstance(m, BN) for m in model.modules())
    assert sum(1 for m in model.modules() if isinstance(m, SwitchNorm2d)) == n_bn == 21
    assert ts.audits()[0].summary == "switchnorm: 21 normalisation layers are SwitchNorm, " \
                                     "0 BatchNorm left"


@pytest.mark.parametrize("model_name", ["resnet20", "resnet50v2"])
def test_sync_bn_converts_every_batchnorm(model_name: str) -> None:
    model = create_model(model_name, num_classes=10)
    kinds = [(type(m).__name__, getattr(m, "act", None).__class__)
             for m in model.modules() if isinstance(m, BN)]
    converted = convert_sync_bn(copy.deepcopy(model))
    synced = [m for m in converted.modules() if isinstance(m, BN)]
    assert len(synced) == len(kinds) > 0
    assert all(isinstance(m, nn.SyncBatchNorm) for m in synced)
    # timm's fused BN+activation layers keep their activation.
    assert [getattr(m, "act", None).__class__ for m in synced] == [k[1] for k in kinds]
    ts = TrickSet({"sync_bn": None})
    same = ts.apply_model(model, _ctx(world_size=2, device="cuda"))
    (audit,) = ts.audits()
    assert audit.effective and audit.summary == f"sync_bn: {len(kinds)} BatchNorm layers " \
                                                "converted"
    assert sum(1 for m in same.modules() if isinstance(m, nn.SyncBatchNorm)) == len(kinds)


def test_sync_bn_says_no_effect_at_world_size_1_and_on_cpu() -> None:
    for ctx, why in [(_ctx(), "world size 1"), (_ctx(world_size=2), "on cpu")]:
        ts = TrickSet({"sync_bn": None})
        model = ts.apply_model(create_model("resnet20", num_classes=10), ctx)
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
        (audit,) = ts.audits()
        assert not audit.effective and "no effect" in audit.summary and why in audit.summary


def _x(n: int = 2, size: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize(("model_name", "expected"), [("resnet18_cifar", 12), ("resnet50", 13)])
def test_deformable_conv_starts_as_the_plain_network(model_name: str, expected: int) -> None:
    torch.manual_seed(0)
    plain = create_model(model_name, num_classes=10).eval()
    # Every 3x3 convolution of the residual blocks of stages 3-5, counted from the blocks.
    convs = [c for layer in (plain.layer2, plain.layer3, plain.layer4) for block in layer
             for c in (block.conv1, block.conv2, getattr(block, "conv3", None))
             if isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3)]
    assert len(convs) == expected
    ts = TrickSet({"deformable_conv": None}, model_name=model_name)
    model = ts.apply_model(copy.deepcopy(plain), _ctx()).eval()
    deform = [m for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
    assert len(deform) == expected
    size = 8 if model_name == "resnet18_cifar" else 32
    x = _x(2, size)
    assert torch.allclose(model(x), plain(x), atol=1e-4, rtol=1e-4)
    model.train()
    nn.functional.cross_entropy(model(x), torch.tensor([1, 2])).backward()
    assert all(m.offset_mask.weight.grad.abs().sum() > 0 for m in deform)  # offsets learn
    (audit,) = ts.audits()
    assert audit.summary.startswith(f"deformable_conv: {expected} 3x3 convolutions")


def test_deformable_conv_macs_are_the_plain_networks_plus_the_offset_convolutions() -> None:
    """A deformable convolution costs what the plain one it replaces costs (counted as
    fvcore and mmcv count DCN), and its offset/mask convolution adds 27 output channels
    of a 3x3 convolution over the same input; FlopCounterMode alone counted the
    deformable convolutions as zero."""
    from zoo.measure import count_macs

    plain = create_model("resnet18_cifar", num_classes=10).eval()
    model = TrickSet({"deformable_conv": None}, "resnet18_cifar").apply_model(
        copy.deepcopy(plain), _ctx()).eval()
    outputs: dict[nn.Module, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda mod, _, out: outputs.__setitem__(mod, out.shape))
             for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
    size = 32
    model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    assert len(outputs) == 12
    # By hand: each offset_mask conv is C_in x 3 x 3 MACs for each of its 27 x H x W outputs.
    offsets = sum(m.in_channels * 9 * 27 * shape[-2] * shape[-1]
                  for m, shape in outputs.items())
    assert count_macs(model, size) == count_macs(plain, size) + offsets


def test_deformable_conv_survives_nan_offsets() -> None:
    conv = ModulatedDeformConv2d(nn.Conv2d(4, 4, 3, padding=1))
    with torch.no_grad():
        conv.offset_mask.bias.fill_(float("nan"))
    conv(torch.randn(2, 4, 6, 6))  # torchvision's CPU kernel would crash the process


# --------------------------------------------------------------------------- optimisation


@pytest.mark.parametrize("model_name", ["resnet20", "resnet50v2", "lip_resnet50"])
def test_no_bias_decay_decays_exactly_the_conv_and_linear_weights(model_name: str) -> None:
    ts, model = _built({"no_bias_decay": None}, model_name)
    cfg = RunConfig()
    opt = build_optimizer(model, cfg, ts)
    weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    undecayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed == weights
    assert undecayed == {id(p) for p in model.parameters()} - weights
    assert all(g["weight_decay"] == cfg.optim.weight_decay
               for g in opt.param_groups if g["weight_decay"] > 0)
    (audit,) = ts.audits()
    assert audit.summary == (f"no_bias_decay: {len(undecayed)} tensors without weight decay, "
                             f"{len(decayed)} with")


@pytest.mark.parametrize("conv_only", [True, False])
def test_gradient_centralization_centres_each_weight_gradient(conv_only: bool) -> None:
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10)
    nn.functional.cross_entropy(model(_x(4)), torch.tensor([0, 1, 2, 3])).backward()
    raw = {n: p.grad.clone() for n, p in model.named_parameters()}
    ts = TrickSet({"gradient_centralization": {"conv_only": conv_only}})
    ts.after_backward(model)
    centred = 0
    for name, p in model.named_parameters():
        g = raw[name]
        if p.ndim == 4 or (p.ndim == 2 and not conv_only):
            mean = g.mean(dim=tuple(range(1, g.ndim)), keepdim=True)
            assert torch.allclose(p.grad, g - mean, atol=1e-7)
            # zero mean over (in, kh, kw) for every output channel
            per_out = p.grad.mean(dim=tuple(range(1, g.ndim)))
            assert per_out.abs().max() < 1e-6 * max(g.abs().max().item(), 1.0)
            centred += 1
        else:
            assert torch.equal(p.grad, g)
    assert centred == 21 + (0 if conv_only else 1)
    (audit,) = ts.audits()
    assert f"{centred} " in audit.summary


def _quadratic_steps(opt: torch.optim.Optimizer, w: nn.Parameter, target: torch.Tensor,
                     steps: int, scaler: torch.amp.GradScaler | None = None) -> None:
    for _ in range(steps):
        loss = ((w - target) ** 2).sum()
        opt.zero_grad()
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            scaler.step(opt)
            scaler.update()


@pytest.mark.parametrize(("k", "alpha", "lr"), [(5, 0.5, 0.1), (3, 0.8, 0.05), (1, 0.3, 0.2)])
def test_lookahead_slow_weights_follow_the_formula(k: int, alpha: float, lr: float) -> None:
    w0, target = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, 0.5, 0.5])
    w = nn.Parameter(w0.clone())
    ts = TrickSet({"lookahead": {"k": k, "alpha": alpha}})
    opt = ts.wrap_optimizer(torch.optim.SGD([w], lr=lr))
    assert isinstance(opt, torch.optim.Optimizer)
    # By hand: plain SGD on (w - t)^2 is fast = fast - lr * 2 (fast - t).
    slow, fast = w0.clone(), w0.clone()
    for cycle in (1, 2):
        for _ in range(k):
            fast = fast - lr * 2 * (fast - target)
        slow = slow + alpha * (fast - slow)
        fast = slow.clone()
        _quadratic_steps(opt, w, target, k)
        assert torch.allclose(opt.slow_weights()[0], slow, atol=1e-6), cycle  # type: ignore[attr-defined]
        assert torch.allclose(w.detach(), slow, atol=1e-6)
    (audit,) = ts.audits()
    assert audit.summary.startswith("lookahead: 2 slow updates")


def test_lookahead_with_grad_scaler_scheduler_and_a_weights_only_checkpoint() -> None:
    target = torch.tensor([0.5, 0.5])

    def fresh() -> tuple[nn.Parameter, Lookahead]:
        w = nn.Parameter(torch.tensor([1.0, -1.0]))
        return w, Lookahead(torch.optim.SGD([w], lr=0.1, momentum=0.9), k=3, alpha=0.5)

    w_ref, ref = fresh()
    _quadratic_steps(ref, w_ref, target, 7)
    # GradScaler.unscale_/step work on it and give the same weights (powers of 2 are exact).
    w, opt = fresh()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    _quadratic_steps(opt, w, target, 4, scaler)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    w2, opt2 = fresh()
    with torch.no_grad():
        w2.copy_(w)
    opt2.load_state_dict(state)
    _quadratic_steps(opt2, w2, target, 3, scaler)
    assert torch.allclose(w2.detach(), w_ref.detach(), atol=1e-6)
    # The schedule reaches the inner optimizer's groups.
    cfg = RunConfig(epochs=2)
    sched = build_scheduler(opt2, cfg, 5)
    opt2.step()
    sched.step()
    assert opt2.optimizer.param_groups[0]["lr"] == opt2.param_groups[0]["lr"] < 0.1


@pytest.mark.parametrize(("decay", "warmup"), [(0.9, False), (0.5, False), (0.9, True)])
def test_ema_weights_equal_the_hand_computed_average(decay: float, warmup: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    params = {"decay": decay, "warmup": warmup}
    ts = TrickSet({"ema": params})
    model = ts.apply_model(model, _ctx())
    assert ts.eval_model(model) is model  # nothing averaged yet
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    expected: dict[str, torch.Tensor] = {}
    for step in range(4):
        loss = model(torch.randn(8, 3)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ts.after_step(model)
        # TensorFlow's num_updates rule: the k-th average after the copy, min(decay, ...).
        d = min(decay, (1 + step) / (10 + step)) if warmup else decay
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                expected[k] = v.clone() if step == 0 else d * expected[k] + (1 - d) * v
    averaged = ts.eval_model(model)
    assert averaged is not model
    for k, v in averaged.state_dict().items():
        if k in expected:
            assert torch.allclose(v, expected[k], atol=1e-6), k
    buf = io.BytesIO()
    torch.save(ts.state_dict(), buf)
    buf.seek(0)
    again = TrickSet({"ema": params})
    again.apply_model(copy.deepcopy(model), _ctx())
    again.load_state_dict(torch.load(buf, weights_only=True))
    for (k, a), b in zip(averaged.state_dict().items(),
                         again.eval_model(model).state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # The starting weights' share of the average: the product of the three decays.
    share = math.prod(min(decay, (1 + k) / (10 + k)) if warmup else decay for k in (1, 2, 3))
    (audit,) = ts.audits()
    assert audit.details["start_share"] == pytest.approx(share)
    assert audit.effective == (share < 0.5)
    assert audit.summary.startswith(f"ema: evaluated on the average of 4 updates (decay {decay}"
                                    + (", warmup)" if warmup else ")"))
    # A resumed run continues the warmup where it stopped: one more step, both sides.
    for trickset, m in ((ts, model), (again, copy.deepcopy(model))):
        trickset.after_step(m)
    for a, b in zip(ts.eval_model(model).state_dict().values(),
                    again.eval_model(model).state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_ema_without_warmup_on_a_short_run_says_it_had_no_effect() -> None:
    """At decay 0.9999, 1,000 steps leave the starting weights 90% of the average: the
    audit says so (and flags the trick), where warmup leaves them under 1%."""
    from zoo.tricks.ema import start_share

    assert start_share(0.9999, 999, False) == pytest.approx(0.9999 ** 999)
    assert start_share(0.9999, 999, False) > 0.9
    assert start_share(0.9999, 999, True) < 0.01
    # The warmup's decays telescope: prod (1 + k) / (10 + k), k = 1..m, is 10! (m + 1)! /
    # (m + 10)! while (1 + k) / (10 + k) < decay.
    m = 50
    assert start_share(0.9999, m, True) == pytest.approx(
        math.factorial(10) * math.factorial(m + 1) / math.factorial(m + 10))


# --------------------------------------------------------------------------- Bag of Tricks
# and ResNet strikes back: each new trick against an independent computation


@pytest.mark.parametrize(("model_name", "effective"), [("mobilenetv2", False),
                                                       ("resnet20", True),
                                                       ("mobilenetv3_small", True)])
def test_relu6_audit_reports_the_observed_change(model_name: str, effective: bool) -> None:
    """MobileNetV2 already uses ReLU6: the outputs with and without the trick are equal
    (same seed, same weights), and the audit must say the trick did nothing."""
    torch.manual_seed(0)
    plain = create_model(model_name, num_classes=10).eval()
    torch.manual_seed(0)
    ts, model = _built({"relu6": None}, model_name)
    x = _x(2, 32)
    same = torch.equal(plain(x), model.eval()(x))
    (audit,) = ts.audits()
    assert audit.effective is effective is not same


def _bce_reference(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy by its formula: -(t log s(z) + (1 - t) log(1 - s(z))), mean."""
    z = logits.double()
    t = targets.double()
    return -(t * torch.log(torch.sigmoid(z)) + (1 - t) * torch.log(1 - torch.sigmoid(z))).mean()


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("threshold", [None, 0.2])
def test_bce_loss_matches_the_formula_and_timm(smoothing: float,
                                               threshold: float | None) -> None:
    from timm.loss import BinaryCrossEntropy

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(8, 10, generator=g)
    hard = torch.randint(0, 10, (8,), generator=g)
    mixed = mixup_batch(torch.randn(8, 3, 4, 4, generator=g), hard, 10, 0.4, g).targets
    ts = TrickSet({"bce_loss": {"smoothing": smoothing, "target_threshold": threshold}})
    loss = ts.criterion(_ctx())
    off = smoothing / 10
    onehot = torch.full((8, 10), off).scatter_(1, hard[:, None], 1 - smoothing + off)
    for targets, dense in ((hard, onehot), (mixed, mixed)):
        ref = dense if threshold is None else (dense > threshold).float()
        ours = loss(logits, targets, torch.empty(0))
        assert float(ours) == pytest.approx(float(_bce_reference(logits, ref)), rel=1e-5)
        timm_bce = BinaryCrossEntropy(smoothing=smoothing, target_threshold=threshold)
        assert float(ours) == pytest.approx(float(timm_bce(logits, targets)), rel=1e-6)
    (audit,) = ts.audits()
    assert audit.details == {"steps": 2, "soft": 1}


def test_until_epoch_stops_a_batch_trick_and_the_loss_trick_after_that_epoch() -> None:
    ts = TrickSet({"mixup": {"until_epoch": 1}, "label_smoothing": {"until_epoch": 2}})
    images = torch.randn(4, 3, 8, 8)
    targets = torch.tensor([0, 1, 2, 3])
    ctx = _ctx()
    for epoch, mixes, smooths in ((1, True, True), (2, False, True), (3, False, False)):
        ctx.epoch = epoch
        _, out = ts.batch(images, targets, ctx)
        assert (out.ndim == 2) is mixes
        logits = torch.randn(4, 10)
        expected = nn.functional.cross_entropy(logits, targets,
                                               label_smoothing=0.1 if smooths else 0.0)
        assert torch.allclose(ts.criterion(ctx)(logits, targets, images), expected)
    with pytest.raises(ConfigError, match=r"tricks\.zero_gamma\.until_epoch: .*per step"):
        validate_tricks({"zero_gamma": {"until_epoch": 3}})
    with pytest.raises(ConfigError, match=r"tricks\.mixup\.until_epoch: must be an epoch"):
        validate_tricks({"mixup": {"until_epoch": "last"}})


@pytest.mark.parametrize("temperature", [1.0, 4.0, 20.0])
def test_distillation_term_is_t_squared_cross_entropy_of_softened_outputs(
    temperature: float
) -> None:
    """Bag of Tricks eq. 7: T^2 * CE(softmax(r/T), softmax(z/T)), by its formula."""
    from zoo.tricks.distillation import distillation_term

    g = torch.Generator().manual_seed(5)
    z, r = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g) * 3
    t = temperature
    p = torch.softmax(r.double() / t, 1)
    ref = t * t * -(p * torch.log_softmax(z.double() / t, 1)).sum(1).mean()
    assert float(distillation_term(z, r, t)) == pytest.approx(float(ref), rel=1e-5)
    # KL divergence differs from it only by the teacher's entropy: same gradients.
    zg = z.clone().requires_grad_(True)
    distillation_term(zg, r, t).backward()
    kl_z = z.clone().requires_grad_(True)
    (t * t * nn.functional.kl_div(torch.log_softmax(kl_z / t, 1), torch.softmax(r / t, 1),
                                  reduction="batchmean")).backward()
    assert torch.allclose(zg.grad, kl_z.grad, atol=1e-6)


def test_distillation_needs_a_teacher_and_names_a_missing_run(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"tricks\.distillation\.teacher: missing"):
        validate_tricks({"distillation": {}})
    ts = TrickSet({"distillation": {"teacher": str(tmp_path / "nope")}})
    with pytest.raises(Exception, match=r"holds no finished run.*train the teacher first"):
        ts.apply_model(nn.Linear(2, 2), _ctx())


@pytest.mark.parametrize(("batch", "world", "base"), [(128, 8, 256), (64, 1, 256),
                                                     (32, 4, 128)])
def test_linear_lr_scaling_is_lr_times_global_batch_over_base(batch: int, world: int,
                                                               base: int) -> None:
    from zoo.tricks import RunFacts

    ts = TrickSet({"linear_lr_scaling": {"base_batch": base}})
    resolved = ts.resolve(RunFacts(lr=0.1, batch_size=batch, world_size=world))
    assert resolved == {"lr": {"value": pytest.approx(0.1 * batch * world / base),
                               "trick": "linear_lr_scaling"}}
    model = nn.Linear(3, 2)
    cfg = build_config({"model": "resnet20", "tricks": {"linear_lr_scaling": {"base_batch": base}}})
    opt = build_optimizer(model, cfg, ts, lr=resolved["lr"]["value"])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * batch * world / base)
    (audit,) = ts.audits()
    assert audit.effective is (batch * world != base)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_repeated_augmentation_deals_each_images_copies_to_different_processes(
    world: int
) -> None:
    """DeiT's RASampler semantics, from its definition: the epoch's permutation (seeded
    by seed and epoch), each index repeated 3 times in a row, dealt round-robin to the
    processes; each process keeps its first len // 256 * 256 / world (all below 256)."""
    from zoo.tricks.repeated_augmentation import repeat_aug_sampler, sampler_seed

    n, repeats, seed, epoch = 600, 3, 7, 4
    dataset = list(range(n))
    samplers = [repeat_aug_sampler(dataset, world, r, seed, repeats) for r in range(world)]
    for s in samplers:
        s.set_epoch(epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(sampler_seed(seed, epoch)))
    repeated = [int(i) for i in perm for _ in range(repeats)]
    total = math.ceil(n * repeats / world) * world
    keep = n // 256 * 256 // world
    for r, s in enumerate(samplers):
        expected = [repeated[i % len(repeated)] for i in range(r, total, world)][:keep]
        assert list(s) == expected
        assert len(s) == keep
    if world == repeats:  # each image's copies land on distinct processes
        firsts = [list(s) for s in samplers]
        for j in range(keep):
            assert len({f[j] for f in firsts}) == 1
    other = repeat_aug_sampler(dataset, world, 0, seed + 1, repeats)
    other.set_epoch(epoch)
    assert list(other) != list(samplers[0])  # the run's seed changes the order


def test_lamb_replaces_sgd_and_steps_as_timm_lamb() -> None:
    from timm.optim import Lamb

    torch.manual_seed(0)
    a = nn.Linear(4, 3)
    b = copy.deepcopy(a)
    cfg = build_config({"model": "resnet20", "optim": {"lr": 0.01, "weight_decay": 0.02},
                        "tricks": {"lamb": {}, "no_bias_decay": {}}})
    ts = TrickSet(cfg.tricks)
    ours = build_optimizer(a, cfg, ts)
    assert isinstance(ours, Lamb)
    ref = Lamb([{"params": [b.weight], "weight_decay": 0.02},
                {"params": [b.bias], "weight_decay": 0.0}], lr=0.01, weight_decay=0.02)
    x = torch.randn(5, 4)
    for _ in range(3):
        for m, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            m(x).square().sum().backward()
            opt.step()
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert [g["weight_decay"] for g in ours.param_groups] == [0.02, 0.0]


@pytest.mark.parametrize(("trick", "options", "changed"), [
    ("resnet_c", {}, True), ("resnet_d", {}, True),
    ("resnet_b", {"stride_1x1": True}, True), ("resnet_b", {}, False),
])
def test_resnet_tweaks_change_the_model_and_say_so(trick: str, options: dict,
                                                   changed: bool) -> None:
    import timm

    ts = TrickSet({trick: None}, model_name="resnet50")
    model = create_model("resnet50", num_classes=10, **options, **ts.model_options())
    ctx = _ctx()
    ctx.model_name, ctx.model_options = "resnet50", {**options, **ts.model_options()}
    model = ts.apply_model(model, ctx)
    (audit,) = ts.audits()
    assert audit.effective is changed
    if trick == "resnet_b":  # every downsampling bottleneck strides its 3x3: timm's resnet50
        ref = timm.create_model("resnet50", num_classes=10)
        strides = [(m.conv1.stride, m.conv2.stride) for m in model.modules()
                   if isinstance(m, tv_resnet.Bottleneck)]
        ref_strides = [(m.conv1.stride, m.conv2.stride) for m in ref.modules()
                       if type(m).__name__ == "Bottleneck"]
        assert strides == ref_strides
    with pytest.raises(ConfigError, match="resnet_d includes resnet_c"):
        validate_tricks({"resnet_c": None, "resnet_d": None})


def test_train_resolution_trains_small_and_reports_both_sizes() -> None:
    ts = TrickSet({"train_resolution": {"size": 160}})
    assert ts.train_image_size(224) == 160
    ctx = _ctx()
    ctx.image_size = 224
    ts.batch(torch.zeros(2, 3, 160, 160), torch.tensor([0, 1]), ctx)
    (audit,) = ts.audits()
    assert audit.effective and audit.details == {"train_size": 160, "test_size": 224}
    same = TrickSet({"train_resolution": {"size": 224}})
    same.batch(torch.zeros(2, 3, 224, 224), torch.tensor([0, 1]), ctx)
    assert not same.audits()[0].effective


def test_the_loop_names_no_trick() -> None:
    """engine.py and train.py call the TrickSet's hooks; no trick name appears in them."""
    code = {f: (ROOT / "zoo" / f).read_text() for f in ("engine.py", "train.py")}
    for name in list_tricks():
        for f, text in code.items():
            pattern = rf"\b{re.escape(name)}\b"
            assert not re.search(pattern, text), f"zoo/{f} names trick '{name}'"
