"""A researcher's own code: ``imports:`` of plugins, the extension API, code in a run's
identity, snapshots, and the one-line errors of bad plugins (docs/extending.md)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LIMIT, ROOT
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import StudyError
from ablate.study.spec import load_study
from zoo.config import load_yaml, parse_override
from zoo.errors import ConfigError
from zoo.fingerprint import source_fingerprint
from zoo.validate import build_config

EXAMPLES = ROOT / "examples"
FASHION = Path("/usr/share/datasets/fashion-mnist")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _registries_as_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's plugins leave the registries as they found them: other tests in this
    process walk every registered trick, model and format (and expect the zoo's own)."""
    import zoo.data.formats
    import zoo.models._registry
    import zoo.plugins
    import zoo.tricks.registry

    for module, name in ((zoo.tricks.registry, "_TRICKS"), (zoo.models._registry, "_MODELS"),
                         (zoo.data.formats, "_FORMATS"), (zoo.plugins, "_LOADED")):
        monkeypatch.setattr(module, name, dict(getattr(module, name)))


# --------------------------------------------------------------------------- numbers


def test_numbers_as_researchers_write_them(tmp_path: Path) -> None:
    """``1e-3`` is a number in a file and in --set (YAML 1.2, JSON); other strings that
    merely look like one stay strings."""
    path = tmp_path / "c.yaml"
    path.write_text("a: 1e-3\nb: 1E6\nc: -2.5e+2\nd: 1.0e-4\ne: e5\nf: 1e\ng: 1e-3x\n"
                    "h: '1e-3'\ni: 12\n")
    assert load_yaml(path) == {"a": 0.001, "b": 1e6, "c": -250.0, "d": 1e-4, "e": "e5",
                               "f": "1e", "g": "1e-3x", "h": "1e-3", "i": 12}
    assert parse_override("optim.lr=1e-3") == ("optim.lr", 0.001)
    assert parse_override("name=1e-3x") == ("name", "1e-3x")
    cfg = build_config({"optim": {"lr": 1e-3, "weight_decay": load_yaml(path)["b"] / 1e10}},
                       ["optim.momentum=5e-1"])
    assert (cfg.optim.lr, cfg.optim.momentum) == (0.001, 0.5)


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_is_what_runs_not_how_it_is_written() -> None:
    code = 'def f(x):\n    """Doc."""\n    return x + 1\n'
    same = [
        '# a comment\ndef f(x):\n    return x + 1  # why\n',
        'def f(x):\n    """Another doc."""\n\n\n    return (x +\n            1)\n',
        '"""Module doc."""\ndef f(x):\n    return x + 1\n',
    ]
    other = ['def f(x):\n    return x + 2\n', 'def f(y):\n    return y + 1\n',
             'def f(x):\n    """Doc."""\n    return 1 + x\n']
    base = source_fingerprint(code)
    assert all(source_fingerprint(s) == base for s in same)
    assert all(source_fingerprint(o) != base for o in other)


def _plugin_study(tmp: Path, digits: Path | None = None, **extra: Any) -> Path:
    """A study on digits-shaped data importing copies of the examples' plugins."""
    plugins = tmp / "plugins"
    plugins.mkdir(exist_ok=True)
    for name in ("sam.py", "convmixer.py", "idx_format.py"):
        shutil.copy(EXAMPLES / name, plugins / name)
    data = digits or tmp / "nodata"
    study = {
        "name": "own", "imports": ["plugins/sam.py", "plugins/convmixer.py"],
        "base": {"model": "resnet20", "epochs": 1, "batch_size": 32, "workers": 0,
                 "precision": "fp32",
                 "data": {"train": str(data / "train"), "val": str(data / "val"),
                          "image_size": 8, "preset": "small", "hflip": False}},
        "seeds": [0, 1],
        "variants": [{"name": "sam", "tricks": {"sam": {"rho": 0.05}}},
                     {"name": "convmixer", "set": {"model": "convmixer_256_8"}}],
        **extra,
    }
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _hashes(path: Path) -> dict[tuple[str, int], str]:
    return {(r.variant, r.seed): r.hash for r in load_study(path, check_paths=False).plan()}


def test_editing_a_trick_forks_exactly_its_runs(tmp_path: Path) -> None:
    """A code edit of the user's trick gives its runs new ids and leaves every other run
    as it was; a comment- or docstring-only edit changes nothing."""
    study = _plugin_study(tmp_path)
    before = _hashes(study)
    sam = tmp_path / "plugins" / "sam.py"
    sam.write_text(sam.read_text().replace('"""Sharpness-Aware', '"""Edited: Sharpness-Aware')
                   + "\n# a comment at the end\n")
    assert _hashes(study) == before
    sam.write_text(sam.read_text().replace("scale = self.rho / (norm + 1e-12)",
                                           "scale = self.rho / (norm + 1e-6)"))
    after = _hashes(study)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {("sam", 0), ("sam", 1)}


def test_a_helper_module_of_the_plugin_is_part_of_its_code(tmp_path: Path) -> None:
    """The plugin's own modules it imports count; an edit there forks the trick's runs."""
    study = _plugin_study(tmp_path)
    sam = tmp_path / "plugins" / "sam.py"
    (tmp_path / "plugins" / "radius.py").write_text("EPS = 1e-12\n")
    sam.write_text(sam.read_text().replace("import torch\n", "import torch\nfrom radius "
                                           "import EPS\n").replace("1e-12", "EPS"))
    before = _hashes(study)
    (tmp_path / "plugins" / "radius.py").write_text("EPS = 1e-8\n")
    after = _hashes(study)
    assert {k for k in before if before[k] != after[k]} == {("sam", 0), ("sam", 1)}


def test_the_zoo_components_a_run_names_are_fingerprinted() -> None:
    """Built-in tricks, models and data formats are components too: their module and the
    modules of their own package they import (mixup's shared mixing code, the decoder)."""
    from zoo.fingerprint import run_components

    cfg = build_config({"model": "resnet50", "tricks": {"mixup": {}},
                        "data": {"format": "lmdb"}})
    parts = {c.name: [m for m, _ in c.files] for c in run_components(cfg)}
    assert parts == {"trick:mixup": ["zoo.tricks.mixup", "zoo.tricks._mixing"],
                     "model:resnet50": ["zoo.models.resnet", "zoo.models._layers",
                                        "zoo.models._options", "zoo.models.switchnorm"],
                     "data:lmdb": ["zoo.data.lmdb_dataset", "zoo.data.decode"]}


def test_a_run_directory_of_other_code_is_not_taken_for_this_run(tmp_path: Path) -> None:
    """zoo.train alone: a finished run whose recorded code differs is refused, not reused."""
    import torch

    from zoo.distributed import DistInfo
    from zoo.fingerprint import run_code
    from zoo.train import prepare_run_dir

    cfg = build_config({"model": "resnet20", "tricks": {"mixup": {}}})
    code = run_code(cfg)
    out = tmp_path / "run"
    out.mkdir()
    other = {**code, "trick:mixup": "0" * 16}
    (out / "config.json").write_text(json.dumps({
        "config": cfg.to_dict(),
        "code": {"components": {k: {"fingerprint": v} for k, v in other.items()}}}))
    (out / "result.json").write_text(json.dumps({"status": "succeeded"}))
    info = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    with pytest.raises(Exception, match=r"holds a run of other code \(changed: trick:mixup\)"):
        prepare_run_dir(out, cfg, info, code)
    assert prepare_run_dir(out, cfg, info, other) == {"status": "succeeded"}


def test_a_snapshot_is_taken_once_and_kept(tmp_path: Path) -> None:
    """The plugin's files as they were when its run directory got them, whatever changes
    after; the entries name the snapshot's files, and a plugin added later is left out of
    a run that started without it."""
    from zoo.plugins import resolve, snapshot

    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "helpers.py").write_text("K = 1\n")
    (lab / "mine.py").write_text("from helpers import K\n")
    (lab / "other.py").write_text("X = 2\n")
    mine, other = resolve("lab/mine.py", tmp_path), resolve("lab/other.py", tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    assert snapshot([mine], run) == (str(run / "code" / "mine.py"),)
    assert sorted(p.name for p in (run / "code").iterdir()) == ["helpers.py", "mine.py"]
    (lab / "helpers.py").write_text("K = 2\n")
    assert snapshot([mine, other], run) == (str(run / "code" / "mine.py"),)
    assert (run / "code" / "helpers.py").read_text() == "K = 1\n"


# --------------------------------------------------------------------------- bad input


BAD_PLUGINS = {
    "syntax": ("def broken(:\n", r"imports\[0\]: .*bad\.py:1: SyntaxError: "),
    "missing module": ("import numpy\nimport no_such_lab_module\n",
                       r"imports\[0\]: .*bad\.py:2: ModuleNotFoundError: No module named "
                       r"'no_such_lab_module'"),
    "raises": ("x = 1\n\ndef f():\n    raise RuntimeError('the lab server is down')\n\nf()\n",
               r"imports\[0\]: .*bad\.py:4: RuntimeError: the lab server is down"),
    "untyped params": (
        "from zoo import Trick, register_trick\n\n@register_trick\nclass Mine(Trick):\n"
        "    name = 'mine'\n    Params = dict\n",
        r"bad\.py:3: ValueError: trick 'mine' \(Mine \(.*bad\.py:3\)\): Params must be a "
        r"dataclass of typed parameters"),
    "hook signature": (
        "from zoo import Trick, register_trick\n\n@register_trick\nclass Mine(Trick):\n"
        "    name = 'mine'\n    def loss(self, inner):\n        return inner\n",
        r"trick 'mine' \(Mine, .*bad\.py:3\): hook loss\(self, inner\) does not take the "
        r"arguments of Trick\.loss\(self, inner, ctx\)"),
    "touches": (
        "from zoo import Trick, register_trick\n\n@register_trick\nclass Mine(Trick):\n"
        "    name = 'mine'\n    touches = ('loss', 'weights')\n",
        r"trick 'mine' \(Mine \(.*bad\.py:3\)\) touches unknown \['weights'\]"),
    "collision with a built-in": (
        "from zoo import Trick, register_trick\n\n@register_trick\nclass Mixup(Trick):\n"
        "    name = 'mixup'\n",
        r"trick 'mixup' is defined twice: .*zoo/tricks/mixup\.py:\d+ and .*bad\.py:3; "
        r"rename one"),
    "model collision": (
        "from zoo import register_model\n\n@register_model('resnet20')\ndef mine(num_classes"
        "=10):\n    return None\n",
        r"model 'resnet20' is defined twice: .*zoo/models/resnet_cifar\.py:\d+ and "
        r".*bad\.py:3; rename one"),
    "data format collision": (
        "from zoo import register_data_format\n\n@register_data_format('lmdb')\nclass "
        "Mine:\n    pass\n",
        r"data format 'lmdb' is defined twice: zoo\.data\.lmdb_dataset:LmdbDataset and "
        r".*bad\.py:3; rename one"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_a_bad_plugin_is_one_line_naming_file_and_line(tmp_path: Path, case: str) -> None:
    """Through the command line: exit 2, one line, nothing written (no database)."""
    code, pattern = BAD_PLUGINS[case]
    plugin = tmp_path / f"bad_{case.replace(' ', '_')}"
    plugin.mkdir()
    (plugin / "bad.py").write_text(code)
    study = _plugin_study(tmp_path)
    data = yaml.safe_load(study.read_text())
    data["imports"] = [f"{plugin.name}/bad.py"]
    data["variants"] = [{"name": "lr", "set": {"optim.lr": 0.2}}]
    study.write_text(yaml.safe_dump(data))
    db = tmp_path / "r.db"
    result = runner.invoke(app, ["run", str(study), "--dry-run", "--db", f"sqlite:///{db}"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {study}: imports[0]: ")
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert not db.exists()
    sys.modules.pop("bad", None)


def test_a_missing_plugin_file_names_where_it_was_looked_for(tmp_path: Path) -> None:
    study = _plugin_study(tmp_path, imports=["plugins/sam.py", "plugins/nope.py"])
    with pytest.raises(StudyError, match=r"imports\[1\]: 'plugins/nope.py': no such file "
                                         r"\(.*plugins/nope.py\); a path is relative to "):
        load_study(study, check_paths=False)
    study = _plugin_study(tmp_path, imports=["no_such_lab.tricks"])
    with pytest.raises(StudyError, match=r"imports\[0\]: 'no_such_lab.tricks': "):
        load_study(study, check_paths=False)


def test_a_plugin_never_replaces_a_module_of_the_same_name(tmp_path: Path) -> None:
    """A plugin file named like an imported module (json.py) is refused, not imported over
    it: the process's own json stays."""
    import json as real

    from zoo.plugins import PluginError, import_plugins

    (tmp_path / "json.py").write_text("X = 1\n")
    with pytest.raises(PluginError, match=r"json\.py: its module name 'json' is taken by "
                                          r".*json/__init__\.py; rename the file"):
        import_plugins(["json.py"], tmp_path)
    assert sys.modules["json"] is real


def test_an_unknown_data_format_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"data.format: unknown format 'idz'; did you mean "
                                          r"'idx'\?.*imagefolder"):
        build_config({"imports": [str(EXAMPLES / "idx_format.py")], "data": {"format": "idz"}})


# --------------------------------------------------------------------------- listings


def test_tricks_and_models_list_a_plugins_entries() -> None:
    out = runner.invoke(app, ["tricks", "--json", "--import", str(EXAMPLES / "sam.py")])
    assert out.exit_code == 0, out.output
    sam = [t for t in json.loads(out.output) if t["name"] == "sam"]
    assert sam and sam[0]["params"] == [{"name": "rho", "type": "float", "default": 0.05}]
    assert sam[0]["module"] == "sam"
    out = runner.invoke(app, ["models", "--json", "convmixer*", "--import",
                              str(EXAMPLES / "convmixer.py")])
    assert out.exit_code == 0, out.output
    assert [m["name"] for m in json.loads(out.output)] == ["convmixer_256_8",
                                                           "convmixer_768_32"]


def test_convmixer_has_the_papers_parameter_count() -> None:
    """ConvMixer-768/32 (kernel 7, patch 7): 21.1M parameters in the paper's Table 1."""
    import torch

    from zoo.models import create_model, get_model_info
    from zoo.plugins import import_plugins

    import_plugins([str(EXAMPLES / "convmixer.py")], ROOT)
    with torch.device("meta"):
        model = create_model("convmixer_768_32", num_classes=1000)
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6, 1) == get_model_info("convmixer_768_32").ref_params_m == 21.1


def write_idx_subset(out: Path, split: str, n: int) -> Path:
    """The first ``n`` images and labels of a real Fashion-MNIST split, as IDX files."""
    out.mkdir(parents=True, exist_ok=True)
    for kind, magic, header, size in (("images-idx3", 0x803, 16, 28 * 28),
                                      ("labels-idx1", 0x801, 8, 1)):
        with gzip.open(FASHION / f"{split}-{kind}-ubyte.gz", "rb") as f:
            data = f.read()
        dims = [n, 28, 28] if size > 1 else [n]
        head = struct.pack(f">I{len(dims)}I", magic, *dims)
        body = data[header: header + n * size]
        (out / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(head + body))
    return out / f"{split}-images-idx3-ubyte.gz"


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not "
                    "installed (apt-get install dataset-fashion-mnist)")
def test_the_idx_format_reads_what_torchvision_reads(tmp_path: Path) -> None:
    """The example IDX reader against torchvision's own MNIST-file reader, on real files."""
    import numpy as np
    from torchvision.datasets.mnist import read_image_file, read_label_file

    from zoo.data.datasets import open_split
    from zoo.plugins import import_plugins

    import_plugins([str(EXAMPLES / "idx_format.py")], ROOT)
    images = write_idx_subset(tmp_path, "t10k", 300)
    ds = open_split(str(images), "idx", None)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(gzip.decompress((tmp_path / f"{name}.gz").read_bytes()))
    ref_x = read_image_file(str(raw / "t10k-images-idx3-ubyte"))
    ref_y = read_label_file(str(raw / "t10k-labels-idx1-ubyte"))
    assert len(ds) == 300 and ds.classes == [str(c) for c in range(10)]
    for i in (0, 7, 299):
        image, label = ds[i]
        assert image.shape == (3, 28, 28) and label == int(ref_y[i])
        assert np.array_equal(image[0].numpy(), ref_x[i].numpy())
        assert np.array_equal(image[2].numpy(), ref_x[i].numpy())


# --------------------------------------------------------------------------- SAM


def test_sam_step_against_a_hand_computation() -> None:
    """One SAM step with SGD (momentum, weight decay) equals the paper's update computed
    here with torch.autograd: g at w, e = rho g/||g||, g' at w + e, SGD from w with g'."""
    import torch

    from zoo.plugins import import_plugins

    import_plugins([str(EXAMPLES / "sam.py")], ROOT)
    from sam import SAMOptimizer

    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    model = torch.nn.Linear(5, 3)
    w0 = [p.detach().clone() for p in model.parameters()]
    loss_fn = torch.nn.CrossEntropyLoss()

    def loss_at(ws: list[torch.Tensor]) -> torch.Tensor:
        return loss_fn(torch.nn.functional.linear(x, ws[0], ws[1]), y)

    rho, lr, wd = 0.07, 0.3, 1e-2
    ws = [w.clone().requires_grad_() for w in w0]
    g = torch.autograd.grad(loss_at(ws), ws)
    norm = torch.sqrt(sum((t ** 2).sum() for t in g))
    adv = [(w + rho * t / norm).requires_grad_() for w, t in zip(w0, g, strict=True)]
    g2 = torch.autograd.grad(loss_at(adv), adv)
    expected = [w - lr * (t + wd * w) for w, t in zip(w0, g2, strict=True)]

    opt = SAMOptimizer(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9,
                                       weight_decay=wd), rho)
    opt.zero_grad()
    loss_fn(model(x), y).backward()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    for p, e in zip(model.parameters(), expected, strict=True):
        assert torch.allclose(p.detach(), e, atol=1e-6)


# --------------------------------------------------------------------------- end to end


def _ablate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "ablate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=LIMIT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _db(db: Path, sql: str) -> list[tuple[Any, ...]]:
    import sqlite3

    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not "
                    "installed (apt-get install dataset-fashion-mnist)")
def test_a_study_of_own_trick_model_and_format_end_to_end(tmp_path: Path) -> None:
    """SAM, ConvMixer and IDX files from imports:, every run under torchrun with two
    processes; then an edit of SAM's code retrains exactly the SAM runs, a comment-only
    edit nothing, and the report compares the new runs."""
    train = write_idx_subset(tmp_path / "fm", "train", 400)
    val = write_idx_subset(tmp_path / "fm", "t10k", 200)
    study = _plugin_study(tmp_path, imports=["plugins/sam.py", "plugins/convmixer.py",
                                             "plugins/idx_format.py"],
                          launch={"nproc_per_node": 2})
    data = yaml.safe_load(study.read_text())
    data["base"]["data"] = {"format": "idx", "train": str(train), "val": str(val),
                            "image_size": 28, "preset": "small", "hflip": False,
                            "mean": [0.286] * 3, "std": [0.353] * 3}
    data["base"]["model"] = {"name": "resnet20"}
    data["variants"][1]["set"] = {"model": "convmixer_256_8", "model.options": {"depth": 2,
                                                                                 "dim": 32}}
    study.write_text(yaml.safe_dump(data, sort_keys=False))
    db = tmp_path / "r.db"
    url = f"sqlite:///{db}"
    _ablate("run", str(study), "--db", url, "--max-parallel", "1", cwd=tmp_path)
    runs = _db(db, "select hash, run_dir, status from run")
    assert len(runs) == 6 and {s for *_, s in runs} == {"succeeded"}
    sam_dirs = [Path(d) for d, in _db(db, "select r.run_dir from run r join study_run s on "
                                          "s.run_hash = r.hash where s.variant = 'sam'")]
    for run_dir in sam_dirs:
        config = json.loads((run_dir / "config.json").read_text())
        assert config["env"]["world_size"] == 2
        assert set(config["code"]["components"]) == {"trick:sam", "model:resnet20",
                                                     "data:idx"}
        assert (run_dir / "code" / "sam.py").read_text() == \
            (tmp_path / "plugins" / "sam.py").read_text()
    report = _ablate("report", "own", "--db", url, cwd=tmp_path).stdout
    assert "sam" in report and "convmixer" in report
    shown = _ablate("show", sam_dirs[0].name, "--db", url, cwd=tmp_path).stdout
    assert "trick:sam" in shown and "snapshot: code/sam.py" in shown
    code_rows = sorted(_db(db, "select run_hash, config_hash, code from run_code"))
    assert len(code_rows) == 6
    _ablate("db", "rebuild", "--runs-dir", "runs", "--db", f"sqlite:///{tmp_path / 'b.db'}",
            cwd=tmp_path)
    assert sorted(_db(tmp_path / "b.db", "select run_hash, config_hash, code from run_code")
                  ) == code_rows

    sam = tmp_path / "plugins" / "sam.py"
    sam.write_text(sam.read_text() + "\n# only a comment\n")
    _ablate("run", str(study), "--db", url, cwd=tmp_path)
    assert len(_db(db, "select hash from run")) == 6  # nothing trained
    sam.write_text(sam.read_text().replace("self.rho / (norm + 1e-12)",
                                           "self.rho / (norm + 1e-6)"))
    _ablate("run", str(study), "--db", url, "--max-parallel", "1", cwd=tmp_path)
    rows = _db(db, "select hash, status from run")
    assert len(rows) == 8 and {s for _, s in rows} == {"succeeded"}
    new = {h for h, in _db(db, "select s.run_hash from study_run s where s.variant = 'sam'")}
    assert not new & {Path(d).name for d in sam_dirs}
    csv = _ablate("report", "own", "--db", url, "--format", "json", cwd=tmp_path).stdout
    assert "2 runs of these configs trained by other code exist" in csv
    top1 = dict(_db(db, "select s.seed, r.top1 from study_run s join result r on "
                        "r.run_hash = s.run_hash where s.variant = 'sam'"))
    sam_row = next(r for r in json.loads(csv) if r.get("variant") == "sam")
    assert abs(sam_row["top1"] - sum(top1.values()) / len(top1)) < 1e-9


@pytest.mark.slow
def test_the_trainer_imports_the_snapshot_not_the_original(tmp_path: Path,
                                                           digits_dir: Path) -> None:
    """The plugin file is broken after its snapshot was taken: the run trains the code as
    it was (its recorded fingerprints are the planned ones), and the snapshot equals the
    file at the start."""
    from ablate.launch.local import torchrun_command, write_run_config

    study = _plugin_study(tmp_path, digits_dir)
    spec = next(r for r in load_study(study).run_specs(tmp_path / "runs") if r.variant == "sam")
    sam = tmp_path / "plugins" / "sam.py"
    original = sam.read_text()
    config = write_run_config(spec)
    sam.write_text("this is not python\n")
    cmd = torchrun_command(config, Path(spec.run_dir), nproc=1)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(spec.run_dir)
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["hash"] == spec.hash == run_dir.name
    fingerprints = {k: v["fingerprint"] for k, v in recorded["code"]["components"].items()}
    assert fingerprints == spec.code
    assert (run_dir / "code" / "sam.py").read_text() == original
    assert json.loads((run_dir / "result.json").read_text())["status"] == "succeeded"


def test_a_run_config_imports_relative_to_its_file(tmp_path: Path) -> None:
    """``python -m zoo.train`` alone: ``imports:`` in the run config, relative to it."""
    from zoo.validate import load_config

    (tmp_path / "lab").mkdir()
    shutil.copy(EXAMPLES / "sam.py", tmp_path / "lab" / "sam.py")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"imports": ["lab/sam.py"], "model": "resnet20",
                                        "tricks": {"sam": {"rho": 0.1}}}))
    cfg = load_config(cfg_file)
    assert cfg.tricks == {"sam": {"rho": 0.1}} and cfg.imports == ("lab/sam.py",)


def test_the_guides_complete_trick_works(tmp_path: Path) -> None:
    """The trick printed in docs/extending.md registers and does what it says: with rate 1
    every label of a batch is drawn anew from the run's generator."""
    import re

    import torch

    from zoo.plugins import import_plugins
    from zoo.tricks import TrainContext, TrickSet

    text = (ROOT / "docs" / "extending.md").read_text()
    block = re.search(r"## A complete trick.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) < 40
    (tmp_path / "noisy.py").write_text(block)
    import_plugins(["noisy.py"], tmp_path)
    tricks = TrickSet({"noisy_labels": {"rate": 1.0}})
    targets = torch.zeros(256, dtype=torch.long)
    ctx = TrainContext(num_classes=10, world_size=1, device=torch.device("cpu"), epochs=1,
                       steps_per_epoch=1, generator=torch.Generator().manual_seed(0))
    _, noisy = tricks.batch(torch.zeros(256, 3, 8, 8), targets, ctx)
    assert set(noisy.tolist()) == set(range(10))
    with pytest.raises(ConfigError, match=r"tricks\.noisy_labels\.rate: must be in"):
        TrickSet({"noisy_labels": {"rate": 2.0}})


def test_a_finished_run_of_other_code_is_not_reused(tmp_path: Path) -> None:
    """A run directory under a run's id whose result was trained by other code (a copied
    directory) is neither reused nor trained over: the run fails once, saying why."""
    for split in ("train", "val"):
        (tmp_path / "data" / split / "a").mkdir(parents=True)
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({
        "name": "copied", "seeds": [0], "variants": [],
        "base": {"model": "resnet20", "epochs": 1, "data": {
            "train": str(tmp_path / "data" / "train"), "val": str(tmp_path / "data" / "val")}}}))
    (spec,) = load_study(study).run_specs(tmp_path / "runs")
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True)
    other = {k: {"fingerprint": "0" * 16} for k in spec.code}
    (run_dir / "config.json").write_text(json.dumps({
        "hash": "f" * 16, "config_hash": "e" * 16, "config": spec.config,
        "code": {"components": other}}))
    (run_dir / "result.json").write_text(json.dumps({
        "status": "succeeded", "error": None, "hash": "f" * 16, "model": "resnet20",
        "epochs": 1, "epochs_completed": 1, "final": {"top1": 50.0}, "best": {},
        "params": 1, "macs": 1, "wall_seconds": 1.0, "device_hours": 0.0,
        "images_per_s": 1.0, "world_size": 1, "device_type": "cpu"}))
    db = tmp_path / "r.db"
    out = runner.invoke(app, ["run", str(study), "--db", f"sqlite:///{db}",
                              "--runs-dir", str(tmp_path / "runs")])
    assert out.exit_code == 1, out.output
    assert "0 trained, 0 reused, 1 failed" in out.output
    assert _db(db, "select status, error from run") == [(
        "failed", "the code changed after the run was planned (its hash became "
                  "ffffffffffffffff); run 'ablate run' again to plan it anew")]
    assert _db(db, "select count(*) from result") == [(0,)]
