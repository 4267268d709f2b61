"""The pieces of the loop against independent computations: schedule, metrics, sharding."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.config import OptimConfig, RunConfig, ScheduleConfig
from zoo.data.samplers import ShardSampler
from zoo.engine import build_optimizer, build_scheduler, evaluate, resolve_precision
from zoo.tricks import TrickSet


def _lrs(cfg: RunConfig, steps_per_epoch: int) -> list[float]:
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, cfg, TrickSet({}))
    sched = build_scheduler(opt, cfg, steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize(("epochs", "steps", "warmup", "min_lr"),
                         [(4, 10, 1.0, 0.0), (3, 7, 0.5, 0.01), (2, 5, 0.0, 0.0)])
def test_warmup_then_cosine_per_iteration(epochs: int, steps: int, warmup: float,
                                          min_lr: float) -> None:
    base, start = 0.4, 0.01
    cfg = RunConfig(epochs=epochs, optim=OptimConfig(lr=base), schedule=ScheduleConfig(
        warmup_epochs=warmup, warmup_start_factor=start, min_lr=min_lr))
    total, w = epochs * steps, round(warmup * steps)
    expected = []
    for t in range(total):
        if t < w:  # linear from base*start to base over w iterations
            expected.append(base * (start + (1 - start) * t / w))
        else:
            cos = math.cos(math.pi * (t - w) / (total - w))
            expected.append(min_lr + (base - min_lr) * (1 + cos) / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scheduler deprecation warnings either
        got = _lrs(cfg, steps)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_schedule_length_follows_steps_per_epoch() -> None:
    cfg = RunConfig(epochs=2)
    short, long = _lrs(cfg, 3), _lrs(cfg, 8)
    assert len(short) == 6 and len(long) == 16
    # Both end close to zero: the cosine spans the real number of iterations.
    assert short[-1] < 0.1 * cfg.optim.lr and long[-1] < 0.02 * cfg.optim.lr


class FixedLogits(nn.Module):
    """Returns pre-set logits for each input index (the input holds the index)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()]


def test_evaluate_topk_and_loss_match_hand_computation() -> None:
    g = torch.Generator().manual_seed(0)
    n, classes = 37, 7
    logits = torch.randn(n, classes, generator=g)
    targets = torch.randint(0, classes, (n,), generator=g)
    ds = TensorDataset(torch.arange(n).float()[:, None], targets)
    out = evaluate(FixedLogits(logits), DataLoader(ds, batch_size=8), torch.device("cpu"),
                   resolve_precision("fp32", torch.device("cpu")))
    ranks = (logits > logits[torch.arange(n), targets][:, None]).sum(1)  # 0 = best
    top1 = 100.0 * (ranks < 1).float().mean().item()
    top5 = 100.0 * (ranks < 5).float().mean().item()
    loss = (torch.logsumexp(logits, 1) - logits[torch.arange(n), targets]).mean().item()
    assert out["count"] == n
    assert out["top1"] == pytest.approx(top1)
    assert out["top5"] == pytest.approx(top5)
    assert out["val_loss"] == pytest.approx(loss, rel=1e-6)


@pytest.mark.parametrize(("length", "world"), [(10, 3), (7, 2), (3, 4), (364, 2), (0, 2)])
def test_shards_cover_every_index_exactly_once(length: int, world: int) -> None:
    shards = [list(ShardSampler(length, r, world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(length))
    assert [len(ShardSampler(length, r, world)) for r in range(world)] == [len(s) for s in shards]


def test_precision_resolution_and_fp16_warning_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).name == "fp32"
    assert resolve_precision("auto", cpu).dtype is None
    assert resolve_precision("bf16", cpu).dtype == torch.bfloat16
    with pytest.warns(UserWarning, match="fp16 on CPU"):
        p = resolve_precision("fp16", cpu)
    assert p.dtype == torch.float16 and p.grad_scaler().is_enabled()
    assert not resolve_precision("bf16", cpu).grad_scaler().is_enabled()


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_mixed_precision_step_on_cpu(name: str) -> None:
    """One autocast + GradScaler step moves the weights and keeps them finite."""
    cpu = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = resolve_precision(name, cpu)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = p.grad_scaler()
    before = [q.detach().clone() for q in model.parameters()]
    with p.autocast():
        logits = model(torch.randn(4, 3, 8, 8))
        assert logits.dtype == p.dtype
        loss = nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1, 2, 0]))
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    after = list(model.parameters())
    assert all(torch.isfinite(q).all() for q in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_cpu_keeps_the_default_sgd_implementation() -> None:
    """Only CUDA parameters get the fused SGD; CPU runs keep the numerics they always had."""
    opt = build_optimizer(nn.Linear(2, 2), RunConfig(), TrickSet({}))
    assert opt.defaults["fused"] is None and opt.defaults["foreach"] is None


def test_fused_sgd_steps_under_grad_scaler_without_reading_found_inf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why CUDA gets the fused SGD: GradScaler hands it the found-inf flag as a tensor
    instead of ``.item()``-ing it every step (``_maybe_opt_step``, a host sync), and the
    kernel skips the update itself. Shown on the CPU, which has the same fused kernel."""

    def host_sync(*args: object, **kwargs: object) -> None:
        raise AssertionError("GradScaler read found_inf on the host")

    monkeypatch.setattr(torch.amp.GradScaler, "_maybe_opt_step", host_sync)
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for poison in (False, True):
        before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad(set_to_none=True)
        scaler.scale(model(torch.randn(2, 4)).sum()).backward()
        if poison:
            model.weight.grad[0, 0] = math.inf
        scaler.unscale_(opt)  # as train_one_epoch does, for the hooks
        scaler.step(opt)
        scaler.update()
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(),
                                                          strict=True))
        assert moved is not poison  # a non-finite gradient skips the step
    assert scaler.get_scale() == 512.0  # and halves the scale


class _Recorder(TrickSet):
    def __init__(self) -> None:
        super().__init__({})
        self.seen: list[nn.Module] = []

    def after_backward(self, model: nn.Module, epoch: int = 0) -> None:
        self.seen.append(model)

    def after_step(self, model: nn.Module) -> None:
        self.seen.append(model)


def test_hooks_get_the_plain_module_of_a_compiled_model() -> None:
    from zoo.engine import train_one_epoch
    from zoo.tricks import TrainContext

    cpu = torch.device("cpu")
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    compiled = torch.compile(model, backend="eager")
    cfg = RunConfig(epochs=1)
    tricks = _Recorder()
    opt = build_optimizer(model, cfg, tricks)
    data = [(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]))] * 2
    precision = resolve_precision("fp32", cpu)
    stats = train_one_epoch(
        compiled, data, 2, opt, build_scheduler(opt, cfg, 2), precision.grad_scaler(),
        tricks,
        TrainContext(num_classes=3, world_size=1, device=cpu, epochs=1, steps_per_epoch=2),
        precision, epoch=1, first_step=1, log_every=1)
    assert stats.steps == 2 and stats.images == 8
    assert len(tricks.seen) == 4 and all(m is model for m in tricks.seen)


class _WithLoss(TrickSet):
    """No tricks, and ``criterion`` as the loss of every epoch."""

    def __init__(self, criterion: nn.Module) -> None:
        super().__init__({})
        self.loss_module = criterion

    def criterion(self, ctx: object) -> object:
        return lambda logits, targets, images: self.loss_module(logits, targets)


class _LossLog(nn.Module):
    """Cross-entropy that records each step's loss, and can turn one step's into NaN."""

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.values: list[float] = []
        self.nan_at = nan_at

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(logits, targets)
        if len(self.values) + 1 == self.nan_at:
            loss = loss * math.nan
        self.values.append(loss.item())
        return loss


def _epoch(criterion: nn.Module, sizes: list[int], log_every: int,
           progress: list[tuple[int, float]]) -> object:
    from zoo.engine import train_one_epoch
    from zoo.tricks import TrainContext

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    cfg = RunConfig(epochs=1)
    opt = build_optimizer(model, cfg, TrickSet({}))
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(n, 3, 2, 2, generator=g), torch.randint(0, 3, (n,), generator=g))
            for n in sizes]
    precision = resolve_precision("fp32", cpu)
    return train_one_epoch(
        model, data, len(data), opt, build_scheduler(opt, cfg, len(data)),
        precision.grad_scaler(), _WithLoss(criterion),
        TrainContext(num_classes=3, world_size=1, device=cpu, epochs=1,
                     steps_per_epoch=len(data)),
        precision, epoch=2, first_step=101, log_every=log_every,
        progress=lambda i, n, v: progress.append((i, v["loss"])))


def test_epoch_loss_is_the_image_weighted_mean_of_step_losses() -> None:
    sizes = [4, 4, 3, 4, 2, 4, 4]
    criterion, progress = _LossLog(), []
    stats = _epoch(criterion, sizes, log_every=3, progress=progress)
    expected = 0.0
    for value, n in zip(criterion.values, sizes, strict=True):
        expected += value * n  # float64, in step order
    assert stats.loss == expected / sum(sizes)  # exactly
    assert stats.images == sum(sizes) and stats.steps == 7
    assert [i for i, _ in progress] == [3, 6, 7]  # log points: every 3 steps and the last
    head = sum(v * n for v, n in zip(criterion.values[:3], sizes[:3], strict=True))
    assert progress[0][1] == pytest.approx(head / sum(sizes[:3]), rel=1e-12)


def test_non_finite_loss_names_its_step_at_the_next_log_point() -> None:
    from zoo.engine import NonFiniteLossError

    criterion, progress = _LossLog(nan_at=5), []
    with pytest.raises(NonFiniteLossError) as err:
        _epoch(criterion, [4] * 7, log_every=3, progress=progress)
    assert (err.value.epoch, err.value.step) == (2, 105)  # first_step 101 + 4
    assert [i for i, _ in progress] == [3]  # found at step 6's log point, not before
    assert len(criterion.values) == 6


def test_step_schedule_divides_by_ten_at_quarters_of_the_run() -> None:
    """He et al. 2016's ImageNet rule as Bag of Tricks' baseline runs it: lr / 10 at epochs
    30, 60, 90 of 120 (here 1/4, 1/2, 3/4 of the iterations), after a linear warmup."""
    epochs, steps, warmup = 8, 5, 1.0
    cfg = RunConfig(epochs=epochs, optim=OptimConfig(lr=0.4), schedule=ScheduleConfig(
        name="step", warmup_epochs=warmup, warmup_start_factor=0.1))
    total, w = epochs * steps, round(warmup * steps)
    expected = []
    for t in range(total):
        if t < w:
            expected.append(0.4 * (0.1 + 0.9 * t / w))
        else:
            expected.append(0.4 * 0.1 ** sum(t >= total * k // 4 for k in (1, 2, 3)))
    assert _lrs(cfg, steps) == pytest.approx(expected, rel=1e-9)


class _Hooks(TrickSet):
    """Records the order of the loop events it is called at."""

    def __init__(self) -> None:
        super().__init__({})
        self.events: list[str] = []

    def epoch_start(self, ctx: object) -> None:
        self.events.append(f"epoch_start {ctx.epoch}")  # type: ignore[attr-defined]

    def batch(self, images, targets, ctx):  # type: ignore[no-untyped-def]
        self.events.append("batch")
        return images, targets

    def after_step(self, model: nn.Module) -> None:
        self.events.append("after_step")

    def epoch_end(self, ctx: object) -> None:
        self.events.append(f"epoch_end {ctx.epoch}")  # type: ignore[attr-defined]


def test_epoch_hooks_frame_the_epochs_steps() -> None:
    from zoo.engine import train_one_epoch
    from zoo.tricks import TrainContext

    cpu = torch.device("cpu")
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    cfg = RunConfig(epochs=1)
    tricks = _Hooks()
    opt = build_optimizer(model, cfg, tricks)
    data = [(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]))] * 2
    precision = resolve_precision("fp32", cpu)
    train_one_epoch(model, data, 2, opt, build_scheduler(opt, cfg, 2), precision.grad_scaler(),
                    tricks, TrainContext(num_classes=3, world_size=1, device=cpu, epochs=3,
                                         steps_per_epoch=2),
                    precision, epoch=3, first_step=5, log_every=1)
    assert tricks.events == ["epoch_start 3", "batch", "after_step", "batch", "after_step",
                             "epoch_end 3"]
