"""The run config: typed, validated, one-line errors with exit code 2 before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LIMIT, ROOT, digits_config, run_train, write_config
from zoo.config import RunConfig
from zoo.errors import ConfigError, ZooError
from zoo.train import main
from zoo.validate import build_config, load_config


def test_defaults_are_filled_and_shorthand_model_is_accepted(digits_dir: Path) -> None:
    cfg = build_config(digits_config(digits_dir))
    assert isinstance(cfg, RunConfig)
    assert cfg.model.name == "resnet20" and cfg.model.options == {}
    d = cfg.to_dict()
    assert d["optim"]["nesterov"] is True
    assert d["data"]["format"] == "imagefolder"  # a default, filled in
    assert d["schedule"]["warmup_start_factor"] == 0.01


def test_channels_last_defaults_to_the_model_and_compile_to_off(digits_dir: Path) -> None:
    base = digits_config(digits_dir)
    cfg = build_config(base)
    assert cfg.model.channels_last is None and cfg.compile is False
    assert cfg.to_dict()["model"]["channels_last"] is None and cfg.to_dict()["compile"] is False
    for value in (True, False, None):
        got = build_config(base, [f"model.channels_last={'null' if value is None else value}"])
        assert got.model.channels_last is value
    assert build_config(base, ["compile=true"]).compile is True


def test_set_overrides_are_typed_and_nested(digits_dir: Path) -> None:
    cfg = build_config(digits_config(digits_dir),
                       ["optim.lr=0.25", "model.name=resnet20", "model.options.drop_rate=0.1"])
    assert cfg.optim.lr == 0.25
    assert cfg.model.options == {"drop_rate": 0.1}


BAD_CASES = [
    # (change, expected fragments of the one-line message)
    ({"optim": {"lrr": 0.1}}, ["unknown key 'optim.lrr'", "did you mean 'optim.lr'?"]),
    ({"epoch": 3}, ["unknown key 'epoch'", "'epochs'"]),
    ({"optim": {"lr": "fast"}}, ["optim.lr", "expected a number", "'fast'"]),
    ({"optim": {"nesterov": 1}}, ["optim.nesterov", "true or false"]),
    ({"epochs": 2.5}, ["epochs", "expected an integer"]),
    ({"precision": "fp8"}, ["precision", "one of 'auto', 'fp32', 'bf16', 'fp16'"]),
    ({"model": "resnet21"}, ["unknown model 'resnet21'", "resnet20"]),
    ({"batch_size": 0}, ["batch_size", "at least 1"]),
    ({"optim": {"lr": -0.1}}, ["optim.lr", "must be positive"]),
    ({"data": {"mean": [0.5, 0.5]}}, ["data.mean", "a list of 3 numbers"]),
    ({"tricks": {"label_smoothin": {}}}, ["unknown trick 'label_smoothin'", "label_smoothing"]),
    ({"tricks": {"label_smoothing": {"smoothing": 1.5}}},
     ["tricks.label_smoothing.smoothing", "[0, 1)"]),
    ({"tricks": {"label_smoothing": {"eps": 0.1}}},
     ["unknown key 'tricks.label_smoothing.eps'"]),
    ({"model": {"name": "resnet20", "channels_last": 1}},
     ["model.channels_last", "true or false or null", "1 (int)"]),
    ({"compile": "yes"}, ["compile", "true or false", "'yes'"]),
    ({"compiel": True}, ["unknown key 'compiel'", "did you mean 'compile'"]),
    # Model options are checked with the config, before a run directory exists.
    ({"model": {"name": "resnet20", "options": {"act": "gelu"}}},
     ["model.options", "unknown activation 'gelu'", "relu6"]),
    ({"model": {"name": "mobilenetv2", "options": {"drop_path_rate": 0.1}}},
     ["model.options", "'mobilenetv2' does not support option 'drop_path_rate'"]),
    ({"model": {"name": "resnet20", "options": {"drop_rate": 1.5}}},
     ["model.options", "'drop_rate' must be a number in [0, 1), got 1.5"]),
    ({"model": {"name": "resnet50", "options": {"alpha": 0.25}}},
     ["model.options", "'resnet50' does not support option 'alpha'"]),
]


def _merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for k, v in change.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize(("change", "fragments"), BAD_CASES)
def test_bad_config_is_one_line_error_with_exit_2(
    change: dict, fragments: list[str], digits_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(tmp_path / "bad.yaml", _merge(digits_config(digits_dir), change))
    code = main(["--config", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {path}: ")
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "run").exists(), "no work may start on a bad config"


def test_missing_data_directory_names_path_and_fix(
    digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = digits_config(digits_dir, data__train=str(tmp_path / "nowhere"))
    path = write_config(tmp_path / "c.yaml", cfg)
    assert main(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "data.train" in err and str(tmp_path / "nowhere") in err
    assert "ablate data prepare" in err


def test_yaml_syntax_error_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model: resnet20\noptim: {lr: 0.1\nepochs: 3\n")
    assert main(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: {path}:3:") and "YAML syntax error" in err


def test_bad_set_override(digits_dir: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", digits_config(digits_dir))
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["optim.lr"])
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.momentun'"):
        load_config(path, ["optim.momentun=0.8"])


def test_real_cli_exit_code_2_on_unknown_key(digits_dir: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", digits_config(digits_dir))
    proc = run_train(["--config", str(path), "--out", str(tmp_path / "r"),
                      "--set", "optim.wieght_decay=0.1"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}: unknown key 'optim.wieght_decay'; did you mean 'optim.weight_decay'?"
    ]


def test_trick_without_parameters_and_option_conflicts(digits_dir: Path) -> None:
    cfg = build_config({**digits_config(digits_dir), "tricks": {"zero_gamma": None}})
    assert cfg.tricks == {"zero_gamma": {}}
    with pytest.raises(ConfigError, match=r"model.options.act: 'relu' conflicts with a trick"):
        build_config(digits_config(digits_dir, model={"name": "resnet20",
                                                      "options": {"act": "relu"}}),
                     ["tricks.relu6={}"])


def test_execution_only_settings_do_not_change_a_runs_identity(digits_dir: Path,
                                                                tmp_path: Path) -> None:
    import torch

    from zoo.distributed import DistInfo
    from zoo.train import config_hash, prepare_run_dir

    base = digits_config(digits_dir)
    cfg = build_config(base)
    same = [build_config(base, ["compile=true"]),
            build_config(base, ["model.channels_last=true"]),
            build_config(base, ["model.channels_last=false", "compile=true"])]
    assert {config_hash(c) for c in same} == {config_hash(cfg)}
    assert config_hash(build_config(base, ["optim.lr=0.5"])) != config_hash(cfg)
    # A run directory of the same run, made with other execution settings, resumes...
    import json

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"hash": config_hash(cfg),
                                                 "config": same[2].to_dict()}))
    info = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    assert prepare_run_dir(out, cfg, info) is None
    # ...one of another run is refused.
    (out / "config.json").write_text(json.dumps({"config": build_config(
        base, ["optim.lr=0.5"]).to_dict()}))
    with pytest.raises(ZooError, match="holds a run of a different config"):
        prepare_run_dir(out, cfg, info)


def test_hashes_of_the_committed_results_still_hold() -> None:
    """Every run in results.db keeps its id: the hash of its config's identity and of the
    code fingerprints recorded beside it (run_code), and its config's own hash is the one
    recorded there, so the config part and the code part of an id both hold across
    upgrades."""
    import json
    import sqlite3

    from zoo.config import config_hash, from_dict, run_hash

    with sqlite3.connect(ROOT / "results.db") as con:
        rows = con.execute("select run.hash, run.config, run_code.config_hash, run_code.code "
                           "from run join run_code on run_code.run_hash = run.hash").fetchall()
        runs = con.execute("select count(*) from run").fetchone()[0]
    assert len(rows) == runs >= 21  # every run records its code
    for hash_, config, recorded_config_hash, code in rows:
        cfg = from_dict(RunConfig, json.loads(config))
        assert config_hash(cfg) == recorded_config_hash
        assert run_hash(cfg, json.loads(code)) == hash_


def test_validating_studies_imports_no_torch() -> None:
    """``ablate run`` validates and plans a whole study before it launches anything; the
    model catalog and the trick declarations let it do that without importing torch,
    torchvision or timm (importing them costs seconds of start-up)."""
    code = """
import sys
import subprocess
import sys
from pathlib import Path
from ablate.study.spec import load_study, plan_study
from zoo.validate import build_config
from zoo.tricks import list_tricks

planned = 0
for path in sorted(Path("studies").glob("*.yaml")):
    planned += len(plan_study(load_study(path, check_paths=False)))
required = {"distillation": {"teacher": "runs/teacher"}}  # no default for a path
for trick in list_tricks():
    build_config({"model": "resnet50", "tricks": {trick: required.get(trick, {})}})
build_config({"model": {"name": "resnet50", "options": {"act": "silu"}},
              "tricks": {"octconv": {"alpha": 0.25}, "mixup": {}, "cutmix": {},
                         "label_smoothing": {"smoothing": 0.1}, "ema": {}}})
print(planned, len(list_tricks()), sorted(m for m in ("torch", "torchvision", "timm")
                                          if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=LIMIT)
    assert proc.returncode == 0, proc.stderr
    planned, tricks, heavy = proc.stdout.strip().split(" ", 2)
    assert int(planned) > 20 and int(tricks) >= 20
    assert heavy == "[]", f"validation imported {heavy}"
