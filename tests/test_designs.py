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
import yaml

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
    assert html.count("<table") == 2
