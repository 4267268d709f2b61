"""Every registered trick trains for two steps on real images, checkpoints, resumes, and
reports its audit in result.json (the registry-driven test: a new trick is covered without
a new test; Composer's ``tests/algorithms/test_algorithms_train.py`` in spirit).

In-process (``zoo.train.run``) and tiny: 20 digits images (2 per class), batch 8, so one
epoch is two steps; epoch 1 ends in a checkpoint and the session stops, a second session
resumes it for epoch 2. Each trick runs on the smallest model that can take it: ResNet-20
at 8 px, else the small-input ResNet-18 (resnet18_cifar) at 8 px, else the standard
ResNet-18 at 32 px, else ResNet-50 at 32 px. Tricks that need parameters get them from
``PARAMS`` (distillation's teacher is a finished one-epoch run on the same data).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import LIMIT, digits_config, read_metrics, read_result
from zoo import rundir
from zoo.errors import ConfigError
from zoo.train import run
from zoo.tricks import list_tricks, validate_tricks
from zoo.validate import build_config

#: The smallest model (and input size) each trick is tried on, in this order.
MODELS = (("resnet20", 8), ("resnet18_cifar", 8), ("resnet18", 32), ("resnet50", 32))
STEPS_PER_EPOCH = 2
#: Parameters a trick needs to run here (placeholders filled in by ``_params``).
PARAMS: dict[str, dict[str, Any]] = {
    "distillation": {"teacher": "<teacher>", "temperature": 4.0},
    "train_resolution": {"size": 6},
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 training and 1 validation image per class of scikit-learn's digits."""
    from zoo.data.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "digits_tiny"
    prepare("digits", out, train_per_class=2, val_per_class=1)
    return out


@pytest.fixture(scope="module")
def teacher(tiny_digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch ResNet-20 run on the same images, for distillation."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    cfg = digits_config(tiny_digits, data__image_size=8, batch_size=8, epochs=1, log_every=1)
    assert run(build_config(cfg), out) == 0
    return out


def _params(trick: str, teacher: Path | None = None) -> dict[str, Any]:
    return {k: (str(teacher) if v == "<teacher>" else v)
            for k, v in PARAMS.get(trick, {}).items()}


def _model_for(trick: str) -> tuple[str, int]:
    for model, size in MODELS:
        try:
            validate_tricks({trick: _params(trick, Path("."))}, model)
        except ConfigError:
            continue
        return model, size
    raise AssertionError(f"no test model takes trick '{trick}'")


def _config(data: Path, trick: str, teacher: Path | None = None) -> dict[str, Any]:
    model, size = _model_for(trick)
    return digits_config(
        data, model=model, data__image_size=size, batch_size=8, epochs=2, log_every=1,
        tricks={trick: _params(trick, teacher)}, optim__lr=0.02,
    )


@pytest.mark.parametrize("trick", list_tricks())
def test_trick_trains_resumes_and_reports_its_audit(trick: str, tiny_digits: Path,
                                                    tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    teacher = request.getfixturevalue("teacher") if trick == "distillation" else None
    cfg = build_config(_config(tiny_digits, trick, teacher))
    out = tmp_path / "run"
    assert run(cfg, out, stop_after=1) == 0
    assert (out / rundir.CHECKPOINT).exists() and not (out / rundir.RESULT).exists()
    ckpt = rundir.load_checkpoint(out / rundir.CHECKPOINT)  # weights_only=True
    assert trick in ckpt["tricks"]

    assert run(cfg, out) == 0  # resumes at epoch 2
    result = read_result(out)
    assert result["status"] == "succeeded", result["error"]
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2]
    assert all(math.isfinite(m["train_loss"]) for m in read_metrics(out))
    log = (out / rundir.LOG).read_text()
    assert "resumed" in log

    (audit,) = [a for a in result["audit"] if a["trick"] == trick]
    assert audit["summary"].startswith(f"{trick}:")
    assert isinstance(audit["effective"], bool)
    if not audit["effective"]:
        assert f"trick {trick} had no effect" in log
    # Counts kept in the trick's state cover both sessions.
    details = audit.get("details", {})
    total = 2 * STEPS_PER_EPOCH
    if "steps" in details:
        assert details["steps"] == total
    if "updates" in details:
        assert details["updates"] == total
    config = json.loads((out / rundir.CONFIG).read_text())
    assert [t["trick"] for t in config["tricks"]] == [trick]


#: Tricks that act at every point of the loop, combined in one run.
COMBINED = {
    "mixup": {}, "cutmix": {}, "label_smoothing": {}, "ema": {"decay": 0.9},
    "lookahead": {"k": 3}, "no_bias_decay": {}, "gradient_centralization": {},
    "zero_gamma": {}, "stochastic_depth": {"rate": 0.2}, "swish": {}, "randaugment": {},
    "random_erasing": {"p": 0.5}, "dropout": {},
}


def test_combined_tricks_resume_exactly_like_an_uninterrupted_run(
    tiny_digits: Path, tmp_path: Path
) -> None:
    base = _config(tiny_digits, "mixup")
    cfg = build_config({**base, "tricks": COMBINED})
    assert run(cfg, tmp_path / "whole") == 0
    assert run(cfg, tmp_path / "split", stop_after=1) == 0
    assert run(cfg, tmp_path / "split") == 0
    whole, split = read_result(tmp_path / "whole"), read_result(tmp_path / "split")
    assert whole["status"] == split["status"] == "succeeded"
    assert split["final"] == whole["final"]
    assert split["audit"] == whole["audit"]
    assert [a["trick"] for a in whole["audit"]] == [
        "dropout", "stochastic_depth", "zero_gamma", "swish", "no_bias_decay", "mixup",
        "cutmix", "randaugment", "random_erasing", "gradient_centralization", "lookahead",
        "label_smoothing", "ema"]
    mixing = {a["trick"]: a["details"]["batches"] for a in whole["audit"]
              if a["trick"] in ("mixup", "cutmix")}
    assert sum(mixing.values()) == 2 * STEPS_PER_EPOCH


# --------------------------------------------------------------------------- the studies


@pytest.mark.parametrize(("study", "runs"), [("bag_of_tricks", 9 * 3), ("rsb_a2", 7 * 3)])
def test_recipe_studies_validate_in_a_dry_run(study: str, runs: int, tiny_digits: Path,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ablate.cli import app
    from tests.conftest import ROOT

    monkeypatch.setenv("IMAGENET", str(tiny_digits))  # any train/ and val/ trees
    db = tmp_path / "none.db"
    res = CliRunner().invoke(app, ["run", str(ROOT / "studies" / f"{study}.yaml"),
                                   "--dry-run", "--db", f"sqlite:///{db}"])
    assert res.exit_code == 0, res.output
    assert res.output.count("to do") == runs
    assert not db.exists()


def test_digits_recipes_study_runs_end_to_end_and_reports(digits_dir: Path,
                                                          tmp_path: Path) -> None:
    """bce_loss (on mixup targets), distillation from a finished digits run and repeated
    augmentation, through ``ablate run`` and ``ablate report``."""
    import sqlite3
    import subprocess
    import sys

    from tests.conftest import ROOT

    teacher = tmp_path / "teacher"
    assert run(build_config(digits_config(digits_dir, epochs=2)), teacher) == 0
    db = f"sqlite:///{tmp_path / 'results.db'}"
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "DIGITS": str(digits_dir),
           "TEACHER": str(teacher)}

    def ablate(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "ablate", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=LIMIT)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    out = ablate("run", str(ROOT / "studies" / "digits_recipes.yaml"), "--db", db,
                 "--runs-dir", str(tmp_path / "runs"))
    assert "4 trained, 0 reused, 0 failed" in out
    report = ablate("report", "digits_recipes", "--db", db)
    for name in ("BCE on mixup targets", "distillation", "repeated augmentation"):
        assert name in report
    with sqlite3.connect(tmp_path / "results.db") as con:
        hashes = [h for (h,) in con.execute("select hash from run")]
    audits = {}
    for h in hashes:
        (run_dir,) = (tmp_path / "runs").glob(f"**/{h}*")
        result = read_result(run_dir)
        assert result["status"] == "succeeded"
        audits.update({a["trick"]: a for a in result["audit"]})
    assert set(audits) == {"bce_loss", "mixup", "distillation", "repeated_augmentation"}
    assert all(a["effective"] for a in audits.values()), audits
    # mixup stopped after epoch 2 of 3: 2 of the 3 epochs' batches had soft targets.
    assert audits["bce_loss"]["details"]["soft"] * 3 == audits["bce_loss"]["details"]["steps"] * 2
