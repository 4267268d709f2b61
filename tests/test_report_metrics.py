"""The report decides every metric, not only top-1: per-metric paired deltas, intervals,
p-values and Holm's adjustment against scipy and statsmodels; the direction of NLL and
ECE; the summary of decided changes ("trade-off"); the primary metric; old runs without
the metrics; every format and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sqlalchemy import select
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import AblateError
from ablate.report import build_frame
from ablate.store.db import MetricRow, RunRow, Store, StudyRow, StudyRunRow
from tests.test_report import BASELINE, ROTATION, SMOOTHING, V, add_study

runner = CliRunner()

#: Final NLL and ECE (%) per (variant, seed); top-1 as in tests/test_report.py.
NLL = {"baseline": {0: 0.90, 1: 0.88, 2: 0.93},
       "label smoothing": {0: 0.95, 1: 0.96, 2: 0.99},    # +0.05 +0.08 +0.06: worse
       "random rotation": {0: 0.89, 1: 0.90, 2: 0.92}}    # -0.01 +0.02 -0.01: undecided
ECE = {"baseline": {0: 4.0, 1: 4.4, 2: 3.9},
       "label smoothing": {0: 2.1, 1: 2.4, 2: 2.0},       # -1.9 -2.0 -1.9: better (lower)
       "random rotation": {0: 5.0, 1: 5.5, 2: 4.8}}       # +1.0 +1.1 +0.9: worse


def _add_finals(store: Store, study: str, key: str,
                values: dict[str, dict[int, float]]) -> None:
    """The last epoch's (4) value of ``key`` per run, and a different one at epoch 3 that
    the report must not read; the run's epochs_done as ingest leaves it."""
    with store.session() as s:
        sid = s.scalar(select(StudyRow.id).where(StudyRow.name == study))
        for variant, seed, h in s.execute(
                select(StudyRunRow.variant, StudyRunRow.seed, StudyRunRow.run_hash)
                .where(StudyRunRow.study_id == sid)):
            if variant in values and seed in values[variant]:
                s.get(RunRow, h).epochs_done = 4
                s.add(MetricRow(run_hash=h, epoch=3, key=key, value=99.0))
                s.add(MetricRow(run_hash=h, epoch=4, key=key, value=values[variant][seed]))


def _variants() -> list[V]:
    return [V("baseline", BASELINE),
            V("label smoothing", SMOOTHING, tricks={"label_smoothing": {"smoothing": 0.1}}),
            V("random rotation", ROTATION, tricks={"random_rotation": {"degrees": 15.0}}),
            V("no metrics yet", {0: 76.1, 1: 76.3, 2: 75.9}, tricks={"dropout": {"rate": 0.1}})]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'results.db'}"
    store = Store(url)
    add_study(store, "calib", _variants())
    _add_finals(store, "calib", "val_loss", NLL)
    _add_finals(store, "calib", "ece", ECE)
    add_study(store, "old", _variants()[:2])  # top-1 only, as the committed results.db
    store.close()
    return url


def _holm(p: list[float]) -> list[float]:
    from statsmodels.stats.multitest import multipletests

    return list(multipletests(p, alpha=0.05, method="holm")[1])


@pytest.mark.parametrize(("metric", "values", "lower_is_better"),
                         [("nll", NLL, True), ("ece", ECE, True)])
def test_each_metric_is_decided_like_scipy_and_statsmodels(
        db: str, metric: str, values: dict[str, dict[int, float]],
        lower_is_better: bool) -> None:
    frame = build_frame(Store(db, create=False), ["calib"], metrics=[metric])
    rows = {r["variant"]: r for r in frame.to_dict("records")}
    base = values["baseline"]
    tested = [v for v in values if v != "baseline"]
    p_values = []
    for variant in tested:
        diffs = np.array([values[variant][s] - base[s] for s in sorted(base)])
        r = rows[variant]
        low, high = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(),
                                     scale=stats.sem(diffs))
        assert r[f"delta_{metric}"] == pytest.approx(diffs.mean(), abs=1e-12)
        assert (r[f"ci_{metric}_low"], r[f"ci_{metric}_high"]) == pytest.approx((low, high))
        assert r[f"sd_diff_{metric}"] == pytest.approx(diffs.std(ddof=1))
        p = stats.ttest_rel([values[variant][s] for s in sorted(base)],
                            [base[s] for s in sorted(base)]).pvalue
        assert r[f"p_{metric}"] == pytest.approx(p, rel=1e-9)
        assert r[metric] == pytest.approx(np.mean(list(values[variant].values())))
        p_values.append(p)
    # Holm within this metric alone: the family is its tested variants.
    for variant, adjusted in zip(tested, _holm(p_values), strict=True):
        r = rows[variant]
        assert r[f"p_{metric}_holm"] == pytest.approx(adjusted, rel=1e-9)
        mean = r[f"delta_{metric}"]
        improved = mean < 0 if lower_is_better else mean > 0
        expected = "undecided" if adjusted > 0.05 else "better" if improved else "worse"
        assert r[f"verdict_{metric}"] == expected
    assert rows["baseline"][f"verdict_{metric}"] == "baseline"
    # A run from before the metric was measured has none: no pairs, top-1 still decided.
    assert rows["no metrics yet"][f"verdict_{metric}"] == "no pairs"
    assert rows["no metrics yet"]["verdict"] in ("better", "worse", "undecided")


def test_changes_summarise_every_decided_metric_with_trade_offs(db: str) -> None:
    frame = build_frame(Store(db, create=False), ["calib"], metrics=["nll", "ece"])
    changes = dict(zip(frame["variant"], frame["changes"], strict=True))
    rows = {r["variant"]: r for r in frame.to_dict("records")}
    smooth = rows["label smoothing"]
    # Top-1 better (Holm over 3 variants), NLL worse, ECE better (lower): a trade-off.
    assert (smooth["verdict"], smooth["verdict_nll"], smooth["verdict_ece"]) == (
        "better", "worse", "better")
    assert changes["label smoothing"] == (
        f"top-1 {smooth['delta_top1']:+.3g}, NLL {smooth['delta_nll']:+.3g}, "
        f"ECE {smooth['delta_ece']:+.3g}: trade-off")
    rotation = rows["random rotation"]
    assert rotation["verdict"] == "worse" and rotation["verdict_ece"] == "worse"
    assert changes["random rotation"].endswith(": worse")
    assert changes["baseline"] == "baseline"


def test_primary_metric_leads_and_is_always_decided(db: str, tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "results.db"
    shutil.copy(db.removeprefix("sqlite:///"), path)
    store = Store(f"sqlite:///{path}")
    with store.session() as s:
        study = s.scalar(select(StudyRow).where(StudyRow.name == "calib"))
        study.spec = {**study.spec, "primary": "ece"}
    frame = build_frame(store, ["calib"])  # no --metric: the primary is decided anyway
    smooth = frame[frame["variant"] == "label smoothing"].iloc[0]
    assert smooth["verdict_ece"] == "better"
    assert smooth["changes"].startswith("ECE ") and "top-1" in smooth["changes"]
    assert "delta_nll" not in frame.columns


@pytest.mark.parametrize(("line", "error"), [
    ("primary: ecee", "primary: 'ecee' is not a metric; did you mean 'ece'"),
    ("metrics: [nll, worst]", "metrics: 'worst' is not a metric; did you mean 'worst_class'"),
    ("metrics: nll", "metrics: expected a list of metric names")])
def test_primary_and_metrics_in_a_study_file_must_be_metrics(
        tmp_path: Path, line: str, error: str) -> None:
    from ablate.errors import StudyError
    from ablate.study.spec import load_study

    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbase: {model: resnet20, data: {train: /x, val: /y}}\n"
                    f"seeds: [0]\n{line}\nvariants: [{{name: a, tricks: {{mixup: {{}}}}}}]\n")
    with pytest.raises(StudyError, match=error.replace("[", "\\[")):
        load_study(path, check_paths=False)


def test_a_study_declares_its_metrics_and_the_readme_findings_name_trade_offs(
        db: str, tmp_path: Path) -> None:
    import shutil

    from ablate.report import render_readme

    path = tmp_path / "results.db"
    shutil.copy(db.removeprefix("sqlite:///"), path)
    store = Store(f"sqlite:///{path}")
    with store.session() as s:
        study = s.scalar(select(StudyRow).where(StudyRow.name == "calib"))
        study.spec = {**study.spec, "metrics": ["nll", "ece"]}
    frame = build_frame(store, ["calib"])  # no --metric: the study file's
    smooth = frame[frame["variant"] == "label smoothing"].iloc[0]
    text = render_readme("<!-- ablate:report calib -->\n<!-- /ablate:report -->\n", store)
    assert (f"Over top-1, NLL and ECE (each its own Holm family), the decided changes: "
            f"label smoothing: {smooth['changes']}; random rotation: ") in text
    assert smooth["changes"].endswith("trade-off") and "Δ ECE" in text


def test_old_runs_without_the_metrics_still_report(db: str) -> None:
    frame = build_frame(Store(db, create=False), ["old"], metrics=["nll", "ece", "corruption"])
    smooth = frame[frame["variant"] == "label smoothing"].iloc[0]
    assert smooth["verdict"] == "better" and smooth["verdict_corruption"] == "no pairs"
    assert pd.isna(smooth["delta_nll"]) and pd.isna(smooth["ci_nll_low"])
    out = runner.invoke(app, ["report", "old", "--db", db, "--metric", "nll"])
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if x.startswith("| resnet50 ")
                and "label smoothing" in x)
    assert line.split("|")[-3].strip() == "-"  # Δ NLL: no pairs


def test_every_format_and_the_command_line_carry_the_metrics(db: str) -> None:
    url = db
    out = runner.invoke(app, ["report", "calib", "--db", url, "--metric", "nll",
                              "--metric", "ece"])
    assert out.exit_code == 0, out.output
    frame = build_frame(Store(url, create=False), ["calib"], metrics=["nll", "ece"])
    smooth = frame[frame["variant"] == "label smoothing"].iloc[0]
    cell = (f"{smooth['delta_ece']:+.3g} [{smooth['ci_ece_low']:+.3g}, "
            f"{smooth['ci_ece_high']:+.3g}] better")
    assert "Δ NLL" in out.output and "Δ ECE" in out.output and cell in out.output
    assert "Each metric is its own family: its decisions are Holm-adjusted across the " \
        "study's variants tested on it (NLL 2, ECE 2)" in out.output  # "no metrics yet": none
    assert "trade-off" in out.output
    csv = runner.invoke(app, ["report", "calib", "--db", url, "-f", "csv", "--metric", "ece"])
    read = pd.read_csv(__import__("io").StringIO(csv.output))
    assert list(read["verdict_ece"])[:3] == ["baseline", "better", "worse"]
    as_json = json.loads(runner.invoke(
        app, ["report", "calib", "--db", url, "-f", "json", "--metric", "nll"]).output)
    assert as_json[1]["p_nll_holm"] == pytest.approx(float(
        frame[frame["variant"] == "label smoothing"]["p_nll_holm"].iloc[0]))
    page = runner.invoke(app, ["report", "calib", "--db", url, "-f", "html", "--metric", "ece"])
    assert page.exit_code == 0 and "Δ ECE" in page.output
    from ablate.api import Results

    with Results(url.removeprefix("sqlite:///")) as results:
        assert "verdict_ece" in results.report("calib", metrics=["ece"]).columns


def test_an_unknown_metric_is_a_one_line_error(db: str) -> None:
    out = runner.invoke(app, ["report", "calib", "--db", db, "--metric", "nl"])
    assert out.exit_code != 0
    assert "unknown metric 'nl'; did you mean 'nll'" in out.output
    with pytest.raises(AblateError, match="unknown metric"):
        build_frame(Store(db, create=False), ["calib"], metrics=["top-1"])


def test_a_factorial_effect_has_its_standard_error_in_its_own_column(tmp_path: Path) -> None:
    """sd_diff_top1 is the sd of per-seed differences of a variant row; an effect row's
    standard error is in se_effect (twice the OLS coefficient's, as statsmodels gives it),
    and its sd_diff_top1 is empty."""
    import statsmodels.formula.api as smf

    top1 = {"baseline": {0: 76.0, 1: 76.4, 2: 75.8}, "A": {0: 76.6, 1: 76.9, 2: 76.5},
            "B": {0: 75.9, 1: 76.5, 2: 75.6}, "A + B": {0: 76.8, 1: 77.3, 2: 76.4}}
    store = Store(f"sqlite:///{tmp_path / 'results.db'}")
    add_study(store, "fact", [V(name, values, tricks={"dropout": {"rate": 0.1 + i / 10}})
                              for i, (name, values) in enumerate(top1.items())],
              mode="factorial")
    with store.session() as s:
        study = s.scalar(select(StudyRow).where(StudyRow.name == "fact"))
        study.spec = {**study.spec, "variants": study.spec["variants"][:2]}  # factors A, B
    frame = build_frame(store, ["fact"])
    effects = {r["variant"]: r for r in frame.to_dict("records") if r["kind"] == "effect"}
    data = pd.DataFrame([{"y": y, "seed": seed, "a": 1 if "A" in v else -1,
                          "b": 1 if "B" in v else -1}
                         for v, values in top1.items() for seed, y in values.items()])
    fit = smf.ols("y ~ C(seed) + a + b + a:b", data).fit()
    for term, name in (("a", "A"), ("b", "B"), ("a:b", "A:B")):
        r = effects[name]
        assert r["delta_top1"] == pytest.approx(2 * fit.params[term], abs=1e-9)
        assert r["se_effect"] == pytest.approx(2 * fit.bse[term], rel=1e-9)
        assert pd.isna(r["sd_diff_top1"])
    variants = frame[frame["kind"] == "variant"]
    assert variants["se_effect"].isna().all() and variants["sd_diff_top1"][1:].notna().all()


def test_trade_off_plot_draws_each_metric_against_top1_and_cost(db: str, tmp_path: Path) -> None:
    from ablate.report.metrics import METRICS
    from ablate.report.plots import tradeoff_points, write_plots

    frame = build_frame(Store(db, create=False), ["calib", "old"], metrics=["nll", "ece"])
    written = write_plots(frame, pd.DataFrame(columns=["study", "variant", "variant_index",
                                                       "seed", "epoch", "top1"]), tmp_path)
    tradeoff = tmp_path / "calib_tradeoff.png"
    assert tradeoff in written and tradeoff.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # "old" has no ECE: nothing to trade off, no file.
    assert not (tmp_path / "old_tradeoff.png").exists()
    rows = frame[(frame["study"] == "calib") & (frame["variant_index"] > 0)].to_dict("records")
    points = {p[0]: p for p in tradeoff_points(rows, METRICS["ece"], "top1")}
    smooth = next(r for r in rows if r["variant"] == "label smoothing")
    assert points["label smoothing"] == (
        "label smoothing", smooth["delta_ece"], smooth["ci_ece"], smooth["delta_top1"],
        smooth["ci_top1"], "trade-off")
    assert "no metrics yet" not in points  # no ECE: no point


def test_the_markdown_report_of_every_metric_renders_rows_without_pandas(db: str) -> None:
    from tests.test_report import assert_markdown_needs_no_frame

    assert_markdown_needs_no_frame(db, *[a for m in ("nll", "ece", "top5")
                                         for a in ("--metric", m)])
