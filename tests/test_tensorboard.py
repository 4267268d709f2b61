"""zoo.tensorboard: event files read back with TensorBoard's own reader, resume without
duplicate epochs, the disabled case, run names, and the config key that turns it off."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import api_pb2, metadata

from tests.conftest import digits_config, read_metrics, run_train, write_config
from zoo.config import config_hash
from zoo.errors import ConfigError
from zoo.tensorboard import BOARD_DIR, EPOCH_TAGS, RUN_NAME_ENV, RunBoard, event_dir, run_name
from zoo.validate import build_config


def _config(digits_dir: Path, *overrides: str) -> dict[str, Any]:
    return build_config(digits_config(digits_dir), list(overrides)).to_dict()


def _row(epoch: int, shift: float = 0.0) -> dict[str, Any]:
    """A metrics.jsonl row as zoo.train appends it (values made up, distinct per epoch)."""
    return {"epoch": epoch, "step": epoch * 22, "train_loss": 2.0 / epoch + shift,
            "lr": 0.1 * epoch + shift, "val_loss": 1.5 / epoch + shift,
            "top1": 50.0 + epoch + shift, "top5": 90.0 + epoch / 10 + shift,
            "eval_images": 364, "images_per_s": 1000.0 + epoch + shift,
            "train_seconds": 1.2, "seconds": 1.5, "grad_scale": None}


def _result(epochs: int, status: str = "succeeded") -> dict[str, Any]:
    return {"status": status, "error": None, "hash": "0123456789abcdef", "epochs": epochs,
            "epochs_completed": epochs,
            "final": {"top1": 95.5, "top5": 99.7, "val_loss": 0.2, "train_loss": 0.3},
            "best": {"top1": 96.0, "top5": 99.9, "epoch": epochs - 1},
            "params": 272474, "macs": 2_600_000, "wall_seconds": 30.0,
            "device_hours": 30.0 / 3600, "images_per_s": 1200.0, "audit": []}


def _read(logdir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={SCALARS: 0})
    acc.Reload()
    return acc


def _series(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_epochs_and_result_read_back_with_tensorboards_reader(
        digits_dir: Path, tmp_path: Path) -> None:
    config = _config(digits_dir, "tricks={zero_gamma: {}, label_smoothing: {smoothing: 0.1}}")
    rows = [_row(e) for e in (1, 2, 3)]
    with RunBoard(tmp_path, config, run_name=run_name("label smoothing", 2)) as board:
        for row in rows:
            board.log_epoch(row)
            # Flushed each epoch: a reader sees the epoch before the writer closes.
            assert [s for s, _ in _series(_read(board.logdir), "val/top1")] == list(
                range(1, row["epoch"] + 1))
        board.log_result(_result(3))
    logdir = tmp_path / BOARD_DIR / "label_smoothing" / "seed2"
    acc = _read(logdir)
    for key, tag in EPOCH_TAGS.items():
        if key == "grad_scale":  # None (not fp16): not written
            assert tag not in acc.Tags()["scalars"]
            continue
        got = _series(acc, tag)
        assert [s for s, _ in got] == [1, 2, 3], tag
        # Event files hold float32.
        assert [v for _, v in got] == pytest.approx([r[key] for r in rows], rel=1e-6), tag
    assert _series(acc, "final/top1") == [(3, pytest.approx(95.5))]
    assert _series(acc, "best/top5") == [(3, pytest.approx(99.9))]
    assert _series(acc, "result/params") == [(3, 272474.0)]

    # The config through the HParams plugin, against pandas' own flattening.
    plugin = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(
        plugin[metadata.SESSION_START_INFO_TAG])
    expected = pd.json_normalize(config, sep=".").to_dict(orient="records")[0]
    got = {k: v for k, v in start.hparams.items()}
    for key, value in expected.items():
        if value is None:  # unset (model.channels_last: null): left out
            assert key not in got
        elif isinstance(value, list):
            assert json.loads(got[key].string_value) == value, key
        elif isinstance(value, str):
            assert got[key].string_value == value, key
        else:  # numbers; torch's writer records booleans as 1.0 / 0.0
            assert got[key].number_value == pytest.approx(float(value)), key
    # A trick without parameters is still a column (json_normalize drops empty dicts).
    empty = {"tricks.zero_gamma", "model.options"}
    assert {k: got[k].string_value for k in empty} == dict.fromkeys(empty, "{}")
    assert set(got) == {k for k, v in expected.items() if v is not None} | empty
    end = metadata.parse_session_end_info_plugin_data(plugin[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS
    # No Experiment summary: TensorBoard builds the table from every run's hparams.
    assert set(plugin) == {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}


def _raw_steps(logdir: Path, tag: str) -> list[int]:
    """Every event of ``tag`` in the files, in order, before any purging."""
    steps = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            steps += [event.step for v in event.summary.value if v.tag == tag]
    return steps


def test_resume_appends_without_duplicate_epochs(digits_dir: Path, tmp_path: Path) -> None:
    config = _config(digits_dir)
    # Session 1 logged epochs 1-3 and died before epoch 3's checkpoint.
    first = RunBoard(tmp_path, config, run_name=run_name("baseline", 0))
    for epoch in (1, 2, 3):
        first.log_epoch(_row(epoch))
    first.close()
    # Session 2 resumes from the epoch-2 checkpoint (started by another study, under
    # another name: the run keeps its first event directory) and trains epochs 3-4.
    second = RunBoard(tmp_path, config, run_name=run_name("other name", 0), start_epoch=3)
    assert second.logdir == tmp_path / BOARD_DIR / "baseline" / "seed0"
    for epoch in (3, 4):
        second.log_epoch(_row(epoch, shift=0.5))
    second.log_result(_result(4))
    second.close()
    assert not (tmp_path / BOARD_DIR / "other_name").exists()

    logdir = tmp_path / BOARD_DIR / "baseline" / "seed0"
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 2
    assert _raw_steps(logdir, "val/top1") == [1, 2, 3, 3, 4]  # both sessions wrote epoch 3
    acc = _read(logdir)
    for key, tag in EPOCH_TAGS.items():
        if key == "grad_scale":
            continue
        got = _series(acc, tag)
        assert [s for s, _ in got] == [1, 2, 3, 4], tag
        expected = [_row(1)[key], _row(2)[key], _row(3, 0.5)[key], _row(4, 0.5)[key]]
        assert [v for _, v in got] == pytest.approx(expected, rel=1e-6), tag

    # A third session after a checkpoint at the last epoch logged (a clean --stop-after
    # or a kill between epochs) purges nothing.
    third = RunBoard(tmp_path, config, start_epoch=5)
    third.log_epoch(_row(5))
    third.close()
    assert [s for s, _ in _series(_read(logdir), "val/top1")] == [1, 2, 3, 4, 5]


def test_a_failed_run_has_hparams_but_no_session_end(digits_dir: Path, tmp_path: Path) -> None:
    board = RunBoard(tmp_path, _config(digits_dir))
    board.log_epoch(_row(1))
    result = _result(1, status="failed")
    result["final"]["top5"] = None  # a missing value is left out, not written as NaN
    board.log_result(result)
    board.close()
    board.close()  # closing twice is harmless
    acc = _read(tmp_path / BOARD_DIR)
    assert set(acc.PluginTagToContent(metadata.PLUGIN_NAME)) == {
        metadata.SESSION_START_INFO_TAG}
    assert "final/top5" not in acc.Tags()["scalars"]
    assert not any(math.isnan(v) for _, v in _series(acc, "final/top1"))


def test_disabled_writes_nothing(digits_dir: Path, tmp_path: Path) -> None:
    board = RunBoard(tmp_path, _config(digits_dir), run_name="x/seed0", enabled=False)
    board.log_epoch(_row(1))
    board.log_result(_result(1))
    board.close()
    assert board.logdir is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("variant", "seed", "name"), [
    ("baseline", 0, "baseline/seed0"),
    ("label smoothing", 2, "label_smoothing/seed2"),
    ("+ mixup (α=0.2)", 10, "mixup_α_0.2/seed10"),
    ("a/b", 1, "a_b/seed1"),
    ("///", 3, "variant/seed3"),
])
def test_run_name_is_one_safe_directory_per_seed(variant: str, seed: int, name: str) -> None:
    assert run_name(variant, seed) == name


def test_event_dir_without_a_name(tmp_path: Path) -> None:
    assert event_dir(tmp_path) == tmp_path / BOARD_DIR
    assert event_dir(tmp_path, "v/seed1") == tmp_path / BOARD_DIR / "v" / "seed1"


def test_tensorboard_key_is_on_by_default_and_not_part_of_the_hash(digits_dir: Path) -> None:
    base = digits_config(digits_dir)
    on, off = build_config(base), build_config(base, ["tensorboard=false"])
    assert on.tensorboard is True and off.tensorboard is False
    assert on.to_dict()["tensorboard"] is True  # written to config.json
    assert config_hash(on) == config_hash(off)
    assert "tensorboard" not in on.identity()
    with pytest.raises(ConfigError, match="tensorboard: expected true or false, got 'no'"):
        build_config(base, ["tensorboard='no'"])
    with pytest.raises(ConfigError, match="did you mean 'tensorboard'"):
        build_config({**base, "tensorbord": False})


def test_train_writes_events_and_a_resume_adds_each_epoch_once(
    digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """zoo.train writes one event per epoch per tag, the same numbers as metrics.jsonl,
    also when the run stopped after epoch 1 and was resumed."""
    monkeypatch.setenv(RUN_NAME_ENV, run_name("label smoothing", 0))
    cfg = write_config(tmp_path / "c.yaml", digits_config(digits_dir, epochs=2))
    out = tmp_path / "run"
    first = run_train(["--config", str(cfg), "--out", str(out), "--stop-after", "1"])
    assert first.returncode == 0, first.stderr
    second = run_train(["--config", str(cfg), "--out", str(out)])
    assert second.returncode == 0, second.stderr
    acc = EventAccumulator(str(out / BOARD_DIR / "label_smoothing" / "seed0"),
                           size_guidance={SCALARS: 0})
    acc.Reload()
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    for key, tag in (("top1", "val/top1"), ("train_loss", "train/loss"), ("lr", "train/lr")):
        assert [(e.step, e.value) for e in acc.Scalars(tag)] == [
            (r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in rows]
    assert set(acc.PluginTagToContent(metadata.PLUGIN_NAME)) == {
        metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}


def test_tensorboard_false_writes_no_events(digits_dir: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", digits_config(digits_dir, epochs=1))
    out = tmp_path / "run"
    proc = run_train(["--config", str(cfg), "--out", str(out), "--set", "tensorboard=false"])
    assert proc.returncode == 0, proc.stderr
    assert (out / "result.json").exists() and not (out / BOARD_DIR).exists()
