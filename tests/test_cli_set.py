"""``ablate run STUDY.yaml --set KEY=VALUE``: overrides of the study document, applied before
validation, that change the runs' configs and hashes like an edited file does, and land in
a study of their own, never in the file's."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import StudyError
from ablate.store.db import Store
from ablate.study.spec import load_study
from tests.conftest import digits_config

runner = CliRunner()


def study_doc(data: Path) -> dict[str, Any]:
    base = digits_config(data, epochs=3)
    base.pop("seed")
    return {
        "name": "digits_set",
        "base": base,
        "seeds": [0, 1, 2],
        "variants": [
            {"name": "label smoothing", "tricks": {"label_smoothing": {"smoothing": 0.1}}},
            {"name": "lr 0.05", "set": {"optim.lr": 0.05}},
        ],
    }


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Directories that exist (a plan checks the paths; nothing here reads images)."""
    for split in ("train", "val"):
        (tmp_path / "data" / split).mkdir(parents=True)
    return tmp_path / "data"


def hashes(study: Any) -> dict[tuple[str, int], str]:
    return {(r.variant, r.seed): r.hash for r in study.plan()}


def test_overrides_change_hashes_exactly_as_an_edited_file(data: Path, tmp_path: Path) -> None:
    doc = study_doc(data)
    path = write(tmp_path / "s.yaml", doc)
    plain = load_study(path)
    smoke = load_study(path, overrides=["base.epochs=1", "seeds=[0]", "base.optim.lr=0.2"])
    edited_doc = copy.deepcopy(doc)
    edited_doc["base"]["epochs"] = 1
    edited_doc["base"]["optim"]["lr"] = 0.2
    edited_doc["seeds"] = [0]
    edited = load_study(write(tmp_path / "edited.yaml", edited_doc))
    assert hashes(smoke) == hashes(edited)
    assert len(hashes(smoke)) == 3  # baseline and two variants, seed 0
    assert not set(hashes(smoke).values()) & set(hashes(plain).values())
    assert {r.config.epochs for r in smoke.plan()} == {1}
    # The variant's own set still wins over the overridden base.
    lr = {r.variant: r.config.optim.lr for r in smoke.plan()}
    assert lr == {"baseline": 0.2, "label smoothing": 0.2, "lr 0.05": 0.05}


def test_values_are_yaml_typed(data: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", study_doc(data))
    study = load_study(path, overrides=[
        "seeds=[4, 5]", "base.epochs=2", "base.compile=true", "description=a smoke test",
        "base.model=resnet50", "margin=0.5"])
    assert study.seeds == (4, 5)
    cfg = study.plan()[0].config
    assert (cfg.epochs, cfg.compile, cfg.model.name) == (2, True, "resnet50")
    assert study.description == "a smoke test" and study.margin == 0.5
    assert load_study(path, overrides=["variants=[]"]).variants == ()


def test_name_is_derived_unless_set_and_the_spec_records_the_overrides(
    data: Path, tmp_path: Path
) -> None:
    path = write(tmp_path / "s.yaml", study_doc(data))
    assert load_study(path).file_name is None
    one = load_study(path, overrides=["base.epochs=1", "seeds=[0]"])
    # The derived name is a function of the parsed overrides: the same command, the same
    # study; another value, another study.
    assert one.name.startswith("digits_set-set-") and len(one.name) == len("digits_set-set-") + 8
    assert one.file_name == "digits_set"
    assert load_study(path, overrides=["base.epochs=01", "seeds=[ 0 ]"]).name == one.name
    assert load_study(path, overrides=["base.epochs=2", "seeds=[0]"]).name != one.name
    assert one.raw["name"] == one.name
    assert one.raw["overrides"] == ["base.epochs=1", "seeds=[0]"]
    assert one.raw["base"]["epochs"] == 1 and one.raw["seeds"] == [0]
    named = load_study(path, overrides=["name=smoke", "base.epochs=1"])
    assert (named.name, named.file_name, named.raw["name"]) == ("smoke", None, "smoke")
    # The file itself is not touched.
    assert yaml.safe_load(path.read_text()) == study_doc(data)


@pytest.mark.parametrize(("override", "words"), [
    ("base.epochs", ["--set 'base.epochs'", "expected KEY=VALUE"]),
    ("=1", ["--set '=1'", "no key before '='"]),
    ("base..epochs=1", ["--set 'base..epochs=1'", "dotted path"]),
    ("seeds.x=1", ["--set 'seeds.x=1'", "seeds: is [0, 1, 2] (list), not a mapping",
                   "set seeds as a whole"]),
    ("base.epochs.x=1", ["base.epochs: is 3 (int)"]),
    ("bogus=1", ["unknown key 'bogus'"]),
    ("base.epoch=1", ["base: unknown key 'epoch'; did you mean 'epochs'?"]),
    ("seeds=0", ["seeds: expected a list of integers or planned seeds"]),
    ("base.epochs=many", ["epochs", "'many'"]),
    ("name=a b", ["name: required, letters, digits"]),
])
def test_a_bad_override_is_one_line_naming_the_key(
    override: str, words: list[str], data: Path, tmp_path: Path
) -> None:
    path = write(tmp_path / "s.yaml", study_doc(data))
    with pytest.raises(StudyError) as exc:
        load_study(path, overrides=[override])
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for w in words:
        assert w in message, message
    # The same through the command: exit 2, one line on stderr, nothing written.
    db = tmp_path / "r.db"
    result = runner.invoke(app, ["run", str(path), "--set", override, "--dry-run",
                                 "--db", f"sqlite:///{db}"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0 and words[0] in result.stderr
    assert not db.exists()


def test_the_trainer_set_refuses_a_path_through_a_value(tmp_path: Path) -> None:
    from zoo.config import apply_overrides
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--set 'optim\.lr\.x=1': optim\.lr: is 0\.1"):
        apply_overrides({"optim": {"lr": 0.1}}, ["optim.lr.x=1"])
    # Absent or empty sections are made; a model name becomes {name: ...}.
    out = apply_overrides({"model": "resnet20", "tricks": None},
                          ["model.options.act=silu", "tricks.mixup.alpha=0.2"])
    assert out == {"model": {"name": "resnet20", "options": {"act": "silu"}},
                   "tricks": {"mixup": {"alpha": 0.2}}}


def test_dry_run_shows_the_overridden_plan(data: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", study_doc(data))
    args = ["run", str(path), "--dry-run", "--db", f"sqlite:///{tmp_path / 'none.db'}",
            "--runs-dir", str(tmp_path / "runs")]
    full = runner.invoke(app, args)
    smoke = runner.invoke(app, [*args, "--set", "base.epochs=1", "--set", "seeds=[0]"])
    assert full.exit_code == 0 and smoke.exit_code == 0, smoke.output
    expected = load_study(path, overrides=["base.epochs=1", "seeds=[0]"])
    assert f"recorded as study '{expected.name}', not 'digits_set'" in smoke.stdout
    assert f"{expected.name}: plan of 3 runs" in smoke.stdout
    # Each row: variant, change, seed, epochs, run id, state.
    rows = [line.split() for line in smoke.stdout.splitlines() if line.endswith("to do")]
    assert [(r[-5], r[-4], r[-3]) for r in rows] == [
        ("0", "1", r.hash[:8]) for r in expected.plan()]
    full_rows = [line.split() for line in full.stdout.splitlines() if line.endswith("to do")]
    assert [(r[-5], r[-4], r[-3]) for r in full_rows] == [
        (str(r.seed), "3", r.hash[:8]) for r in load_study(path).plan()]
    assert "recorded as" not in full.stdout


def test_an_overridden_run_leaves_the_file_study_in_the_database_untouched(
    digits_dir: Path, tmp_path: Path
) -> None:
    """End to end on real digits: the full study registered as ``ablate run`` registers
    it, then a one-run smoke test of the same file with ``--set``."""
    from tests.test_orchestrator import ablate, db_rows

    doc = study_doc(digits_dir)
    path = write(tmp_path / "s.yaml", doc)
    db, runs = tmp_path / "results.db", tmp_path / "runs"
    full = load_study(path)
    store = Store(f"sqlite:///{db}")
    store.register_study(full.name, str(path), full.mode, full.raw, full.run_specs(runs))
    store.close()
    spec_sql = "select name, spec from study order by name"
    links_sql = ("select s.name, sr.variant, sr.seed, sr.run_hash from study_run sr join "
                 "study s on s.id = sr.study_id order by s.name, sr.variant_index, sr.seed")
    before_spec, before_links = db_rows(db, spec_sql), db_rows(db, links_sql)

    sets = ["--set", "base.epochs=1", "--set", "seeds=[0]", "--set", "variants=[]"]
    out = ablate("run", str(path), *sets, "--db", f"sqlite:///{db}", "--runs-dir", str(runs),
                 cwd=tmp_path).stdout
    smoke_doc = {**doc, "base": {**doc["base"], "epochs": 1}, "seeds": [0], "variants": []}
    (smoke_hash,) = hashes(load_study(write(tmp_path / "smoke.yaml", smoke_doc))).values()
    name = load_study(path, overrides=sets[1::2]).name
    assert f"{name}: 1 trained, 0 reused, 0 failed" in out
    # The file's study: its spec and its 9 (variant, seed) links as they were, runs queued.
    assert [r for r in db_rows(db, spec_sql) if r[0] == "digits_set"] == before_spec
    assert [r for r in db_rows(db, links_sql) if r[0] == "digits_set"] == before_links
    assert smoke_hash not in {h for *_, h in before_links}
    # The smoke study: one link to the run whose hash the edited file gives, trained.
    assert [r for r in db_rows(db, links_sql) if r[0] == name] == [
        (name, "baseline", 0, smoke_hash)]
    assert db_rows(db, f"select status, epochs from run where hash = '{smoke_hash}'") == [
        ("succeeded", 1)]
    (spec,) = [json.loads(s) for n, s in db_rows(db, spec_sql) if n == name]
    assert spec["overrides"] == sets[1::2] and spec["name"] == name
    assert spec["base"]["epochs"] == 1 and spec["seeds"] == [0] and spec["variants"] == []


def test_a_stored_spec_pasted_back_into_a_file_is_the_same_study(
    data: Path, tmp_path: Path
) -> None:
    """The stored spec (``study.raw``, what the database and studies.json keep) lists the
    overrides it already includes; as a study file it loads as the same study, the same
    runs, and nothing is applied twice."""
    path = write(tmp_path / "s.yaml", study_doc(data))
    smoke = load_study(path, overrides=["base.epochs=1", "seeds=[0]", "base.optim.lr=0.2"])
    pasted = load_study(write(tmp_path / "pasted.yaml", json.loads(json.dumps(smoke.raw))))
    assert pasted.name == smoke.name
    assert hashes(pasted) == hashes(smoke)
    assert pasted.raw == smoke.raw
    assert pasted.overrides == ()  # the file alone re-runs it, no --set to repeat
    # More overrides on top are recorded after the ones already there.
    again = load_study(tmp_path / "pasted.yaml", overrides=["base.epochs=2"])
    assert again.raw["overrides"] == [*smoke.raw["overrides"], "base.epochs=2"]
    assert again.name.startswith(f"{smoke.name}-set-")


@pytest.mark.parametrize(("value", "words"), [
    (3, "overrides: expected a list of KEY=VALUE strings"),
    (["base.epochs"], "overrides: --set 'base.epochs': expected KEY=VALUE"),
])
def test_a_bad_recorded_overrides_key_is_one_line_naming_it(
    data: Path, tmp_path: Path, value: Any, words: str
) -> None:
    path = write(tmp_path / "s.yaml", {**study_doc(data), "overrides": value})
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}: {words}")
    assert "\n" not in str(err.value)
