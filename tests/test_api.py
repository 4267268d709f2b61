"""ablate.open: the committed results.db from a notebook, checked against SQL on the raw
rows (sqlite3), read-only (the file's bytes unchanged), and the same frame the report
renders."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import ablate
from ablate.errors import AblateError
from ablate.report import COLUMNS, build_frame
from ablate.store.db import Store

STUDY = "fashion_mnist_tricks"


@pytest.fixture
def db(results_db: Path) -> Path:
    return results_db


def sql(db: Path, query: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(query, args).fetchall()


def test_studies_report_and_metrics_match_the_raw_rows(db: Path) -> None:
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with ablate.open(db) as r:
        assert r.studies() == [n for (n,) in sql(db, "SELECT name FROM study ORDER BY name")]
        report = r.report(STUDY)
        metrics = r.metrics(STUDY)
        assert r.report().equals(report)  # one study in the database: all = that one
    # The frame `ablate report` renders, column for column.
    store = Store(f"sqlite:///{db}", create=False)
    pd.testing.assert_frame_equal(report, build_frame(store, [STUDY]))
    store.close()
    from ablate.report.metrics import METRICS, extra_columns

    # The fixed columns, then those of the metrics the study decides (metrics: [nll, ece]).
    columns = tuple(report.columns)
    assert columns[:len(COLUMNS)] == COLUMNS
    assert sorted(columns[len(COLUMNS):]) == sorted(extra_columns([METRICS["nll"],
                                                                   METRICS["ece"]]))
    assert report["verdict_ece"].iloc[1:].notna().all()  # every variant's ECE decided
    means = dict(sql(db, "SELECT sr.variant, avg(res.top1) FROM study_run sr JOIN result res "
                         "ON res.run_hash = sr.run_hash GROUP BY sr.variant"))
    assert dict(zip(report.variant, report.top1, strict=True)) == pytest.approx(means)
    # Metrics: every (run, epoch, key) row of the metric table, with its variant and seed.
    raw = sql(db, "SELECT sr.variant, sr.seed, m.run_hash, m.epoch, m.key, m.value FROM metric m "
                  "JOIN study_run sr ON sr.run_hash = m.run_hash WHERE m.value IS NOT NULL")
    assert list(metrics.columns) == ["study", "variant", "variant_index", "seed", "hash",
                                     "status", "epoch", "metric", "value"]
    got = sorted(metrics[["variant", "seed", "hash", "epoch", "metric", "value"]]
                 .itertuples(index=False, name=None))
    assert got == sorted(raw)
    # 21 runs, 4 epochs, 11 keys: loss, lr, val loss (NLL), top-1, top-5, images, speed,
    # two timings, ECE, worst class (no corruptions in the demo)
    assert len(metrics) == len(raw) == 21 * 4 * 11
    assert set(metrics.status) == {"succeeded"} and (metrics.study == STUDY).all()
    # The mean curve of a variant, as the docstring says a notebook gets it.
    curve = metrics[metrics.metric == "top1"].pivot_table(index="epoch", columns="variant",
                                                          values="value")
    last = dict(sql(db, "SELECT sr.variant, avg(m.value) FROM metric m JOIN study_run sr ON "
                        "sr.run_hash = m.run_hash WHERE m.key = 'top1' AND m.epoch = 4 "
                        "GROUP BY sr.variant"))
    assert curve.loc[4].to_dict() == pytest.approx(last)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # read-only


def test_an_sqlalchemy_url_works_and_bad_input_is_one_error(db: Path, tmp_path: Path) -> None:
    r = ablate.open(f"sqlite:///{db}")
    assert r.studies() == [STUDY] and "results.db" in repr(r)
    with pytest.raises(AblateError, match="unknown study 'nope'"):
        r.metrics("nope")
    r.close()
    missing = tmp_path / "none.db"
    with pytest.raises(AblateError, match="no results database here"):
        ablate.open(missing)
    assert not missing.exists()
