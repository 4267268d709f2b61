"""The study kinds beyond one-change-at-a-time, end to end on real 8x8 digits through
``ablate run`` and ``ablate report``: an equivalence margin, a 2^(4-1) factorial design,
a models axis. The report's numbers are checked against independent computations
(statsmodels' OLS with seeds as blocks, scipy's paired t-test) on the top-1 the runs
recorded in the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ablate.study.spec import load_study
from tests.conftest import ROOT
from tests.test_orchestrator import ablate, db_rows

STUDIES = ROOT / "studies"


def _report(db: Path, study: str, cwd: Path, *extra: str) -> list[dict[str, Any]]:
    out = ablate("report", study, "--db", f"sqlite:///{db}", "-f", "json", *extra,
                 cwd=cwd).stdout
    return json.loads(out)


def _top1(db: Path, study: str) -> dict[tuple[str, int], float]:
    rows = db_rows(db, "select sr.variant, sr.seed, r.top1 from study_run sr "
                       "join study s on s.id = sr.study_id join result r on "
                       f"r.run_hash = sr.run_hash where s.name = '{study}'")
    return {(v, s): t for v, s, t in rows}


def _run(study_file: Path, digits: Path, tmp: Path) -> Path:
    db = tmp / "results.db"
    ablate("run", str(study_file), "--db", f"sqlite:///{db}", "--runs-dir", str(tmp / "runs"),
           cwd=tmp, env={"DIGITS": str(digits)})
    return db


def test_factorial_study_plans_its_fraction_and_reports_effects_like_statsmodels(
    digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd
    import statsmodels.formula.api as smf

    monkeypatch.setenv("DIGITS", str(digits_dir))
    path = STUDIES / "digits_factorial.yaml"
    study = load_study(path)
    names = [v.name for v in study.variants]
    variants = list(dict.fromkeys(r.variant for r in study.plan()))
    # D = ABC: 8 of the 16 combinations, each factor on in half of them.
    assert len(variants) == 8 and variants[0] == "baseline"
    assert all(sum(n in v.split(" + ") for v in variants) == 4 for n in names)
    db = _run(path, digits_dir, tmp_path)
    report = _report(db, "digits_factorial", tmp_path)
    effects = {r["variant"]: r for r in report if r["kind"] == "effect"}
    # Reference: OLS of top-1 on seed blocks and the +-1 factor columns of the main effects
    # and the two-way interactions that are not aliased with an earlier one.
    top1 = _top1(db, "digits_factorial")
    data = pd.DataFrame([{"y": t, "seed": s, **{f"x{i}": (1 if n in v.split(" + ") else -1)
                                                   for i, n in enumerate(names)}}
                         for (v, s), t in top1.items()])
    fit = smf.ols("y ~ C(seed) + x0 + x1 + x2 + x3 + x0:x1 + x0:x2 + x0:x3", data).fit()
    ci = fit.conf_int(0.05)
    for term, effect in (("x0", names[0]), ("x3", names[3]), ("x0:x1", f"{names[0]}:{names[1]}"),
                         ("x0:x3", f"{names[0]}:{names[3]}")):
        r = effects[effect]
        assert r["delta_top1"] == pytest.approx(2 * fit.params[term], abs=1e-9)
        assert (r["ci_top1_low"], r["ci_top1_high"]) == pytest.approx(
            (2 * ci.loc[term, 0], 2 * ci.loc[term, 1]), abs=1e-9)
        assert r["p_top1"] == pytest.approx(fit.pvalues[term], rel=1e-6)
    # Resolution IV: A:B is aliased with C:D, and the report says so.
    assert effects[f"{names[0]}:{names[1]}"]["aliases"] == f"{names[2]}:{names[3]}"
    assert effects[names[0]]["aliases"] == ""
    md = ablate("report", "digits_factorial", "--db", f"sqlite:///{db}", cwd=tmp_path).stdout
    assert "| effect " in md and "aliased with" in md and "I = ABCD" in md
    html = ablate("report", "digits_factorial", "--db", f"sqlite:///{db}", "-f", "html",
                  cwd=tmp_path).stdout
    # The page carries every effect row, its interval and what it is aliased with.
    for name, r in effects.items():
        assert f">{name}<" in html or f"{name}</" in html, name
        assert f"{r['ci_top1_low']:+.2f}" in html
    assert "I = ABCD" in html


def test_equivalence_study_labels_by_its_margin_like_statsmodels_tost(
    digits_dir: Path, tmp_path: Path
) -> None:
    from scipy import stats
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.weightstats import ttost_paired

    db = _run(STUDIES / "digits_equivalence.yaml", digits_dir, tmp_path)
    report = {r["variant"]: r for r in _report(db, "digits_equivalence", tmp_path)}
    top1 = _top1(db, "digits_equivalence")
    seeds = [0, 1, 2]
    base = [top1[("baseline", s)] for s in seeds]
    names = ["no bias decay", "lr 0.3"]
    p_diff = [stats.ttest_rel([top1[(n, s)] for s in seeds], base).pvalue for n in names]
    p_tost = [ttost_paired(np.array([top1[(n, s)] for s in seeds]), np.array(base),
                           -1.0, 1.0)[0] for n in names]
    holm_diff = multipletests(p_diff, method="holm")[1]
    holm_tost = multipletests(p_tost, method="holm")[1]
    for name, pd_, pt, hd, ht in zip(names, p_diff, p_tost, holm_diff, holm_tost, strict=True):
        r = report[name]
        assert (r["p_top1"], r["p_tost"]) == pytest.approx((pd_, pt), rel=1e-9)
        assert (r["p_top1_holm"], r["p_tost_holm"]) == pytest.approx((hd, ht), rel=1e-9)
        want = ("equivalent" if ht <= 0.05 else
                ("better" if r["delta_top1"] > 0 else "worse") if hd <= 0.05 else "undecided")
        assert r["verdict"] == want and r["margin"] == 1.0
    md = ablate("report", "digits_equivalence", "--db", f"sqlite:///{db}", cwd=tmp_path).stdout
    assert "inside ±1 top-1 points (TOST" in md and "| decision" in md


def test_models_axis_runs_every_variant_on_each_model_with_a_transfer_verdict(
    digits_dir: Path, tmp_path: Path
) -> None:
    from ablate.inference import InferenceError, Paired, transfer

    db = _run(STUDIES / "digits_models.yaml", digits_dir, tmp_path)
    report = _report(db, "digits_models", tmp_path)
    rows = {r["variant"]: r for r in report if r["kind"] == "variant"}
    assert set(rows) == {"baseline @ resnet20", "label smoothing @ resnet20",
                         "baseline @ mobilenetv3_small", "label smoothing @ mobilenetv3_small"}
    assert rows["label smoothing @ mobilenetv3_small"]["model"] == "mobilenetv3_small"
    top1 = _top1(db, "digits_models")
    deltas = {}
    for m in ("resnet20", "mobilenetv3_small"):
        d = np.array([top1[(f"label smoothing @ {m}", s)] - top1[(f"baseline @ {m}", s)]
                      for s in (0, 1)])
        r = rows[f"label smoothing @ {m}"]
        assert r["delta_top1"] == pytest.approx(d.mean(), abs=1e-9)  # its own baseline
        deltas[m] = Paired(2, float(d.mean()), float(d.std(ddof=1)))
    (t,) = [r for r in report if r["kind"] == "transfer"]
    assert t["variant"] == "label smoothing"
    try:
        want = transfer(deltas).verdict
    except InferenceError as exc:  # e.g. a model whose paired differences do not vary
        assert t["verdict"] == "undecided" and t["notes"] == f"no verdict: {exc}"
    else:
        assert t["verdict"] == want
    md = ablate("report", "digits_models", "--db", f"sqlite:///{db}", cwd=tmp_path).stdout
    assert "| trick " in md and "across models" in md


def test_planned_seeds_study_trains_stage_two_in_one_run_and_reports_stein_intervals(
    digits_dir: Path, tmp_path: Path
) -> None:
    """The pilot, then each variant's stage 2 fixed from the pilot (Stein), trained by the
    same ``ablate run``; a rerun trains nothing; the report's interval and p-value equal
    Stein's computed here with scipy from the database's top-1."""
    import math

    from scipy import stats

    path = STUDIES / "digits_planned_seeds.yaml"
    db = tmp_path / "results.db"
    common = ["--db", f"sqlite:///{db}", "--runs-dir", str(tmp_path / "runs")]
    env = {"DIGITS": str(digits_dir)}
    before = ablate("run", str(path), *common, "--dry-run", cwd=tmp_path, env=env).stdout
    assert "plan of 6 runs" in before and "label smoothing: stage 2: planned after the pilot" \
        in before and not db.exists()
    out = ablate("run", str(path), *common, cwd=tmp_path, env=env).stdout
    top1 = _top1(db, "digits_planned_seeds")
    d = {s: top1[("label smoothing", s)] - top1[("baseline", s)]
         for s in range(5) if ("label smoothing", s) in top1}
    h, cap, t = 0.2, 5, stats.t.ppf(0.975, 2)
    s0 = float(np.std([d[0], d[1], d[2]], ddof=1))
    n = min(cap, max(3, math.ceil((t * s0 / h) ** 2)))
    assert n > 3, "the pilot's sd should ask for stage-2 seeds"
    assert sorted(d) == list(range(n))  # stage 2: seeds 3.. trained, nothing beyond n
    assert f"{2 * n} trained, 0 reused, 0 failed" in out and "planned " in out
    again = ablate("run", str(path), *common, cwd=tmp_path, env=env).stdout
    assert f"0 trained, {2 * n} reused" in again
    after = ablate("run", str(path), *common, "--dry-run", cwd=tmp_path, env=env).stdout
    assert f"label smoothing: stage 2: {n - 3} more" in after and "to do" not in after
    row = {r["variant"]: r for r in _report(db, "digits_planned_seeds", tmp_path)}[
        "label smoothing"]
    mean = float(np.mean([d[s] for s in range(n)]))
    se = s0 / math.sqrt(n)
    assert (row["ci_top1_low"], row["ci_top1_high"]) == pytest.approx(
        (mean - t * se, mean + t * se), abs=1e-9)
    assert row["p_top1"] == pytest.approx(2 * stats.t.sf(abs(mean) / se, 2), rel=1e-9)
    assert (row["stage"], row["seeds_planned"], row["target_halfwidth"]) == ("done", n, h)
    assert row["capped"] == (math.ceil((t * s0 / h) ** 2) > cap)
    md = ablate("report", "digits_planned_seeds", "--db", f"sqlite:///{db}",
                cwd=tmp_path).stdout
    assert "| stage" in md and "target ±" in md and "Stein's two-stage" in md
    csv = ablate("report", "digits_planned_seeds", "--db", f"sqlite:///{db}", "-f", "csv",
                 cwd=tmp_path).stdout
    assert "stage,target_halfwidth,capped" in csv.splitlines()[0]
    html = ablate("report", "digits_planned_seeds", "--db", f"sqlite:///{db}", "-f", "html",
                  cwd=tmp_path).stdout
    assert "target ±" in html and "stage 2" in html
