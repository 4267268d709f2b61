"""A newcomer's first hour (issue 20): the report says when runs were computed with
different kernels, findings are generated from the statistics, every command finds the
checkout's database, the study ETA is right, ``ablate models`` and the help fit 80 columns,
and names with rich markup are printed as they are."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from ablate.cli import app
from ablate.store.db import Store
from tests.conftest import ROOT, digits_config

runner = CliRunner()


def ablate(*args: str, cwd: Path, env: dict[str, str] | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m ablate ARGS`` as a real subprocess (the environment is the point)."""
    clean = {k: v for k, v in os.environ.items() if k != "ABLATE_DB"}
    proc = subprocess.run([sys.executable, "-m", "ablate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900,
                          env={**clean, "PYTHONPATH": str(ROOT), **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def tiny_study(data: Path, seeds: list[int], name: str = "kernels") -> dict[str, Any]:
    base = digits_config(data, epochs=1)
    base.pop("seed")
    return {"name": name, "base": base, "launch": {"nproc_per_node": 1}, "seeds": seeds,
            "mode": "add_one",
            # A name that is rich markup: it must be printed as it is, never parsed.
            "variants": [{"name": "[/]", "set": {"optim.lr": 0.05}}]}


# --------------------------------------------------------------------------- kernels


def test_report_flags_runs_made_under_two_cpu_capabilities(digits_dir: Path,
                                                           tmp_path: Path) -> None:
    import torch

    native = torch.backends.cpu.get_cpu_capability()
    if native == "DEFAULT":
        pytest.skip("this CPU has no vector capability beyond DEFAULT to compare with")
    db = f"sqlite:///{tmp_path / 'k.db'}"
    common = ["--db", db, "--runs-dir", str(tmp_path / "runs")]
    study = tmp_path / "kernels.yaml"
    # Seed 0 (baseline and variant) with torch's portable kernels, then seed 1 natively:
    # the study's second run reuses seed 0's runs and trains seed 1's.
    study.write_text(yaml.safe_dump(tiny_study(digits_dir, [0]), sort_keys=False))
    out = ablate("run", str(study), *common, cwd=tmp_path,
                 env={"ATEN_CPU_CAPABILITY": "default"}).stdout
    assert "start   [/] seed 0" in out and "done    [/] seed 0" in out
    study.write_text(yaml.safe_dump(tiny_study(digits_dir, [0, 1]), sort_keys=False))
    plan = ablate("run", str(study), *common, "--dry-run", cwd=tmp_path).stdout
    assert [ln.split()[0] for ln in plan.splitlines()[3:]] == ["baseline", "baseline",
                                                              "[/]", "[/]"]
    ablate("run", str(study), *common, cwd=tmp_path)
    status = ablate("status", *common[:2], cwd=tmp_path).stdout
    assert "\n[/] " in status

    # The reference: each run directory's own config.json, read without ablate.
    recorded = sorted(json.loads(p.read_text())["env"]["determinism"]["cpu_capability"]
                      for p in (tmp_path / "runs").glob("*/config.json"))
    assert recorded == sorted(["DEFAULT", "DEFAULT", native, native])

    out = ablate("report", "kernels", *common[:2], cwd=tmp_path).stdout
    assert "Runs were made on different kernels" in out
    assert f"cpu_capability: {native} in 2 runs, DEFAULT in 2 runs" in out or \
        f"cpu_capability: DEFAULT in 2 runs, {native} in 2 runs" in out
    # Seed 0's pair and seed 1's pair each share their kernels: no delta crosses them.
    assert "compare runs of different kernels" not in out
    assert "| [/] " in out or "[/]" in out.split("baseline", 1)[1]

    readme = tmp_path / "README.md"
    readme.write_text("# r\n\n<!-- ablate:report kernels -->\n<!-- /ablate:report -->\n")
    ablate("report", *common[:2], "--readme", str(readme), cwd=tmp_path)
    assert "Its runs were made on different kernels" in readme.read_text()


def test_a_delta_across_kernels_is_named() -> None:
    from ablate.report.kernels import kernel_note
    from ablate.report.load import RunRecord, StudyRecord

    def run(variant_index: int, seed: int, cap: str) -> RunRecord:
        return RunRecord(
            hash=f"{variant_index}{seed}", study_id=1, variant="base" if not variant_index
            else "mixup", variant_index=variant_index, change="", seed=seed,
            status="succeeded", config_json="{}", top1=1.0,
            env={"determinism": {"cpu_capability": cap, "torch_threads": 1}},
            **{k: None for k in _other_fields()})

    rec = StudyRecord("s", "add_one", {}, (run(0, 0, "AVX2"), run(1, 0, "DEFAULT")))
    note = kernel_note(rec)
    assert note is not None
    assert "cpu_capability: AVX2 in 1 run, DEFAULT in 1 run" in note
    assert "the paired deltas of mixup compare runs of different kernels" in note
    assert "torch_threads" not in note  # only what differs
    same = StudyRecord("s", "add_one", {}, (run(0, 0, "AVX2"), run(1, 0, "AVX2")))
    assert kernel_note(same) is None


def _other_fields() -> list[str]:
    from dataclasses import fields

    from ablate.report.load import RunRecord

    given = {"hash", "study_id", "variant", "variant_index", "change", "seed", "status",
             "config_json", "top1", "env"}
    return [f.name for f in fields(RunRecord) if f.name not in given]


# --------------------------------------------------------------------------- findings


def test_findings_paragraph_states_the_paired_t_intervals(tmp_path: Path) -> None:
    """The generated paragraph against scipy's paired t interval of the same numbers."""
    from ablate.report import render_readme
    from tests.test_report import V, add_study

    base = {0: 76.0, 1: 76.4, 2: 75.8}
    up = {0: 76.5, 1: 76.9, 2: 76.2}
    noise = {0: 76.2, 1: 76.2, 2: 75.9}
    down = {0: 75.0, 1: 75.3, 2: 74.9}
    store = Store(f"sqlite:///{tmp_path / 'f.db'}")
    add_study(store, "f", [V("baseline", base), V("up", up, tricks={"label_smoothing": {}}),
                           V("noise", noise, tricks={"mixup": {}}),
                           V("down", down, tricks={"cutout": {}})])

    def interval(other: dict[int, float]) -> str:
        diffs = [other[s] - base[s] for s in base]
        mean = sum(diffs) / len(diffs)
        low, high = stats.t.interval(0.95, len(diffs) - 1, loc=mean,
                                     scale=stats.sem(diffs))
        return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"

    text = render_readme("<!-- ablate:report f -->\n<!-- /ablate:report -->\n", store)
    store.close()
    para = text.splitlines()[1]
    assert para.startswith("Findings (generated by `ablate report --readme`")
    assert "3 paired seeds" in para
    # The decisions: paired t p-values (scipy), Holm-adjusted by statsmodels.
    from statsmodels.stats.multitest import multipletests

    variants = {"up": up, "noise": noise, "down": down}
    p = [stats.ttest_rel([v[s] for s in base], [base[s] for s in base]).pvalue
         for v in variants.values()]
    reject = dict(zip(variants, multipletests(p, alpha=0.05, method="holm")[0], strict=True))
    assert reject == {"up": True, "noise": False, "down": True}  # the case this test is for
    assert "decisions Holm-adjusted across the 3 variants" in para
    assert f"better than the baseline: up {interval(up)};" in para
    assert f"worse: down {interval(down)}." in para
    assert f"Undecided: noise {interval(noise)}; 3 paired seeds do not decide it." in para
    # Seeds for 80% power from statsmodels' paired (one-sample) t power, independently.
    from statsmodels.stats.power import TTestPower

    diffs = [noise[s] - base[s] for s in base]
    effect = abs(sum(diffs) / 3) / stats.tstd(diffs)
    need = TTestPower().solve_power(effect_size=effect, alpha=0.05, power=0.8)
    assert f"noise {max(2, math.ceil(need))}." in para


def test_readme_paragraph_is_generated_not_typed() -> None:
    text = (ROOT / "README.md").read_text()
    assert "What it says:" not in text
    block = text.split("<!-- ablate:report fashion_mnist_tricks -->", 1)[1]
    assert block.lstrip().startswith("Findings (generated by `ablate report --readme`")
    assert "bitwise the same top-1" not in text


# --------------------------------------------------------------------------- database


def test_every_command_finds_the_checkout_database(digits_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ablate.cli.options import default_db
    from tests.test_report import BASELINE, SMOOTHING, V, add_study

    (tmp_path / "runs").mkdir()
    demo = tmp_path / "runs" / "demo.db"
    store = Store(f"sqlite:///{demo}")
    add_study(store, "demo_study", [V("baseline", BASELINE),
                                    V("label smoothing", SMOOTHING,
                                      tricks={"label_smoothing": {"smoothing": 0.1}})])
    store.close()
    # What make demo writes (the Makefile's own line, run by make).
    out = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    line = next(ln for ln in out.splitlines() if "ablate.toml" in ln)
    subprocess.run(["bash", "-c", line], cwd=tmp_path, check=True)
    assert "--db sqlite:///runs/demo.db" in out  # the database the demo trains into
    sub = tmp_path / "deeper"
    sub.mkdir()
    monkeypatch.delenv("ABLATE_DB", raising=False)
    monkeypatch.chdir(sub)  # found from a sub-directory too
    assert default_db() == f"sqlite:///{demo}"
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert "demo_study: 6/6 runs succeeded" in status.output
    report = runner.invoke(app, ["report"])
    assert report.exit_code == 0, report.output
    assert "## demo_study" in report.output
    # $ABLATE_DB and --db still win; without a project file, results.db.
    monkeypatch.setenv("ABLATE_DB", "sqlite:///elsewhere.db")
    assert default_db() == "sqlite:///elsewhere.db"
    monkeypatch.delenv("ABLATE_DB")
    (tmp_path / "ablate.toml").write_text("db = 3\n")
    bad = runner.invoke(app, ["status"])
    assert bad.exit_code == 2 and "ablate.toml: key 'db'" in bad.output
    (tmp_path / "ablate.toml").unlink()
    assert default_db() == "sqlite:///results.db"


# --------------------------------------------------------------------------- ETA


def _state(variant_index: int, seed: int, status: str, epochs_done: int,
           started: float | None, finished: float | None = None, epochs: int = 4) -> Any:
    from datetime import datetime

    from ablate.store.db import RunState

    t0 = datetime(2025, 1, 1, tzinfo=UTC)

    def at(s: float | None) -> datetime | None:
        return None if s is None else t0 + timedelta(seconds=s)

    fields = {f.name: None for f in __import__("dataclasses").fields(RunState)}
    fields.update(variant=f"v{variant_index}", variant_index=variant_index, change="",
                  seed=seed, hash=f"{variant_index}-{seed}", status=status, run_dir="",
                  epochs=epochs, epochs_done=epochs_done, attempts=1, nproc=1,
                  started_at=at(started), finished_at=at(finished))
    return RunState(**fields)


def test_study_eta_schedules_the_runs_left_over_the_parallel_slots() -> None:
    from datetime import datetime

    from ablate.cli.view import schedule_eta, status_summary, study_eta

    # Two slots busy for 10 s and 30 s, then three runs of 20 s: 10->30, 30->50, 30->50.
    assert schedule_eta([10, 30], [20, 20, 20], 2) == 50
    assert schedule_eta([], [5, 5, 5], 3) == 5
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=400)
    runs = [
        _state(0, 0, "succeeded", 4, 0, 400),   # 100 s per epoch
        _state(0, 1, "running", 2, 200),        # 2 epochs in 200 s: 100 s/epoch, 200 s left
        _state(1, 0, "running", 1, 350),        # 1 epoch in 50 s: 50 s/epoch, 150 s left
        _state(1, 1, "queued", 0, None),        # variant 1's pace: 4 x 50 = 200 s
        _state(2, 0, "queued", 0, None),        # study mean pace (100+100+50)/3 x 4
        _state(2, 1, "failed", 1, 0, 10),       # not trained again without --retry-failed
    ]
    mean = (100 + 100 + 50) / 3
    # Slots free at 150 (takes 200 s -> 350) and at 200 (takes 4*mean -> 200 + 4*mean).
    expected = max(150 + 200, 200 + 4 * mean)
    assert study_eta(runs, now) == pytest.approx(expected)
    text = status_summary("s", runs, now)
    h, m = int(expected) // 60, int(expected) % 60
    assert f"s: 1/6 runs succeeded, study ETA {h}:{m:02d} (4 runs left, 2 in parallel)" \
        in text
    assert study_eta([_state(0, 0, "queued", 0, None)], now) is None  # nothing running


def test_live_view_eta_with_a_fake_clock() -> None:
    from ablate.cli.view import LiveView
    from ablate.launch.orchestrator import Event
    from ablate.study.spec import RunSpec

    clock = [0.0]

    def spec(i: int) -> RunSpec:
        return RunSpec(variant=f"v{i}", variant_index=i, change="", seed=0, hash=f"h{i}",
                       config={}, run_dir="", nproc=1, nproc_per_node=1, nnodes=1, epochs=4,
                       model="resnet20")

    plan = [spec(i) for i in range(5)]
    view = LiveView(5, 0, plan=plan, parallel=2, clock=lambda: clock[0])
    assert view.eta() is None  # nothing timed yet
    view(Event("start", plan[0]))
    view(Event("start", plan[1]))
    clock[0] = 30.0
    view(Event("epoch", plan[0], "1"))        # 30 s per epoch: 90 s left
    assert view.eta() == pytest.approx(
        # run 1 has no epoch yet: 4 x 30 - 30 = 90 s left; three queued runs of 120 s
        # on two slots: 90 -> 210, 90 -> 210, 210 -> 330.
        330.0)
    clock[0] = 40.0
    view(Event("epoch", plan[1], "1"))        # 40 s per epoch: 120 s left
    # run 0: 30 x 3 = 90 s left at its epoch, 10 s ago: 80 s; run 1: 120 s left.
    # Queued at the mean pace 35 s: 140 s each. 80 -> 220, 120 -> 260, 220 -> 360.
    assert view.eta() == pytest.approx(360.0)
    clock[0] = 120.0
    view(Event("done", plan[0]))
    view(Event("start", plan[2]))
    assert view.eta() is not None and view.eta() > 0


# --------------------------------------------------------------------------- 80 columns


def test_models_prints_the_catalog_at_once_in_80_columns() -> None:
    """Without --check no model is built and torch is not imported: the table is the
    catalog's (the first row by design, not by a timing), every line within 80 columns."""
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom ablate.cli import app\n"
            "r = CliRunner().invoke(app, ['models'], env={'COLUMNS': '80'})\n"
            "assert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules, 'ablate models imported torch'\n"
            "print(r.output, end='')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    from zoo.models import get_model_info, list_models

    lines = out.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    for name in list_models():
        info = get_model_info(name)
        row = next(ln for ln in lines if ln.split()[0] == name)
        if info.ref_params_m is not None:
            assert row.split()[1:3] == [f"{info.ref_params_m:.2f}", f"{info.ref_macs_g:.3f}"]


def test_models_check_measures_each_row() -> None:
    result = runner.invoke(app, ["models", "--check", "resnet18"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    import torchvision

    model = torchvision.models.resnet18()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    row = next(ln for ln in result.output.splitlines() if ln.startswith("resnet18 "))
    assert row.split()[1] == f"{params:.2f}"
    assert max(len(ln) for ln in result.output.splitlines()) <= 80


@pytest.mark.parametrize("command", ["status", "report", "run", "db"])
def test_help_is_whole_at_80_columns(command: str) -> None:
    args = [command, "rebuild", "--help"] if command == "db" else [command, "--help"]
    result = runner.invoke(app, args, env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    assert max(len(ln) for ln in result.output.splitlines()) <= 80
    assert "…" not in result.output  # nothing cut
    flat = " ".join(ln.strip("│ ") for ln in result.output.splitlines())
    assert "SQLite file results.db in the working directory" in " ".join(flat.split())


def test_missing_imagenet_names_its_variable(tmp_path: Path) -> None:
    study = ROOT / "studies" / "resnet50_tricks.yaml"
    proc = ablate("run", str(study), "--dry-run", "--db", f"sqlite:///{tmp_path / 'x.db'}",
                  cwd=tmp_path, env={"IMAGENET": str(tmp_path / "imagenet")}, check=False)
    assert proc.returncode == 2
    assert "export IMAGENET=DIR" in proc.stderr and len(proc.stderr.splitlines()) == 1
