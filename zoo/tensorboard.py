"""TensorBoard event files for one run, written by rank 0 into ``RUN_DIR/tensorboard/``.

Per epoch (global step = epoch, as in ``metrics.jsonl``): train loss, learning rate,
images/s, validation loss, top-1 and top-5. At the end: the final and best metrics as
scalars and the resolved config through the HParams plugin, so ``tensorboard --logdir
runs/`` compares a study's runs curve by curve and in the HParams table.

A run resumed from its epoch-E checkpoint opens the same event directory with
``purge_step=E + 1``: TensorBoard then drops whatever an earlier session wrote for epoch
E + 1 and later (it died after logging an epoch but before that epoch's checkpoint), so
the curves hold each epoch once.

Run names: TensorBoard names a run by the event directory's path under ``--logdir``.
A launcher that knows the study passes :func:`run_name` of the run's variant and seed in
the :data:`RUN_NAME_ENV` environment variable (torchrun hands it to every rank), which
makes the directory ``RUN_DIR/tensorboard/<variant>/seed<N>``; without it the events sit
in ``RUN_DIR/tensorboard``. The name is not part of the config, so it never changes a
run's hash. A run keeps the directory its first session chose, so a resume by another
study (another variant name for the same config) does not split its curves.

Importing this module costs no torch import: the launcher uses :func:`run_name` too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

#: The run directory's sub-directory that holds the event files.
BOARD_DIR = "tensorboard"
#: Environment variable a launcher sets to the run's TensorBoard name (:func:`run_name`).
RUN_NAME_ENV = "ZOO_RUN_NAME"
#: ``metrics.jsonl`` key -> TensorBoard scalar tag, one point per epoch.
EPOCH_TAGS = {
    "train_loss": "train/loss",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
    "grad_scale": "train/grad_scale",  # fp16 only; None otherwise and then left out
    "val_loss": "val/loss",
    "top1": "val/top1",
    "top5": "val/top5",
}
#: ``result.json`` value (a path of keys) -> scalar tag, written once at the end, at the
#: last completed epoch; the HParams table shows them as its metric columns.
RESULT_TAGS = {
    ("final", "top1"): "final/top1",
    ("final", "top5"): "final/top5",
    ("final", "val_loss"): "final/val_loss",
    ("final", "train_loss"): "final/train_loss",
    ("best", "top1"): "best/top1",
    ("best", "top5"): "best/top5",
    ("images_per_s",): "result/images_per_s",
    ("device_hours",): "result/device_hours",
    ("params",): "result/params",
    ("macs",): "result/macs",
}
_EVENT_FILE = "events.out.tfevents.*"  # the name every TensorBoard event file starts with


def run_name(variant: str, seed: int) -> str:
    """The TensorBoard run name of a study's (variant, seed): ``label_smoothing/seed0``.

    Characters other than letters, digits, ``.``, ``-`` and ``_`` become ``_`` so the name
    is one safe directory on every file system; TensorBoard's run filter (a regex) then
    finds a variant's seeds by its name."""
    slug = re.sub(r"[^\w.-]+", "_", variant).strip("_") or "variant"
    return f"{slug}/seed{seed}"


def hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A resolved config as HParams values: ``{"optim.lr": 0.4, "data.mean": "[...]"}``.

    The plugin takes only bool, number and string values: lists become their JSON text, a
    mapping without entries (a trick without parameters) becomes ``"{}"`` so the trick
    still shows as a column, and None (unset) is left out."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(hparams(value, f"{dotted}."))
        elif isinstance(value, (Mapping, list, tuple)):
            out[dotted] = json.dumps(value)
        elif isinstance(value, (bool, int, float, str)):
            out[dotted] = value
    return out


class RunBoard:
    """The event files of one run. Create it on every rank with ``enabled`` true on rank
    0 only (and only when ``tensorboard: true``): elsewhere every method does nothing.

    ``start_epoch`` is the first epoch this session trains (1, or the checkpoint's epoch
    + 1 on a resume); anything logged before for that epoch or later is superseded."""

    def __init__(self, out: Path, config: Mapping[str, Any], run_name: str | None = None,
                 enabled: bool = True, start_epoch: int = 1) -> None:
        self.config = dict(config)
        self.writer: SummaryWriter | None = None
        self.logdir: Path | None = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = event_dir(Path(out), run_name)
        # purge_step writes a SessionLog.START at that step; TensorBoard's reader drops
        # every event of an earlier file at that step or later.
        self.writer = SummaryWriter(str(self.logdir), purge_step=start_epoch)

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """One ``metrics.jsonl`` row (needs ``epoch``); flushed, so a running
        TensorBoard shows the epoch at once."""
        if self.writer is None:
            return
        for key, tag in EPOCH_TAGS.items():
            value = row.get(key)
            if value is not None:
                self.writer.add_scalar(tag, float(value), global_step=int(row["epoch"]))
        self.writer.flush()

    def log_result(self, result: Mapping[str, Any]) -> None:
        """The final metrics (``result.json``'s dict) as scalars and the config as HParams.

        Only the session's hparams and, for a succeeded run, its end (status SUCCESS) are
        written, not an ``Experiment`` summary: TensorBoard takes one experiment summary
        from an arbitrary run, whose keys would hide those of the other variants' configs,
        whereas without one it builds the table from every run's hparams and scalar tags.
        """
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        step = int(result.get("epochs_completed") or 0)
        finals: dict[str, float] = {}
        for path, tag in RESULT_TAGS.items():
            value: Any = result
            for key in path:
                value = value.get(key) if isinstance(value, Mapping) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                finals[tag] = float(value)
                self.writer.add_scalar(tag, float(value), global_step=step)
        _, session_start, session_end = hparams_summaries(hparams(self.config), finals)
        file_writer = self.writer.file_writer
        assert file_writer is not None  # open until close()
        file_writer.add_summary(session_start, global_step=step)
        if result.get("status") == "succeeded":  # any other status stays "unknown"
            file_writer.add_summary(session_end, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> RunBoard:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def event_dir(out: Path, run_name: str | None = None) -> Path:
    """Where ``out``'s events go: the directory an earlier session wrote into, if any,
    else ``out/tensorboard/<run_name>`` (``out/tensorboard`` without a name)."""
    root = out / BOARD_DIR
    earlier = sorted({p.parent for p in root.rglob(_EVENT_FILE)}) if root.is_dir() else []
    if earlier:
        return earlier[0]
    return root / run_name if run_name else root
