"""The run directory's contract (zoo.contract): torch-free, and what the trainer writes is
what the orchestrator reads back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LIMIT, ROOT, digits_config, read_result, run_train, write_config
from zoo import contract


def test_contract_imports_no_torch() -> None:
    code = ("import sys, zoo.contract; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=LIMIT)
    assert out.stdout.strip() == "[]"


def test_metrics_lines_round_trip_and_partial_line_waits(tmp_path: Path) -> None:
    path = tmp_path / contract.METRICS
    row = contract.MetricsRow(epoch=1, step=10, train_loss=2.0, lr=0.1, val_loss=1.5,
                              top1=50.0, top5=90.0, eval_images=100, images_per_s=1e3,
                              train_seconds=1.0, seconds=1.2, grad_scale=None)
    contract.append_metrics(path, row)
    with open(path, "a") as f:
        f.write('{"epoch": 2, "st')  # a line being written
    assert contract.read_metrics(path) == [row]
    assert json.loads(path.read_text().splitlines()[0]) == row.to_dict()


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    contract.atomic_write(tmp_path / "a.txt", "x\r\ny")
    assert (tmp_path / "a.txt").read_bytes() == b"x\r\ny"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_trained_run_reads_back_through_the_contract(tmp_path: Path, digits_dir: Path) -> None:
    """A real (tiny) run: result.json as the file holds it equals the typed record's dict,
    key for key and in order, and the metrics rows cover every epoch."""
    cfg = write_config(tmp_path / "cfg.yaml", digits_config(digits_dir, epochs=1))
    out = tmp_path / "run"
    proc = run_train(["--config", str(cfg), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    raw = read_result(out)
    rd = contract.RunDir(out)
    result = rd.result()
    assert result is not None and result.succeeded
    assert list(result.to_dict()) == list(raw)
    assert result.to_dict() == raw
    assert [m.epoch for m in rd.metrics()] == [1]
    config = rd.config()
    assert config is not None and config.hash == raw["hash"]
    assert config.to_dict() == json.loads((out / contract.CONFIG).read_text())


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_written_atomically_get_the_mode_the_umask_gives(tmp_path: Path,
                                                               mask: int) -> None:
    """A run directory on a lab's shared file system reads as the umask says: a file
    renamed into place has 0666 less the umask, as a plain open() gives, not mkstemp's
    0600 (config.json, result.json, checkpoints, snapshots)."""
    import os
    import stat

    from zoo.contract import atomic_write, umask, write_json

    old = os.umask(mask)
    try:
        assert umask() == mask
        write_json(tmp_path / "config.json", {"a": 1})
        atomic_write(tmp_path / "b.bin", b"x")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"config.json": 0o666 & ~mask, "b.bin": 0o666 & ~mask,
                     "plain.txt": 0o666 & ~mask}
