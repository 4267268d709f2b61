"""A newcomer's first hour (issue 20): the report says when runs were computed with
different kernels, findings are generated from the statistics, every command finds the
checkout's database, the study ETA is right, ``ablate models`` and the help fit 80 columns,
and names with rich markup are printed as they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
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
            "variants": [{"name": "lr 0.05", "set": {"optim.lr": 0.05}}]}


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
    ablate("run", str(study), *common, cwd=tmp_path, env={"ATEN_CPU_CAPABILITY": "default"})
    study.write_text(yaml.safe_dump(tiny_study(digits_dir, [0, 1]), sort_keys=False))
    ablate("run", str(study), *common, cwd=tmp_path)

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
