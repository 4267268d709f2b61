"""``ablate export mlflow STUDY --tracking-uri URI``: the committed results.db's study into a
local MLflow file store through the command line, read back with MLflow's own client;
a second export creates nothing; bad input is one line and exit code 2."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient
from test_export_mlflow import _study_runs, _write_run_dir

from ablate.cli import app
from tests.conftest import ROOT

STUDY = "fashion_mnist_tricks"
runner = CliRunner()


def test_export_mlflow_round_trip_through_the_cli(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "results.db"
    shutil.copy(ROOT / "results.db", db)
    runs = _study_runs(db)
    # The baseline's three runs have their run directories here; the other 18 point
    # nowhere (a clone without runs/): skipped, as never started.
    with sqlite3.connect(db) as con:
        for run in runs:
            con.execute("UPDATE run SET run_dir = ? WHERE hash = ?",
                        (str(tmp_path / "runs" / run["hash"]), run["hash"]))
    base = [r for r in runs if r["variant"] == "baseline"]
    written = {r["hash"]: _write_run_dir(db, r, tmp_path / "runs" / r["hash"]) for r in base}
    uri = f"file:{tmp_path / 'mlruns'}"
    args = ["export", "mlflow", STUDY, "--tracking-uri", uri, "--db", f"sqlite:///{db}"]

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    res = runner.invoke(app, args)
    if res.exit_code != 0:  # MLflow 3 keeps file stores behind an opt-in: said in one line
        assert res.exit_code == 2 and "MLFLOW_ALLOW_FILE_STORE=true" in res.output
        assert len(res.output.strip().splitlines()) == 1
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert f"MLflow experiment '{STUDY}'" in first
    assert "3 created" in first or "3 updated" in first or "3 unchanged" in first
    assert "18 skipped (not started)" in first

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(STUDY)
    got = {r.data.tags["ablate.hash"]: r for r in client.search_runs([experiment.experiment_id])}
    assert got.keys() == written.keys()
    for run_hash, rows in written.items():
        run = got[run_hash]
        assert run.data.tags["ablate.variant"] == "baseline"
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "top1")
        assert [(m.step, m.value) for m in history] == [(r["epoch"], r["top1"]) for r in rows]

    res = runner.invoke(app, args)  # again: nothing new
    assert res.exit_code == 0, res.output
    assert "0 created, 0 updated, 3 unchanged" in res.output
    assert len(client.search_runs([experiment.experiment_id])) == 3


def test_unknown_study_and_missing_database_are_one_line_errors(tmp_path: Path) -> None:
    uri = f"file:{tmp_path / 'mlruns'}"
    db = tmp_path / "results.db"
    shutil.copy(ROOT / "results.db", db)
    for study, url, message in [
            ("nope", f"sqlite:///{db}", "nope"),
            (STUDY, f"sqlite:///{tmp_path / 'none.db'}", "no results database here")]:
        res = runner.invoke(app, ["export", "mlflow", study, "--tracking-uri", uri, "--db", url])
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    res = runner.invoke(app, ["export", "mlflow", STUDY])
    assert res.exit_code == 2 and "--tracking-uri" in res.output
