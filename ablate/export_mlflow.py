"""``ablate export mlflow STUDY --tracking-uri URI``: a study's runs in an MLflow tracker.

Each run becomes one MLflow run in the experiment named for the study: params = the
flattened resolved config, metrics per epoch (step = epoch, as in ``metrics.jsonl`` and
the TensorBoard events), tags ``ablate.variant``, ``ablate.seed``, ``ablate.hash`` and
``ablate.status`` (plus MLflow's own git-commit tag), and ``result.json`` and
``config.json`` as artifacts. Exporting again creates nothing new: a run is found by its
hash tag and only brought up to date (epochs trained since, a new status, the result).

Needs the optional extra ``ablate[mlflow]`` (``mlflow-skinny``: the client for a tracking
server and for local file stores). Torch-free: it reads only the run directories' files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError
from ablate.report import flatten
from zoo.contract import CONFIG as CONFIG_FILE
from zoo.contract import METRICS as METRICS_FILE
from zoo.contract import RESULT as RESULT_FILE
from zoo.tensorboard import run_name

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

TAG_HASH, TAG_VARIANT, TAG_SEED, TAG_STATUS = (
    "ablate.hash", "ablate.variant", "ablate.seed", "ablate.status")
#: The last epoch exported: a later export sends only the epochs after it.
TAG_EPOCHS = "ablate.epochs"
#: MLflow's own tag for the code version, shown in its UI as the run's source commit.
TAG_COMMIT = "mlflow.source.git.commit"
#: Longest param value sent. MLflow 2.x and 3.x accept 6,000 characters, 1.x servers only
#: 500; no resolved config value comes near it, and config.json goes along whole anyway.
PARAM_VALUE_LIMIT = 500
#: ablate's run status -> MLflow's (mlflow.entities.RunStatus names).
MLFLOW_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED",
                 "lost": "KILLED", "cancelled": "KILLED", "running": "RUNNING",
                 "queued": "SCHEDULED"}
_TERMINAL = {"FINISHED", "FAILED", "KILLED"}
#: metrics.jsonl keys that are the step, not a metric.
_NOT_METRICS = {"epoch", "step"}


@dataclass(frozen=True)
class ExportRun:
    """One (variant, seed) of a study, as the results database knows it."""

    run_dir: Path
    hash: str
    variant: str
    seed: int
    status: str


@dataclass
class ExportSummary:
    """What an export did, by run hash."""

    experiment: str
    experiment_id: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: hash -> why it was not exported (it never started: no config.json yet).
    skipped: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the terminal."""
        parts = [f"{len(self.created)} created", f"{len(self.updated)} updated",
                 f"{len(self.unchanged)} unchanged"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (not started)")
        return f"MLflow experiment '{self.experiment}' ({self.experiment_id}): " + ", ".join(
            parts)


@dataclass(frozen=True)
class RunFiles:
    """What a run directory holds, as the export needs it."""

    config: dict[str, Any]  # config.json: {"hash", "config", "code", "env", ...}
    metrics: list[dict[str, Any]]
    result: dict[str, Any] | None
    #: Files sent as artifacts: result.json (once written) and config.json.
    artifacts: list[Path]


def read_run_files(run_dir: Path) -> RunFiles | None:
    """The one place that reads a run directory; None before the trainer wrote its config.

    metrics.jsonl's last line counts only once its newline is written (the trainer may be
    appending it right now)."""
    config_path, result_path = run_dir / CONFIG_FILE, run_dir / RESULT_FILE
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise AblateError(f"{config_path}: not valid JSON ({exc}); the run directory is "
                          f"damaged: retrain the run or remove it from the study") from None
    try:
        text = (run_dir / METRICS_FILE).read_text()
    except FileNotFoundError:
        text = ""
    metrics = [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    artifacts = [p for p in (result_path, config_path) if p.exists()]
    return RunFiles(config=config, metrics=metrics, result=result, artifacts=artifacts)


def params_of(config: Mapping[str, Any]) -> dict[str, str]:
    """The resolved config as MLflow params: dotted keys, values as text (JSON for
    numbers, booleans, lists and ``{}``), each cut to :data:`PARAM_VALUE_LIMIT`."""
    out = {}
    for key, value in flatten(config).items():
        text = value if isinstance(value, str) else json.dumps(
            list(value) if isinstance(value, tuple) else value)
        if len(text) > PARAM_VALUE_LIMIT:
            text = text[: PARAM_VALUE_LIMIT - 1] + "…"
        out[key] = text
    return out


def _metrics(rows: Iterable[Mapping[str, Any]], timestamp: int) -> list[Any]:
    from mlflow.entities import Metric

    return [Metric(key, float(value), timestamp, int(row["epoch"]))
            for row in rows for key, value in row.items()
            if key not in _NOT_METRICS and isinstance(value, (int, float))
            and not isinstance(value, bool)]


def _client(tracking_uri: str) -> MlflowClient:
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise AblateError("MLflow is not installed: pip install 'ablate[mlflow]'") from None
    try:
        return MlflowClient(tracking_uri=tracking_uri)
    except ImportError as exc:  # e.g. sqlite:// with mlflow-skinny: no SQLAlchemy store
        raise AblateError(f"tracking URI '{tracking_uri}': needs the full MLflow package "
                          f"(pip install mlflow; missing {exc.name}), or use an MLflow "
                          f"server's http:// URI") from None
    except MlflowException as exc:
        if "MLFLOW_ALLOW_FILE_STORE" in str(exc):
            raise AblateError(
                f"tracking URI '{tracking_uri}': MLflow 3 writes to a local file store only "
                f"with MLFLOW_ALLOW_FILE_STORE=true in the environment; set it, or use an "
                f"MLflow server's http:// URI") from None
        raise AblateError(f"tracking URI '{tracking_uri}': {exc.message}") from None


def _experiment_id(client: MlflowClient, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name)
    if experiment.lifecycle_stage == "deleted":
        raise AblateError(f"MLflow experiment '{name}' at '{tracking_uri}' is deleted; "
                          f"restore it (mlflow experiments restore --experiment-id "
                          f"{experiment.experiment_id}) or delete it for good (mlflow gc)")
    return str(experiment.experiment_id)


def _exported(client: MlflowClient, experiment_id: str) -> dict[str, Any]:
    """The experiment's active runs that an export made, by hash: one listing, paged."""
    found: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            run_hash = run.data.tags.get(TAG_HASH)
            if run_hash:
                found.setdefault(run_hash, run)
        token = page.token
        if not token:
            return found


def export_runs(runs: Iterable[ExportRun], experiment: str,
                tracking_uri: str) -> ExportSummary:
    """Export ``runs`` into MLflow experiment ``experiment`` at ``tracking_uri``.

    A run already exported (same hash tag, in this experiment, not deleted) gets only
    the epochs after its ``ablate.epochs`` tag, its new status and its result; one with
    nothing new is left alone, so exporting twice creates nothing. Runs that never
    started (no config.json) are skipped."""
    from mlflow.entities import Param, RunTag

    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, experiment, tracking_uri)
    summary = ExportSummary(experiment=experiment, experiment_id=experiment_id)
    done = _exported(client, experiment_id)
    now = int(time.time() * 1000)
    for run in runs:
        files = read_run_files(Path(run.run_dir))
        if files is None:
            summary.skipped[run.hash] = f"no {CONFIG_FILE} in {run.run_dir}"
            continue
        last_epoch = files.metrics[-1]["epoch"] if files.metrics else 0
        status = MLFLOW_STATUS.get(run.status, "RUNNING")
        tags = {TAG_HASH: run.hash, TAG_VARIANT: run.variant, TAG_SEED: str(run.seed),
                TAG_STATUS: run.status, TAG_EPOCHS: str(last_epoch)}
        commit = (files.config.get("code") or {}).get("commit")
        if commit:
            tags[TAG_COMMIT] = commit
        previous = done.get(run.hash)
        if previous is None:
            mlflow_run = client.create_run(experiment_id, run_name=run_name(run.variant,
                                                                            run.seed))
            run_id, rows = mlflow_run.info.run_id, files.metrics
            params = [Param(k, v) for k, v in params_of(files.config.get("config") or {})
                      .items()]
            summary.created.append(run.hash)
        else:
            old = previous.data.tags
            since = int(old.get(TAG_EPOCHS, "0"))
            if (since == last_epoch and old.get(TAG_STATUS) == run.status
                    and previous.info.status == status):
                summary.unchanged.append(run.hash)
                continue
            run_id, params = previous.info.run_id, []
            rows = [r for r in files.metrics if r["epoch"] > since]
            summary.updated.append(run.hash)
        client.log_batch(run_id, metrics=_metrics(rows, now), params=params,
                         tags=[RunTag(k, v) for k, v in tags.items()])
        for path in files.artifacts:  # same name again: replaced, not added
            client.log_artifact(run_id, str(path))
        if status in _TERMINAL:
            client.set_terminated(run_id, status=status)
        else:
            client.update_run(run_id, status=status)
    return summary


def export_study(study: str, tracking_uri: str, db: str | None = None) -> ExportSummary:
    """The body of ``ablate export mlflow STUDY --tracking-uri URI [--db URL]``: every
    (variant, seed) of ``study`` in the results database, into the experiment ``study``."""
    from ablate.store.db import Store

    store = Store(db, create=False)
    try:
        rows = store.study_runs(study)
    finally:
        store.close()
    runs = [ExportRun(run_dir=Path(r.run_dir), hash=r.hash, variant=r.variant,
                      seed=int(r.seed), status=str(r.status)) for r in rows]
    return export_runs(runs, experiment=study, tracking_uri=tracking_uri)
