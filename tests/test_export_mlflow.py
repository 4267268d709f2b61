"""ablate.export_mlflow: a study's runs into a local MLflow file store, read back with
MLflow's own client; exporting twice creates nothing; a run trained further is updated.

The run directories are rebuilt from the committed results.db (real configs, real
per-epoch metrics and results of the fashion_mnist_tricks study), in the shapes
zoo.train writes them."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("mlflow")
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from ablate.errors import AblateError
from ablate.export_mlflow import (
    PARAM_VALUE_LIMIT,
    TAG_HASH,
    ExportRun,
    export_runs,
    export_study,
)
from tests.conftest import LIMIT

ROOT = Path(__file__).resolve().parent.parent
STUDY = "fashion_mnist_tricks"


@pytest.fixture
def db(results_db: Path) -> Path:
    return results_db


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # MLflow 3 keeps file stores behind this opt-in (ablate says so when it is missing).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return f"file:{tmp_path / 'mlruns'}"


def _study_runs(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(
            "SELECT study_run.variant, study_run.seed, run.* FROM study_run "
            "JOIN run ON run.hash = study_run.run_hash JOIN study ON study.id = "
            "study_run.study_id WHERE study.name = ? ORDER BY variant_index, seed", (STUDY,))]


def _epochs(db: Path, run_hash: str) -> list[dict[str, Any]]:
    by_epoch: dict[int, dict[str, Any]] = defaultdict(dict)
    with sqlite3.connect(db) as con:
        for epoch, key, value in con.execute(
                "SELECT epoch, key, value FROM metric WHERE run_hash = ? ORDER BY epoch",
                (run_hash,)):
            by_epoch[epoch][key] = value
    return [{"epoch": e, "step": e * 94, **m} for e, m in sorted(by_epoch.items())]


def _write_run_dir(db: Path, run: dict[str, Any], out: Path, epochs: int | None = None,
                   finished: bool = True) -> list[dict[str, Any]]:
    """config.json, metrics.jsonl (the first ``epochs`` lines) and, if ``finished``,
    result.json of ``run``, as zoo.train writes them. Returns the metric rows written."""
    out.mkdir(parents=True, exist_ok=True)
    rows = _epochs(db, run["hash"])[:epochs]
    (out / "config.json").write_text(json.dumps({
        "hash": run["hash"], "config": json.loads(run["config"]),
        "code": {"commit": run["code_commit"], "dirty": bool(run["code_dirty"])},
        "env": {"torch": "2.14.1", "world_size": 1}, "steps_per_epoch": 94}, indent=2))
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        with sqlite3.connect(db) as con:
            con.row_factory = sqlite3.Row
            res = dict(con.execute("SELECT * FROM result WHERE run_hash = ?",
                                   (run["hash"],)).fetchone())
        (out / "result.json").write_text(json.dumps({
            "status": "succeeded", "error": None, "hash": run["hash"], "model": "resnet20",
            "epochs": run["epochs"], "epochs_completed": rows[-1]["epoch"],
            "final": {"top1": res["top1"], "top5": res["top5"],
                      "val_loss": rows[-1]["val_loss"], "train_loss": rows[-1]["train_loss"]},
            "best": {"top1": res["best_top1"], "top5": res["best_top5"], "epoch": 4},
            "params": res["params"], "macs": res["macs"], "wall_seconds": res["seconds"],
            "device_hours": res["device_hours"], "images_per_s": res["images_per_s"],
            "world_size": 1, "device_type": "cpu", "audit": json.loads(res["audit"] or "[]"),
        }, indent=2))
    return rows


def _expected_params(config: dict[str, Any]) -> dict[str, str]:
    """pandas' flattening (it drops empty mappings, which the export keeps as '{}')."""
    flat = pd.json_normalize(config, sep=".").to_dict(orient="records")[0]
    out = {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items()}
    out["model.options"] = "{}"
    if not config["tricks"]:
        out["tricks"] = "{}"
    for trick, params in config["tricks"].items():
        if not params:
            out[f"tricks.{trick}"] = "{}"
    return out


def _runs(client: MlflowClient, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)


def test_round_trip_read_back_with_mlflows_client(db: Path, store: str, tmp_path: Path) -> None:
    runs = _study_runs(db)[:4]  # baseline seeds 0-2, label smoothing seed 0
    exported, written = [], {}
    for i, run in enumerate(runs):
        out = tmp_path / "runs" / run["hash"]
        running = i == 3  # still training: two epochs so far, no result yet
        written[run["hash"]] = _write_run_dir(db, run, out, epochs=2 if running else None,
                                              finished=not running)
        exported.append(ExportRun(out, run["hash"], run["variant"], run["seed"],
                                  "running" if running else run["status"]))
    never_started = ExportRun(tmp_path / "runs" / "none", "ffffffffffffffff", "mixup", 0,
                              "queued")
    summary = export_runs([*exported, never_started], STUDY, store)
    assert summary.created == [r.hash for r in exported]
    assert summary.skipped.keys() == {"ffffffffffffffff"}
    assert "4 created, 0 updated, 0 unchanged, 1 skipped" in summary.line()

    client = MlflowClient(tracking_uri=store)
    got = {r.data.tags[TAG_HASH]: r for r in _runs(client, STUDY)}
    assert got.keys() == {r.hash for r in exported}
    for run, export in zip(runs, exported, strict=True):
        mlflow_run = got[run["hash"]]
        tags = mlflow_run.data.tags
        assert (tags["ablate.variant"], tags["ablate.seed"], tags["ablate.status"]) == (
            run["variant"], str(run["seed"]), export.status)
        assert tags["mlflow.source.git.commit"] == run["code_commit"]
        assert mlflow_run.info.run_name == (
            f"{run['variant'].replace(' ', '_')}/seed{run['seed']}")
        assert mlflow_run.info.status == ("RUNNING" if export.status == "running"
                                          else "FINISHED")
        assert mlflow_run.data.params == _expected_params(json.loads(run["config"]))
        rows = written[run["hash"]]
        for key in ("top1", "top5", "val_loss", "train_loss", "lr", "images_per_s"):
            history = client.get_metric_history(mlflow_run.info.run_id, key)
            assert sorted((m.step, m.value) for m in history) == [
                (r["epoch"], pytest.approx(r[key])) for r in rows], key
        names = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
        if export.status == "running":
            assert names == {"config.json"}
        else:
            assert names == {"config.json", "result.json"}
            local = client.download_artifacts(mlflow_run.info.run_id, "result.json",
                                              str(tmp_path / "dl" / run["hash"]))
            assert json.loads(Path(local).read_text()) == json.loads(
                (export.run_dir / "result.json").read_text())

    # Exporting again creates nothing and changes nothing.
    again = export_runs(exported, STUDY, store)
    assert again.unchanged == [r.hash for r in exported] and not again.created + again.updated
    assert len(_runs(client, STUDY)) == 4
    assert len(client.get_metric_history(got[runs[0]["hash"]].info.run_id, "top1")) == 4

    # The running run finishes: its later epochs, result and status are added to the
    # same MLflow run, each epoch once.
    last = runs[3]
    rows = _write_run_dir(db, last, exported[3].run_dir)
    finished = ExportRun(exported[3].run_dir, last["hash"], last["variant"], last["seed"],
                         "succeeded")
    third = export_runs([*exported[:3], finished], STUDY, store)
    assert third.updated == [last["hash"]] and len(third.unchanged) == 3
    assert not third.created
    [mlflow_run] = [r for r in _runs(client, STUDY) if r.data.tags[TAG_HASH] == last["hash"]]
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["ablate.status"] == "succeeded"
    history = client.get_metric_history(mlflow_run.info.run_id, "top1")
    assert sorted((m.step, m.value) for m in history) == [
        (r["epoch"], pytest.approx(r["top1"])) for r in rows]
    assert {a.path for a in client.list_artifacts(mlflow_run.info.run_id)} == {
        "config.json", "result.json"}
    assert len(_runs(client, STUDY)) == 4


def test_export_study_reads_the_results_database(db: Path, store: str, tmp_path: Path) -> None:
    runs = _study_runs(db)
    with_dirs = runs[::5]  # the others' directories (under /tmp/demo) are gone here
    with sqlite3.connect(db) as con:
        con.execute("UPDATE run SET run_dir = ?", (str(tmp_path / "gone"),))
        for run in with_dirs:
            out = tmp_path / "runs" / run["hash"]
            _write_run_dir(db, run, out)
            con.execute("UPDATE run SET run_dir = ? WHERE hash = ?", (str(out), run["hash"]))
    summary = export_study(STUDY, store, db=f"sqlite:///{db}")
    assert summary.created == [r["hash"] for r in with_dirs]
    assert len(summary.skipped) == len(runs) - len(with_dirs)
    client = MlflowClient(tracking_uri=store)
    got = {(r.data.tags["ablate.variant"], int(r.data.tags["ablate.seed"]))
           for r in _runs(client, STUDY)}
    assert got == {(r["variant"], r["seed"]) for r in with_dirs}


def test_a_long_param_value_is_cut_and_config_json_keeps_it(
        db: Path, store: str, tmp_path: Path) -> None:
    run = _study_runs(db)[0]
    out = tmp_path / "run"
    _write_run_dir(db, run, out)
    config = json.loads((out / "config.json").read_text())
    long_path = "data/" + "x" * 700
    config["config"]["data"]["train"] = long_path
    (out / "config.json").write_text(json.dumps(config))
    export_runs([ExportRun(out, run["hash"], "baseline", 0, "succeeded")], STUDY, store)
    client = MlflowClient(tracking_uri=store)
    [mlflow_run] = _runs(client, STUDY)
    value = mlflow_run.data.params["data.train"]
    assert len(value) == PARAM_VALUE_LIMIT and long_path.startswith(value[:-1])
    local = client.download_artifacts(mlflow_run.info.run_id, "config.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["config"]["data"]["train"] == long_path


def test_errors_are_one_line_with_the_fix(db: Path, store: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run = _study_runs(db)[0]
    out = tmp_path / "run"
    _write_run_dir(db, run, out)
    export = ExportRun(out, run["hash"], "baseline", 0, "succeeded")
    # A deleted experiment of the study's name.
    client = MlflowClient(tracking_uri=store)
    client.delete_experiment(client.create_experiment("old"))
    with pytest.raises(AblateError, match=r"experiment 'old' .* is deleted; restore it"):
        export_runs([export], "old", store)
    # A damaged config.json names the file.
    (out / "config.json").write_text("{")
    with pytest.raises(AblateError, match=r"run/config.json: not valid JSON"):
        export_runs([export], STUDY, store)
    # MLflow 3 refuses a file store without its opt-in.
    import mlflow

    if int(mlflow.__version__.split(".")[0]) >= 3:
        monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
        with pytest.raises(AblateError, match="MLFLOW_ALLOW_FILE_STORE=true"):
            export_runs([export], STUDY, f"file:{tmp_path / 'other'}")


def test_the_export_imports_no_torch() -> None:
    """ablate never needs torch: the export (and the run-name helper it shares with
    zoo.tensorboard) import none of it."""
    import subprocess
    import sys

    code = ("import sys, ablate.export_mlflow, zoo.tensorboard; "
            "sys.exit('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=LIMIT)
    assert proc.returncode == 0, proc.stderr
