"""Train one run from one config: ``python -m zoo.train --config CFG.yaml --out RUN_DIR``.

Runs as one process or unchanged under ``torchrun --nproc_per_node N`` (and ``--nnodes``).
Everything it produces lands in RUN_DIR (see :mod:`zoo.rundir`); started again on the
same RUN_DIR it resumes from the last checkpoint, and a finished run is not trained again.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from zoo import rundir
from zoo.config import RunConfig, config_hash, run_hash, run_identity
from zoo.contract import CodeInfo, MetricsRow, RunConfigFile, RunResult
from zoo.data.device import BAD_IMAGES
from zoo.data.loader import EpochKeys, EpochSeeded, make_loaders  # noqa: F401 (re-exported)
from zoo.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    broadcast_buffers,
    cleanup,
    init_distributed,
)
from zoo.engine import (
    EpochStats,
    NonFiniteLossError,
    Precision,
    build_optimizer,
    build_scheduler,
    evaluate,
    evaluate_corruptions,
    resolve_precision,
    train_one_epoch,
)
from zoo.errors import ConfigError, ZooError
from zoo.fingerprint import Component, changed, core_fingerprint, describe, run_components
from zoo.lifeline import LauncherGone, die_with_launcher
from zoo.measure import count_macs, count_params
from zoo.models import get_model_info, is_model
from zoo.seeding import epoch_generator, rng_state, seed_everything, set_rng_state, worker_base_seed
from zoo.tensorboard import RUN_NAME_ENV, RunBoard
from zoo.tricks import RunFacts, TrainContext, TrickSet
from zoo.validate import check_data_paths, load_config

log = logging.getLogger("zoo")

EXIT_CONFIG = 2


def setup_logging(out: Path, info: DistInfo) -> None:
    for handler in list(log.handlers):  # a second run in the same process: close the old log
        handler.close()
        log.removeHandler(handler)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    if info.is_main:
        log.setLevel(logging.INFO)
        for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(out / rundir.LOG)):
            handler.setFormatter(fmt)
            log.addHandler(handler)
    else:
        log.setLevel(logging.WARNING)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"[rank {info.rank}] %(message)s"))
        log.addHandler(handler)


@contextmanager
def run_lock(out: Path, enabled: bool) -> Iterator[None]:
    """An exclusive lock on RUN_DIR, so two trainers never write the same run."""
    if not enabled:
        yield
        return
    with open(out / rundir.LOCK, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ZooError(f"{out}: another process is training this run directory") from None
        yield


def resolve_channels_last(
    requested: bool | None, model_name: str, model: nn.Module, device: torch.device
) -> bool:
    """``model.channels_last``: true/false as given; ``null`` is the registry's default for
    the model on CUDA (for a ``timm/`` name: on unless it has grouped convolutions) and
    off on the CPU, where NCHW is the format PyTorch's kernels are tuned for."""
    if requested is not None:
        return requested
    if device.type != "cuda":
        return False
    if is_model(model_name) and not model_name.startswith("timm/"):
        return get_model_info(model_name).channels_last
    return not any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())


def prepare_run_dir(out: Path, cfg: RunConfig, info: DistInfo,
                    code: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Check RUN_DIR against the config and, when both record it, the code of the
    components (``code``: component -> fingerprint). Returns the finished result, if the
    run is done: a run of other code is never taken for this one."""
    out.mkdir(parents=True, exist_ok=True)
    existing = out / rundir.CONFIG
    if existing.exists():
        prev = RunConfigFile.from_dict(rundir.read_json(existing))
        if run_identity(prev.config) != cfg.identity():
            raise ZooError(
                f"{out}: holds a run of a different config (hash {prev.hash}); "
                f"use another --out or delete the directory"
            )
        recorded = prev.code.fingerprints()
        if code is not None and recorded and recorded != code:
            raise ZooError(
                f"{out}: holds a run of other code (changed: "
                f"{', '.join(changed(recorded, code))}); use another --out or delete the "
                f"directory")
    result_path = out / rundir.RESULT
    if result_path.exists():
        result = rundir.read_json(result_path)
        if result.get("status") == "succeeded":
            return result
        if info.is_main:
            result_path.unlink()  # a failed attempt: train again from its checkpoint
    return None


def run(cfg: RunConfig, out: Path, stop_after: int | None = None) -> int:
    """Train ``cfg`` into ``out``. Returns the process exit code.

    ``stop_after`` ends this session after that epoch's checkpoint, without a result
    (as a pre-empted job would); the next call resumes."""
    components = run_components(cfg)
    info = init_distributed(cfg.device)
    try:
        done = prepare_run_dir(out, cfg, info, {c.name: c.fingerprint for c in components})
        if done is not None:
            if info.is_main:
                print(f"{out}: already finished (top-1 {done['final']['top1']:.2f}); nothing to do")
            return 0
        with run_lock(out, info.is_main):
            return _train(cfg, out, info, stop_after, components)
    finally:
        cleanup()


@dataclass
class TrainState:
    """What the loop carries from epoch to epoch (and across a resume, in the checkpoint,
    as the plain dict of :func:`dataclasses.asdict`: ``weights_only=True`` loads it)."""

    best_top1: float = -1.0
    best_top5: float = -1.0
    best_epoch: int = 0
    #: The last epoch's metrics: epoch, top1, top5, val_loss, train_loss, ece, worst_class,
    #: corruption and its breakdown (corruptions).
    last: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    images: int = 0
    train_seconds: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def update(self, row: dict[str, Any]) -> None:
        if row["top1"] > self.best_top1:
            self.best_top1, self.best_top5, self.best_epoch = row["top1"], row["top5"], row["epoch"]
        self.last = {k: row.get(k) for k in ("epoch", "top1", "top5", "val_loss", "train_loss",
                                             "ece", "worst_class", "corruption", "corruptions")}
        self.seconds += row["seconds"]
        self.train_seconds += row["train_seconds"]
        self.images += round(row["images_per_s"] * row["train_seconds"])


@dataclass
class Session:
    """Everything one training session works with, built once by :func:`_build_session`."""

    cfg: RunConfig
    out: Path
    info: DistInfo
    tricks: TrickSet
    ctx: TrainContext
    precision: Precision
    train_loader: DataLoader
    val_loader: DataLoader
    sampler: EpochKeys
    classes: list[str]
    model: nn.Module  # the plain module: checkpoint, evaluation, trick hooks
    train_model: nn.Module  # possibly DDP- and compile-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler
    params: int
    macs: int
    channels_last: bool
    #: Settings the tricks decided (e.g. the scaled learning rate), for config.json.
    resolved: dict[str, dict[str, Any]]
    #: data.decode and workers as resolved here, for config.json.
    input: dict[str, Any] = field(default_factory=dict)
    #: TensorBoard events of the run (rank 0; made once the run's first epoch is known).
    board: RunBoard | None = None
    #: The components the config names, with their code (``zoo.fingerprint``).
    components: list[Component] = field(default_factory=list)
    wall_start: float = field(default_factory=time.perf_counter)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)


def _train(cfg: RunConfig, out: Path, info: DistInfo, stop_after: int | None,
           components: list[Component]) -> int:
    setup_logging(out, info)
    wall_start = time.perf_counter()
    s = _build_session(cfg, out, info)
    s.wall_start = wall_start
    s.components = components
    try:
        start_epoch, state = _resume(s)
    except ZooError as exc:  # no readable checkpoint: every start would meet it again
        _finish(s, TrainState(), "failed", str(exc), 0, exc.retryable)  # recorded, and
        raise  # said once, on stderr, with the exit code of a config error
    if info.is_main:
        # A run restarted without a checkpoint starts its metrics over: every epoch once.
        rundir.truncate_metrics(out / rundir.METRICS, start_epoch - 1)
        _write_config(s)
    # Every rank makes one; only rank 0's writes. Events of epochs >= start_epoch that an
    # earlier session wrote are dropped (purge_step), so a resume adds each epoch once.
    s.board = RunBoard(out, cfg.to_dict(), run_name=os.environ.get(RUN_NAME_ENV),
                       enabled=cfg.tensorboard and info.is_main, start_epoch=start_epoch)
    status, error, epoch, retryable = "succeeded", None, start_epoch - 1, True
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            row = _train_epoch(s, epoch)
            state.update(row)
            _end_epoch(s, epoch, row, state)
            if stop_after is not None and stop_after <= epoch < cfg.epochs:
                log.info("stopping after epoch %d as asked (--stop-after); run again to resume",
                         epoch)
                s.board.close()
                return 0
    except NonFiniteLossError as exc:
        status, error = "failed", str(exc)
        log.error("%s: %s", out, exc)
    except ZooError as exc:  # e.g. the disk filled up while checkpointing, a bad image
        status, error, retryable = "failed", str(exc), exc.retryable
        log.error("%s", exc)
    except Exception as exc:  # any failure is recorded in result.json
        # A KeyboardInterrupt is not caught: the checkpoint stays, no result is written.
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("%s: training failed", out)
    return _finish(s, state, status, error, epoch, retryable)


def _build_session(cfg: RunConfig, out: Path, info: DistInfo) -> Session:
    if info.device.type == "cuda":
        # Input shapes are fixed, so cuDNN's autotuner picks each convolution's fastest
        # algorithm once. GPU runs are not bitwise reproducible anyway (atomic adds).
        torch.backends.cudnn.benchmark = True
    tricks = TrickSet(cfg.tricks)
    BAD_IMAGES.reset()
    seed_everything(cfg.seed)  # same seed on every rank: identical initial weights
    loaders = make_loaders(cfg, info, tricks)
    train_loader, val_loader, sampler, classes = loaders
    model_name = tricks.model_name(cfg.model.name)
    ctx = TrainContext(
        num_classes=len(classes), world_size=info.world_size, device=info.device,
        epochs=cfg.epochs, steps_per_epoch=len(train_loader), model_name=model_name,
        model_options={**cfg.model.options, **tricks.model_options()},
        image_size=cfg.data.image_size,
    )
    model = tricks.build_model(cfg.model.name, cfg.model.options, len(classes))
    model = tricks.apply_model(model.to(info.device), ctx)
    # Counted once, after model surgery (e.g. deformable convs' offset layers), at the
    # configured (evaluation) input size.
    params = count_params(model)
    macs = count_macs(model, cfg.data.image_size)
    channels_last = resolve_channels_last(cfg.model.channels_last, model_name, model,
                                          info.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Different augmentation streams per process, after the shared initialisation.
    seed_everything(cfg.seed + 7919 * info.rank)
    resolved = tricks.resolve(RunFacts(lr=cfg.optim.lr, batch_size=cfg.batch_size,
                                       world_size=info.world_size))
    optimizer = build_optimizer(model, cfg, tricks, lr=resolved.get("lr", {}).get("value"))
    scheduler = build_scheduler(optimizer, cfg, len(train_loader))
    precision = resolve_precision(cfg.precision, info.device)
    if tricks.wants_closure and precision.name == "fp16":
        names = ", ".join(t.name for t in tricks if t.closure)
        raise ConfigError(f"tricks.{names}: steps with a closure (a second forward-backward "
                          f"per step), which fp16's GradScaler cannot take; set precision: "
                          f"bf16 or fp32")
    return Session(
        cfg=cfg, out=out, info=info, tricks=tricks, ctx=ctx, precision=precision,
        train_loader=train_loader, val_loader=val_loader, sampler=sampler, classes=classes,
        model=model, train_model=_wrap_for_training(model, cfg, info), optimizer=optimizer,
        scheduler=scheduler, scaler=precision.grad_scaler(), params=params, macs=macs,
        channels_last=channels_last, resolved=resolved, input=loaders.describe(),
    )


def _wrap_for_training(model: nn.Module, cfg: RunConfig, info: DistInfo) -> nn.Module:
    train_model: nn.Module = model
    if info.distributed:
        # Gradients as views into DDP's all-reduce buckets: no copy in and out of them
        # (and less memory). A static graph (the same parameters used every step, true of
        # every model and trick here: stochastic depth scales branches, never skips them)
        # lets DDP skip its per-step search for unused parameters; not under compile,
        # whose DDP optimizer splits the graph at buckets itself.
        train_model = DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
            gradient_as_bucket_view=True, static_graph=not cfg.compile,
        )
    if cfg.compile:
        # Compiled outside DDP, as PyTorch recommends (its DDP optimizer splits the graph
        # at gradient buckets). Only training runs compiled; the checkpoint, evaluation
        # and the tricks' hooks use the plain module, whose weights it shares.
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    return train_model


def _resume(s: Session) -> tuple[int, TrainState]:
    """Load the newest readable checkpoint into the session; (first epoch, state)."""
    ckpt = rundir.load_latest_checkpoint(s.out, map_location=s.info.device, warn=log.warning)
    if ckpt is None:
        return 1, TrainState()
    s.model.load_state_dict(ckpt["model"])
    s.optimizer.load_state_dict(ckpt["optimizer"])
    s.scheduler.load_state_dict(ckpt["scheduler"])
    s.scaler.load_state_dict(ckpt["scaler"])
    s.tricks.load_state_dict(ckpt["tricks"])
    set_rng_state(ckpt["rng"][s.info.rank], s.info.device)
    log.info("resumed %s from epoch %d", s.out, ckpt["epoch"])
    if "bad_images" in ckpt:
        BAD_IMAGES.load_state_dict(ckpt["bad_images"])
    return ckpt["epoch"] + 1, TrainState.from_dict(ckpt["state"])


def _write_config(s: Session) -> None:
    cfg = s.cfg
    git = rundir.code_info()
    code = CodeInfo(commit=git["commit"], dirty=git["dirty"],
                    components=describe(s.components), core=core_fingerprint())
    rundir.write_json(s.out / rundir.CONFIG, RunConfigFile(
        hash=run_hash(cfg, code.fingerprints()), config_hash=config_hash(cfg),
        config=cfg.to_dict(), code=code,
        env=rundir.env_info(s.info.world_size, s.info.device),
        extra={
            # Settings the tricks derived from the config and the run (e.g. a learning
            # rate scaled with the global batch); the config above stays as given, so
            # the run's hash does not move.
            "resolved": s.resolved,
            "classes": s.classes,
            "steps_per_epoch": s.steps_per_epoch,
            "tricks": s.tricks.describe(),
            "channels_last": s.channels_last,  # model.channels_last as resolved here
            "input": s.input,  # data.decode and workers as resolved here
        }).to_dict())
    log.info(
        "%s: %s, %.2fM params, %.3f GMACs at %d px, %d classes, precision %s, "
        "world size %d, %d steps/epoch, %s%s",
        s.out, cfg.model.name, s.params / 1e6, s.macs / 1e9, cfg.data.image_size,
        len(s.classes), s.precision.name, s.info.world_size, s.steps_per_epoch,
        "channels_last" if s.channels_last else "NCHW", ", compiled" if cfg.compile else "",
    )


def _train_epoch(s: Session, epoch: int) -> dict[str, Any]:
    """Train and evaluate one epoch; its metrics row."""
    t0 = time.perf_counter()
    gen = epoch_generator(s.cfg.seed, s.info.rank, epoch)
    # This epoch's worker seed first, then the batch tricks' stream, from one
    # generator: the order the DataLoader drew them in when it was handed ``gen``.
    s.sampler.set_epoch(epoch, worker_base_seed(gen))
    s.ctx.generator = gen
    with _progress(s.info, epoch, s.cfg.epochs, s.steps_per_epoch) as progress:
        stats = train_one_epoch(
            s.train_model, s.train_loader, s.steps_per_epoch, s.optimizer, s.scheduler,
            s.scaler, s.tricks, s.ctx, s.precision, epoch,
            first_step=(epoch - 1) * s.steps_per_epoch + 1,
            log_every=s.cfg.log_every, channels_last=s.channels_last, progress=progress,
        )
    broadcast_buffers(s.model)  # every shard is scored with rank 0's BN statistics
    model = s.tricks.eval_model(s.model)
    metrics = evaluate(model, s.val_loader, s.info.device, s.precision, s.channels_last,
                       num_classes=len(s.classes))
    if s.cfg.eval.corruptions and epoch == s.cfg.epochs:
        metrics.update(evaluate_corruptions(model, s.val_loader, s.info.device, s.precision,
                                            s.channels_last, len(s.classes), s.info.rank))
    return _row(epoch, s.steps_per_epoch, stats, metrics, time.perf_counter() - t0)


def _row(epoch: int, steps_per_epoch: int, stats: EpochStats, metrics: dict[str, float],
         seconds: float) -> dict[str, Any]:
    """One line of metrics.jsonl."""
    return {
        "epoch": epoch,
        "step": epoch * steps_per_epoch,
        "train_loss": stats.loss,
        "lr": stats.lr,
        "val_loss": metrics["val_loss"],
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "eval_images": metrics["count"],
        "images_per_s": stats.images / stats.seconds,
        "train_seconds": stats.seconds,
        "seconds": seconds,
        "grad_scale": stats.grad_scale,
        "ece": metrics["ece"],
        "worst_class": metrics["worst_class"],
        "corruption": metrics.get("corruption"),
        "corruptions": metrics.get("corruptions"),  # result.json only: not a metrics row's
    }


def _end_epoch(s: Session, epoch: int, row: dict[str, Any], state: TrainState) -> None:
    """Append the metrics row and checkpoint the epoch (rank 0; the RNG states of all)."""
    rngs = all_gather_objects(rng_state(s.info.device))
    if not s.info.is_main:
        return
    rundir.append_metrics(s.out / rundir.METRICS,
                          MetricsRow(**{k: v for k, v in row.items() if k != "corruptions"}))
    if s.board is not None:  # before the checkpoint: a crash between them is purged on resume
        s.board.log_epoch(row)
    rundir.save_checkpoint_keeping_previous(s.out, {
        "epoch": epoch,
        "model": s.model.state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "scaler": s.scaler.state_dict(),
        "tricks": s.tricks.state_dict(),
        "rng": rngs,
        "state": asdict(state),
        "bad_images": BAD_IMAGES.state_dict(),
    })
    log.info(
        "epoch %d/%d  loss %.4f  val %.4f  top1 %.2f  top5 %.2f  lr %.4g  %.0f img/s  %.1fs",
        epoch, s.cfg.epochs, row["train_loss"], row["val_loss"], row["top1"], row["top5"],
        row["lr"], row["images_per_s"], row["seconds"],
    )


def _finish(s: Session, state: TrainState, status: str, error: str | None,
            epoch: int, retryable: bool = True) -> int:
    """Agree on the status (and whether a failure could end otherwise) over all ranks,
    write result.json; the exit code."""
    failed = all_reduce_sum(torch.tensor([0 if status == "succeeded" else 1,
                                          0 if retryable else 1], device=s.info.device))
    if status == "succeeded" and int(failed[0].item()) > 0:
        status, error = "failed", "another process failed (see train.log)"
    if s.info.is_main:
        result = _result(s, state, status, error, epoch,
                         retryable=status == "succeeded" or int(failed[1].item()) == 0)
        rundir.write_json(s.out / rundir.RESULT, result)
        if s.board is not None:
            s.board.log_result(result)
    if s.board is not None:
        s.board.close()
    return 0 if status == "succeeded" else 1


def _audits(tricks: TrickSet) -> list[dict[str, Any]]:
    audits = []
    for a in tricks.audits():
        audits.append({"trick": a.trick, "summary": a.summary, "effective": a.effective,
                       **({"details": a.details} if a.details else {})})
        if not a.effective:
            log.warning("trick %s had no effect: %s", a.trick, a.summary)
    return audits


def _result(s: Session, state: TrainState, status: str, error: str | None,
            epoch: int, retryable: bool = True) -> dict[str, Any]:
    """The content of result.json."""
    cfg, info, params, macs, tricks = s.cfg, s.info, s.params, s.macs, s.tricks
    last, seconds, train_s = state.last, state.seconds, state.train_seconds
    best = state.best_epoch > 0
    return RunResult.from_dict({
        "status": status,
        "error": error,
        "hash": run_hash(cfg, {c.name: c.fingerprint for c in s.components}),
        "model": cfg.model.name,
        "epochs": cfg.epochs,
        "epochs_completed": last.get("epoch", 0),
        "final": {"top1": last.get("top1"), "top5": last.get("top5"),
                  "val_loss": last.get("val_loss"), "train_loss": last.get("train_loss"),
                  "ece": last.get("ece"), "worst_class": last.get("worst_class"),
                  "corruption": last.get("corruption"),
                  "corruptions": last.get("corruptions")},
        "best": {"top1": state.best_top1 if best else None,
                 "top5": state.best_top5 if best else None,
                 "epoch": state.best_epoch or None},
        "params": params,
        "macs": macs,
        "wall_seconds": seconds,
        "device_hours": seconds * info.world_size / 3600.0,
        "images_per_s": state.images / train_s if train_s else None,
        "world_size": info.world_size,
        "device_type": info.device.type,
        # Images skipped under data.skip_bad are reported like a trick's effect.
        "audit": _audits(tricks) + ([BAD_IMAGES.audit()] if cfg.data.skip_bad else []),
        "session_seconds": time.perf_counter() - s.wall_start,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "failed_epoch": epoch if status == "failed" else None,
        "retryable": retryable,
    }).to_dict()


@contextmanager
def _progress(info: DistInfo, epoch: int, epochs: int, steps: int) -> Iterator[Any]:
    """A rich progress bar on rank 0 in a terminal; other ranks and pipes stay quiet."""
    if not info.is_main or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), transient=True,
    ) as bar:
        task = bar.add_task("train", total=steps, stats="")
        t0 = time.perf_counter()

        def update(done: int, total: int, values: dict[str, float]) -> None:
            rate = done * 1.0 / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, completed=done, stats=(
                f"loss {values['loss']:.4f}  lr {values['lr']:.4g}  {rate:.1f} it/s"
            ))

        yield update


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m zoo.train", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, type=Path, help="run config (YAML)")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.2 (repeatable)")
    p.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                   help="checkpoint and exit after this epoch without a result (resume later)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        die_with_launcher()  # under torchrun: end with its agent, never orphaned
    except LauncherGone as exc:
        print(f"error: torchrun exited before this trainer started ({exc})", file=sys.stderr)
        return 128 + int(signal.SIGTERM)
    except OSError as exc:  # not fatal: the run lock still keeps a second trainer off
        print(f"warning: {exc.strerror}", file=sys.stderr)
    try:
        cfg = load_config(args.config, args.overrides)
        check_data_paths(cfg)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return run(cfg, args.out, stop_after=args.stop_after)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
