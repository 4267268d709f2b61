"""A digits study with ``eval.corruptions``, end to end through ``ablate run`` and
``ablate report --metric``: each run's final metrics recomputed from its checkpoint by a
plain loop (numpy's metrics, the contrast corruption by hand), and the report's paired
deltas of every metric against numpy on the run directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from tests.test_metrics import _numpy_metrics
from tests.test_orchestrator import ablate
from zoo import contract
from zoo.metrics import CORRUPTIONS


def _study(tmp: Path) -> Path:
    smoke = yaml.safe_load((Path(__file__).parents[1] / "studies/digits_smoke.yaml").read_text())
    smoke.update(name="digits_corruptions", seeds=[0, 1],
                 variants=[{"name": "label smoothing",
                            "tricks": {"label_smoothing": {"smoothing": 0.1}}}])
    smoke["base"].update(epochs=2, eval={"corruptions": True})
    path = tmp / "digits_corruptions.yaml"
    path.write_text(yaml.safe_dump(smoke))
    return path


def _recompute(run: Path) -> dict[str, Any]:
    """The final model's metrics by a plain loop over the uint8 validation images."""
    from zoo.data.datasets import build_datasets
    from zoo.data.transforms import eval_transform, train_transform
    from zoo.metrics import corrupt
    from zoo.models import create_model
    from zoo.validate import build_config

    cfg = build_config(json.loads((run / contract.CONFIG).read_text())["config"])
    _, val, _ = build_datasets(cfg.data, train_transform(cfg.data),
                               eval_transform(cfg.data, device_normalize=True))
    images = torch.stack([val[i][0] for i in range(len(val))])
    targets = np.array([val[i][1] for i in range(len(val))])
    model = create_model("resnet20", num_classes=10)
    model.load_state_dict(torch.load(run / contract.CHECKPOINT, weights_only=True)["model"])
    model.eval()

    def logits(pixels: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model((pixels.float() / 255 - 0.5) / 0.5).double().numpy()

    clean = _numpy_metrics(logits(images), targets)
    contrast = [100 * (logits(corrupt(images, "contrast", s, torch.Generator())).argmax(1)
                       == targets).mean() for s in range(1, 6)]
    return {**clean, "contrast": float(np.mean(contrast))}


def test_digits_study_with_corruptions_end_to_end(digits_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    ablate("run", str(_study(tmp_path)), "--db", f"sqlite:///{db}", "--runs-dir",
           str(tmp_path / "runs"), cwd=tmp_path, env={"DIGITS": str(digits_dir)})
    finals: dict[tuple[str, int], contract.Final] = {}
    for run in sorted((tmp_path / "runs").iterdir()):
        rd = contract.RunDir(run)
        result, rows = rd.result(), rd.metrics()
        assert result is not None and result.succeeded
        final = result.final
        # Measured after the last epoch only, from the 25 (corruption, severity) passes.
        assert [r.corruption is None for r in rows] == [True, False]
        assert final.corruption == pytest.approx(rows[-1].corruption)
        assert final.corruptions is not None and set(final.corruptions) == set(CORRUPTIONS)
        assert final.corruption == pytest.approx(np.mean(list(final.corruptions.values())))
        expected = _recompute(run)
        for key in ("top1", "top5", "val_loss", "ece", "worst_class"):
            assert getattr(final, key) == pytest.approx(expected[key], abs=1e-3), key
        assert final.corruptions["contrast"] == pytest.approx(expected["contrast"], abs=0.3)
        entry = json.loads((run / contract.STUDIES).read_text())["digits_corruptions"]
        finals[(entry["variant"], int(entry["seed"]))] = final
    out = ablate("report", "digits_corruptions", "--db", f"sqlite:///{db}", "-f", "json",
                 "--metric", "nll", "--metric", "ece", "--metric", "worst_class",
                 "--metric", "corruption", cwd=tmp_path).stdout
    row = json.loads(out)[1]
    for metric, key in (("nll", "val_loss"), ("ece", "ece"), ("worst_class", "worst_class"),
                        ("corruption", "corruption"), ("top1", "top1")):
        diffs = [getattr(finals[("label smoothing", s)], key)
                 - getattr(finals[("baseline", s)], key) for s in (0, 1)]
        assert row[f"delta_{metric}"] == pytest.approx(np.mean(diffs), abs=1e-9), metric
    assert row["verdict_corruption"] in ("better", "worse", "undecided")
    assert row["changes"]


def test_two_processes_measure_what_one_computes_from_the_checkpoint(
        digits_dir: Path, tmp_path: Path) -> None:
    """DDP: every metric is all-reduced as sums, so 2 processes (363 images, an odd split)
    record what a plain single-process loop over the checkpoint computes."""
    import shutil

    from tests.conftest import digits_config, run_train, write_config

    data = tmp_path / "digits"
    shutil.copytree(digits_dir, data)
    sorted((data / "val" / "zero").glob("*.png"))[0].unlink()
    cfg = digits_config(data, epochs=1)
    cfg["eval"] = {"corruptions": True}
    out = tmp_path / "ddp"
    proc = run_train(["--config", str(write_config(tmp_path / "c.yaml", cfg)), "--out",
                      str(out)], torchrun=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = contract.RunDir(out).result()
    assert result is not None and result.world_size == 2
    expected = _recompute(out)
    for key in ("top1", "top5", "val_loss", "ece", "worst_class"):
        assert getattr(result.final, key) == pytest.approx(expected[key], abs=1e-3), key
    assert result.final.corruptions is not None
    assert result.final.corruptions["contrast"] == pytest.approx(expected["contrast"], abs=0.3)
