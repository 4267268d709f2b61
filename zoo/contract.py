"""The run directory's contract: its file names and the typed records in them.

The trainer (:mod:`zoo.train`) writes a run directory through this module; the orchestrator
(:mod:`ablate`) reads it through this module, and nothing else on either side knows a file
name or a ``result.json`` key. It imports no torch, so ablate can read runs without it.

``config.json``   :class:`RunConfigFile`, the resolved config with code and environment
``metrics.jsonl`` one :class:`MetricsRow` a line, one line per epoch
``checkpoint.pt`` written by :mod:`zoo.rundir` (torch), each epoch
``result.json``   :class:`RunResult`, written last
``train.log``     the trainer's log; ``run.yaml``, ``launch.log`` and ``studies.json``: the
                  launcher's input, torchrun's output and the studies the run is part of,
                  written by the orchestrator

Every file a reader may see half-written is written to a temporary name in the same
directory and renamed over the target (:func:`atomic_write`), which is atomic on POSIX.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Literal

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
#: The checkpoint before the last, kept so a resume survives a damaged ``checkpoint.pt``.
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
RESULT = "result.json"
#: The trainer's exclusive lock (fcntl.flock) while it trains the directory: whoever holds
#: it owns the run; the orchestrator probes it before starting a trainer of its own.
LOCK = ".lock"
LOG = "train.log"
#: The resolved config the launcher hands the trainer (``--config``), and torchrun's output.
RUN_CONFIG = "run.yaml"
LAUNCH_LOG = "launch.log"
#: The studies the run belongs to (variant, seed, study file), written by the orchestrator
#: so that a database can be rebuilt from run directories alone.
STUDIES = "studies.json"


def launch_log(node_rank: int = 0) -> str:
    """torchrun's output of one node of a run (the nodes of a multi-node run share the
    directory on a shared file system: one log each)."""
    return LAUNCH_LOG if node_rank == 0 else f"launch.node{node_rank}.log"


# --------------------------------------------------------------------------- writing


def umask() -> int:
    """The process's file mode creation mask, read without changing it (Linux's
    ``/proc/self/status``; elsewhere set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: Path | str, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file next to ``path``; rename it over ``path`` on success (a
    reader sees the old file or the new one, never half of one). fsync'd first: after a
    crash the rename never points at unwritten blocks. The file gets the mode a plain
    ``open`` would give it (0666 less the umask), not the temporary file's 0600: a run
    directory on a lab's shared file system reads as its umask says."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path | str, data: str | bytes) -> None:
    """``path`` holds ``data`` (text as UTF-8, no newline translation), atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_json(path: Path | str, obj: Any) -> None:
    """JSON, indented, in the mapping's own key order, atomically."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


def append_metrics(path: Path | str, row: MetricsRow) -> None:
    """One more line of ``metrics.jsonl``, on disk before the call returns."""
    with open(path, "a") as f:
        f.write(json.dumps(row.to_dict()) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(path: Path | str) -> list[MetricsRow]:
    """The complete lines of ``metrics.jsonl`` (a line being written, without its newline
    yet, is left for the next read); none when the file is absent."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [MetricsRow.from_dict(json.loads(line))
            for line in text.split("\n")[:-1] if line.strip()]


def truncate_metrics(path: Path | str, last_epoch: int) -> None:
    """Keep only the lines of epochs <= ``last_epoch`` (those the checkpoint holds)."""
    rows = [r for r in read_metrics(path) if r.epoch <= last_epoch]
    with atomic_open(path) as f:
        for r in rows:
            f.write(json.dumps(r.to_dict()) + "\n")


# --------------------------------------------------------------------------- records


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of ``cls`` (a newer writer's extra keys are
    ignored by an older reader, and the other way round missing ones take defaults)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class MetricsRow:
    """One epoch of ``metrics.jsonl``: what the trainer measured at its end."""

    epoch: int
    step: int
    train_loss: float
    lr: float
    val_loss: float
    top1: float
    top5: float
    eval_images: int
    images_per_s: float
    train_seconds: float
    seconds: float
    #: The GradScaler's scale (None without one: fp32, bf16).
    grad_scale: float | None = None
    #: Expected calibration error (%), 15 equal-width bins of the top-1 confidence
    #: (:mod:`zoo.metrics`); None in runs from before it was measured.
    ece: float | None = None
    #: The lowest per-class top-1 (%).
    worst_class: float | None = None
    #: Mean top-1 (%) under the corruptions of ``eval.corruptions``: the last epoch only
    #: (None in other epochs and without ``eval.corruptions``).
    corruption: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricsRow:
        return cls(**_known(cls, data))


#: The per-epoch numbers of a metrics row (all but its position, epoch and step).
METRIC_KEYS: tuple[str, ...] = tuple(f.name for f in fields(MetricsRow)
                                     if f.name not in ("epoch", "step"))


@dataclass(frozen=True)
class Metric:
    """A final number of a run that a report can decide: where it lives and which way is
    better."""

    #: Its name on the report's command line (``--metric``), in a study's ``primary:`` and
    #: ``metrics:``, and in the report frame's columns (``delta_<name>``).
    name: str
    #: Its key in a run's :class:`Final` / :class:`MetricsRow`.
    key: str
    #: How a table names it, and its unit.
    label: str
    unit: str
    #: Whether a larger value is better (lower is better for NLL and ECE).
    higher_is_better: bool
    #: Read from the database's result row (top-1, top-5) rather than the run's last
    #: metrics row.
    in_result: bool = False

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


#: The metrics a report can decide, by name (:mod:`zoo.metrics` defines the evaluation's).
REPORTABLE: dict[str, Metric] = {m.name: m for m in (
    Metric("top1", "top1", "top-1", "%", True, in_result=True),
    Metric("top5", "top5", "top-5", "%", True, in_result=True),
    Metric("nll", "val_loss", "NLL", "nats", False),
    Metric("ece", "ece", "ECE", "%", False),
    Metric("worst_class", "worst_class", "worst-class top-1", "%", True),
    Metric("corruption", "corruption", "corruption top-1", "%", True),
)}


@dataclass(frozen=True)
class Final:
    """The last epoch's numbers."""

    top1: float | None = None
    top5: float | None = None
    #: The evaluation's cross-entropy: the NLL of the true class, in nats per image.
    val_loss: float | None = None
    train_loss: float | None = None
    #: Expected calibration error (%) and worst-class top-1 (%) (:mod:`zoo.metrics`).
    ece: float | None = None
    worst_class: float | None = None
    #: Mean top-1 (%) under ``eval.corruptions``, and each corruption's mean over its
    #: five severities (None without ``eval.corruptions``).
    corruption: float | None = None
    corruptions: dict[str, float] | None = None


@dataclass(frozen=True)
class Best:
    """The epoch of the best top-1, and its numbers (None before any epoch)."""

    top1: float | None = None
    top5: float | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class Audit:
    """What one trick did to the run (``effective``: whether it changed anything)."""

    trick: str
    summary: str
    effective: bool = True
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"trick": self.trick, "summary": self.summary,
                               "effective": self.effective}
        if self.details:
            out["details"] = self.details
        return out


Status = Literal["succeeded", "failed"]


@dataclass(frozen=True)
class RunResult:
    """``result.json``: how a training session ended, written last."""

    status: Status
    error: str | None
    hash: str
    model: str
    epochs: int
    epochs_completed: int
    final: Final
    best: Best
    params: int | None
    macs: int | None
    wall_seconds: float
    device_hours: float
    images_per_s: float | None
    world_size: int
    device_type: str
    audit: tuple[Audit, ...] = ()
    session_seconds: float | None = None
    finished_at: str | None = None
    failed_epoch: int | None = None
    #: Whether another attempt could end otherwise: False for a failure the same config,
    #: data and checkpoint repeat every time (a config or data error, a bad image without
    #: ``data.skip_bad``), which the orchestrator does not retry.
    retryable: bool = True

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["final"], out["best"] = asdict(self.final), asdict(self.best)
        out["audit"] = [a.to_dict() for a in self.audit]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        known = _known(cls, data)
        known["final"] = Final(**_known(Final, data.get("final") or {}))
        known["best"] = Best(**_known(Best, data.get("best") or {}))
        known["audit"] = tuple(Audit(**_known(Audit, a)) for a in data.get("audit") or ())
        return cls(**known)


@dataclass(frozen=True)
class CodeInfo:
    """The code a run trained with: the git commit of the checkout and whether the tree
    had changes; the components it names with their code's fingerprints (its identity,
    see :mod:`zoo.fingerprint`); the training loop's fingerprint; its plugins' snapshot."""

    commit: str | None = None
    dirty: bool | None = None
    #: Component -> ``{"fingerprint": str, "modules": {module: file}}``.
    components: dict[str, Any] = field(default_factory=dict)
    #: Fingerprint of the training loop (``zoo.train`` and what it imports), recorded only.
    core: str | None = None

    def fingerprints(self) -> dict[str, str]:
        """Component -> fingerprint (what a run's hash covers besides its config)."""
        return {k: str(v.get("fingerprint")) for k, v in self.components.items()}


@dataclass(frozen=True)
class RunConfigFile:
    """``config.json``: the fully resolved config, its hash, the code and environment it
    ran with, and facts the trainer resolved at start (classes, steps per epoch, ...)."""

    hash: str
    config: dict[str, Any]
    code: CodeInfo = field(default_factory=CodeInfo)
    env: dict[str, Any] = field(default_factory=dict)
    #: What else the trainer wrote (classes, steps_per_epoch, tricks, channels_last).
    extra: dict[str, Any] = field(default_factory=dict)
    #: The config's part of ``hash`` (``zoo.config.config_hash``); None before code was.
    config_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"hash": self.hash, "config_hash": self.config_hash, "config": self.config,
                "code": asdict(self.code), "env": self.env, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfigFile:
        own = ("hash", "config_hash", "config", "code", "env")
        return cls(hash=str(data.get("hash", "")), config=dict(data.get("config") or {}),
                   code=CodeInfo(**_known(CodeInfo, data.get("code") or {})),
                   env=dict(data.get("env") or {}), config_hash=data.get("config_hash"),
                   extra={k: v for k, v in data.items() if k not in own})


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RunDir:
    """A run directory, read through the contract. A file absent or not yet complete
    reads as None (or no metrics rows)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def file(self, name: str) -> Path:
        return self.path / name

    def _json(self, name: str) -> Any:
        try:
            return read_json(self.path / name)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def config(self) -> RunConfigFile | None:
        data = self._json(CONFIG)
        return None if data is None else RunConfigFile.from_dict(data)

    def result(self) -> RunResult | None:
        data = self._json(RESULT)
        return None if data is None else RunResult.from_dict(data)

    def metrics(self) -> list[MetricsRow]:
        return read_metrics(self.path / METRICS)
