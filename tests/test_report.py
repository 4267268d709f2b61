"""ablate report on a synthetic results database with known per-seed top-1: the paired
statistics against a hand computation, the marking of noise, every output format, README
blocks, plots, one-line errors; and the dry run of the committed study files."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import AblateError
from ablate.report import (
    build_frame,
    frame_of,
    paired_delta,
    paired_power,
    render,
    render_readme,
    report_rows,
    seeds_for_power,
    study_markdown,
    t_ppf,
)
from ablate.store import MetricRow, ResultRow, RunRow, Status, Store, StudyRow, StudyRunRow
from tests.conftest import ROOT
from tests.test_orchestrator import CONSOLES
from zoo.config import RunConfig

runner = CliRunner()

ENV = {"python": "3.11.7", "torch": "2.4.1", "torchvision": "0.19.1", "cuda": "12.4",
       "cudnn": 90100, "device": "NVIDIA A100", "device_type": "cuda", "world_size": 8}


@dataclass
class V:
    """A variant of a synthetic study: its change and its final top-1 per seed (None: the
    run has not succeeded)."""

    name: str
    top1: dict[int, float | None]
    tricks: dict[str, Any] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)
    commit: str = "1f2e3d4c5b6a"
    dirty: bool = False
    env: dict[str, Any] = field(default_factory=lambda: dict(ENV))
    #: Config changes the study file does not declare (an unfair comparison).
    undeclared: dict[str, Any] = field(default_factory=dict)


def _base_config() -> dict[str, Any]:
    cfg = RunConfig().to_dict()
    cfg["model"]["name"] = "resnet50"
    cfg.update(epochs=120, batch_size=128, precision="fp16")
    cfg["optim"]["lr"] = 0.4
    return cfg


def _apply(cfg: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    for key, value in changes.items():
        node = out
        *parents, last = ("model.name" if key == "model" else key).split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return out


def add_study(store: Store, name: str, variants: list[V], mode: str = "add_one") -> None:
    """Insert a finished study as the orchestrator and ingest would leave it."""
    base = _base_config()
    # A data set per study: runs are keyed by their config and would otherwise be shared.
    base["data"].update(train=f"/data/{name}/train", val=f"/data/{name}/val")
    spec = {"name": name, "mode": mode, "seeds": sorted(variants[0].top1),
            "variants": [{"name": v.name, "tricks": v.tricks, "set": v.set}
                         for v in variants[1:]]}
    with store.session() as s:
        study = StudyRow(name=name, path=f"{name}.yaml", mode=mode, spec=spec)
        s.add(study)
        s.flush()
        for index, v in enumerate(variants):
            cfg = _apply(_apply(base, v.set), v.undeclared)
            cfg["tricks"] = {**cfg["tricks"], **v.tricks}
            for seed, top1 in v.top1.items():
                run_cfg = {**cfg, "seed": seed}
                h = hashlib.sha256(json.dumps(run_cfg, sort_keys=True).encode()).hexdigest()[:16]
                ok = top1 is not None
                s.add(RunRow(hash=h, config=run_cfg,
                             status=Status.succeeded if ok else Status.queued,
                             run_dir=f"runs/{h}", nproc=8, epochs=cfg["epochs"],
                             code_commit=v.commit, code_dirty=v.dirty))
                s.flush()
                if ok:
                    assert top1 is not None
                    s.add(ResultRow(run_hash=h, top1=top1, top5=top1 + 17.0, best_top1=top1,
                                    best_top5=top1 + 17.0, params=25_557_032,
                                    macs=4_089_184_256, seconds=3600.0, device_hours=8.0,
                                    images_per_s=3000.0, world_size=v.env["world_size"],
                                    audit=[], env=v.env))
                    for epoch in (1, 2, 3, 4):
                        s.add(MetricRow(run_hash=h, epoch=epoch, key="top1",
                                        value=top1 - 12.0 * (4 - epoch) ** 1.5))
                s.add(StudyRunRow(study_id=study.id, variant=v.name, variant_index=index,
                                  change=f"+ {v.name}" if index else "", seed=seed,
                                  run_hash=h))


BASELINE = {0: 76.0, 1: 76.4, 2: 75.8}
SMOOTHING = {0: 76.5, 1: 76.9, 2: 76.2}      # +0.5 +0.5 +0.4: clearly better
NO_BIAS_DECAY = {0: 76.2, 1: 76.2, 2: 75.9}  # +0.2 -0.2 +0.1: within noise
ROTATION = {0: 75.0, 1: 75.3, 2: 74.9}       # -1.0 -1.1 -0.9: clearly worse
MIXUP = {0: 76.3, 1: 76.5, 2: None}          # seed 2 not in yet


def tricks_study() -> list[V]:
    return [
        V("baseline", BASELINE),
        V("label smoothing", SMOOTHING, tricks={"label_smoothing": {"smoothing": 0.1}}),
        V("no bias decay", NO_BIAS_DECAY, tricks={"no_bias_decay": {}}),
        V("random rotation", ROTATION, tricks={"random_rotation": {"degrees": 15.0}}),
        V("mixup", MIXUP, tricks={"mixup": {"alpha": 0.2}}),
        V("lr 0.2", {0: 75.9, 1: 76.1, 2: 75.9}, set={"optim.lr": 0.2}),
    ]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """results.db with a trick study (3 seeds), a single-seed study, an unfair study and a
    models study."""
    path = tmp_path_factory.mktemp("report") / "results.db"
    url = f"sqlite:///{path}"
    store = Store(url)
    add_study(store, "tricks", tricks_study())
    add_study(store, "one_seed", [V("baseline", {0: 76.0}),
                                  V("label smoothing", {0: 76.3},
                                    tricks={"label_smoothing": {"smoothing": 0.1}})])
    add_study(store, "unfair", [
        V("baseline", {0: 76.0, 1: 76.2}),
        V("dropout", {0: 76.1, 1: 76.4}, tricks={"dropout": {"rate": 0.3}},
          commit="9a8b7c6d5e4f", dirty=True, env={**ENV, "torch": "2.5.0"},
          undeclared={"optim.momentum": 0.95}),
    ])
    add_study(store, "models", [
        V("baseline", {0: 76.0, 1: 76.4}),
        V("resnet101", {0: 78.1, 1: 78.3}, set={"model": "resnet101"}),
        V("mobilenetv3_large", {0: 75.1, 1: 75.4},
          set={"model": "mobilenetv3_large", "epochs": 360, "batch_size": 256,
               "optim.lr": 2.6, "optim.weight_decay": 3e-5},
          tricks={"label_smoothing": {"smoothing": 0.1}, "no_bias_decay": {}}),
    ])
    store.close()
    return url


@pytest.fixture(scope="module")
def frame(db: str) -> pd.DataFrame:
    return build_frame(Store(db, create=False))


def row(frame: pd.DataFrame, study: str, variant: str) -> dict[str, Any]:
    (r,) = frame[(frame.study == study) & (frame.variant == variant)].to_dict("records")
    return r


def cells(line: str) -> list[str]:
    """The cells of one markdown table line."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def hand_paired(base: dict[int, float | None], other: dict[int, float | None]
                ) -> tuple[int, float, float, float]:
    """n, mean difference, sd of differences and CI half-width, by plain arithmetic."""
    seeds = [s for s in base if base[s] is not None and other.get(s) is not None]
    diffs = [other[s] - base[s] for s in seeds]  # type: ignore[operator]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    return n, mean, sd, stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("variant,values", [("label smoothing", SMOOTHING),
                                            ("no bias decay", NO_BIAS_DECAY),
                                            ("random rotation", ROTATION),
                                            ("mixup", MIXUP)])
def test_paired_delta_and_interval_match_a_hand_computation(
    frame: pd.DataFrame, variant: str, values: dict[int, float | None]
) -> None:
    n, mean, sd, half = hand_paired(BASELINE, values)  # type: ignore[arg-type]
    r = row(frame, "tricks", variant)
    assert r["n_paired"] == n
    assert r["delta_top1"] == pytest.approx(mean, abs=1e-9)
    assert r["sd_diff_top1"] == pytest.approx(sd, abs=1e-9)
    assert r["ci_top1"] == pytest.approx(half, abs=1e-9)
    assert (r["ci_top1_low"], r["ci_top1_high"]) == pytest.approx((mean - half, mean + half))
    assert r["delta_top5"] == pytest.approx(mean, abs=1e-9)  # top5 = top1 + 17 here
    ok = [v for v in values.values() if v is not None]
    assert r["top1"] == pytest.approx(sum(ok) / len(ok))


def test_noise_floor_and_counts(frame: pd.DataFrame) -> None:
    base = row(frame, "tricks", "baseline")
    vals = list(BASELINE.values())
    mean = sum(vals) / 3
    assert base["top1_sd"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in vals) / 2))
    assert base["verdict"] == "baseline" and base["seeds"] == 3
    mixup = row(frame, "tricks", "mixup")
    assert (mixup["seeds"], mixup["seeds_planned"], mixup["n_paired"]) == (2, 3, 2)
    assert "2 of 3 seeds are in (seed 2 queued)" in mixup["notes"]


def test_within_noise_is_marked_and_only_real_improvements_are_bold(db: str) -> None:
    frame = build_frame(Store(db, create=False), ["tricks"])
    verdicts = dict(zip(frame.variant, frame.verdict, strict=True))
    assert verdicts == {"baseline": "baseline", "label smoothing": "better",
                        "no bias decay": "within noise", "random rotation": "worse",
                        "mixup": "within noise", "lr 0.2": "within noise"}
    text = study_markdown(frame, "tricks")
    lines = {ln.split("|")[7].strip(): ln for ln in text.splitlines() if ln.startswith("| resn")}
    _, mean, _, half = hand_paired(BASELINE, SMOOTHING)  # type: ignore[arg-type]
    assert f"**{mean:+.2f}**" in lines["label smoothing"]
    assert f"[{mean - half:+.2f}, {mean + half:+.2f}]" in lines["label smoothing"]
    assert "(within noise)" in lines["no bias decay"] and "**" not in lines["no bias decay"]
    assert "-1.00" in lines["random rotation"] and "**" not in lines["random rotation"]
    assert "(within noise)" not in lines["random rotation"]
    assert text.count("**") == 2  # one bold cell in the whole table
    assert cells(lines["mixup"])[11] == "2/3"


def test_single_seed_shows_n1_and_no_interval(frame: pd.DataFrame, db: str) -> None:
    r = row(frame, "one_seed", "label smoothing")
    assert r["verdict"] == "n=1" and r["delta_top1"] == pytest.approx(0.3)
    assert pd.isna(r["ci_top1"]) and pd.isna(r["seeds_for_power"])
    text = study_markdown(frame, "one_seed")
    line = next(ln for ln in text.splitlines() if "label smoothing" in ln and ln.startswith("|"))
    assert cells(line)[9:11] == ["+0.30 (n=1)", "n=1"] and "[" not in line
    assert "Noise floor: unknown" in text


def test_seeds_for_power_is_the_noncentral_t_answer() -> None:
    # Textbook values for a paired/one-sample t-test, two-sided alpha 0.05, 80% power.
    assert seeds_for_power(1.0, 1.0) == 10
    assert seeds_for_power(-0.5, 1.0) == 34
    for delta, sd in ((0.05, 0.2), (0.3, 0.25), (1.2, 0.4)):
        n = seeds_for_power(delta, sd)
        assert n is not None
        assert paired_power(n, delta, sd) >= 0.8 > paired_power(n - 1, delta, sd)
        nc = delta / sd * math.sqrt(n)
        crit = stats.t.ppf(0.975, n - 1)
        assert paired_power(n, delta, sd) == pytest.approx(
            1 - stats.nct.cdf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc))
    assert seeds_for_power(0.0, 0.2) is None and seeds_for_power(0.1, None) is None
    assert paired_delta({0: 1.0}, {1: 2.0}) is None  # no seed in common: nothing to pair


def test_interval_and_power_evaluate_exactly_what_scipy_stats_does() -> None:
    """The report evaluates scipy.stats' own functions without importing scipy.stats: to the
    bit, so no table changes (and NaN where scipy.stats gives NaN)."""
    for n in (2, 3, 5, 10, 34, 100, 1000):
        df = n - 1
        crit = float(stats.t.ppf(0.975, df))
        assert t_ppf(0.975, df) == crit
        for delta, sd in ((1e-6, 1.0), (0.05, 0.2), (0.3, 0.25), (1.0, 1.0), (2.0, 0.1),
                          (10.0, 0.01)):
            nc = abs(delta) / sd * math.sqrt(n)
            expected = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
            got = paired_power(n, delta, sd)
            assert got == expected or (math.isnan(got) and math.isnan(expected)), (n, delta)


def test_report_needs_no_trick_registry_when_runs_record_their_model(
    tmp_path: Path
) -> None:
    """A run's model after model-selecting tricks is recorded when it is registered: the
    report reads it instead of importing the trick registry (torch, seconds), and says the
    same as when it works the model out (a database from before the column)."""
    import subprocess
    import sys

    from ablate.spec import effective_model

    url = f"sqlite:///{tmp_path / 'models.db'}"
    store = Store(url)
    add_study(store, "tricks", tricks_study())
    before = build_frame(Store(url, create=False))
    with store.session() as s:  # as register_study records them
        for run in s.query(RunRow).all():
            run.model = effective_model(run.config)
    store.close()
    assert build_frame(Store(url, create=False)).equals(before)
    code = ("import sys; from ablate.report import build_frame, render; "
            "from ablate.store import Store; "
            f"render(build_frame(Store({url!r}, create=False)), 'markdown'); "
            "print(sorted(m for m in ('torch', 'zoo.tricks', 'scipy.stats') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_markdown_from_the_rows_is_the_markdown_from_the_frame(db: str) -> None:
    """ablate report's markdown (the default) is made from the report's rows, without
    pandas: the same text as from the DataFrame, which the other formats take."""
    store = Store(db, create=False)
    rows, frame = report_rows(store), build_frame(store)
    assert frame_of(rows).equals(frame)
    for plots_dir in (None, "docs/plots"):
        assert render(rows, "markdown", plots_dir) == render(frame, "markdown", plots_dir)
    for fmt in ("csv", "json", "latex", "html"):
        assert render(rows, fmt) == render(frame, fmt)  # type: ignore[arg-type]


def test_status_and_report_start_without_sqlalchemy_or_pandas(db: str) -> None:
    """On a SQLite file, ablate status and the markdown report import neither SQLAlchemy
    nor pandas (0.2-0.3 s each of their start-up); the report imports scipy only for its
    intervals."""
    import subprocess
    import sys

    code = ("import sys; from ablate.cli import app\n"
            "for args in (['status', '--db', sys.argv[1]], ['report', '--db', sys.argv[1]]):\n"
            "    try:\n"
            "        app(args, prog_name='ablate')\n"
            "    except SystemExit as exc:\n"
            "        assert not exc.code, exc.code\n"
            "print(sorted(m for m in ('sqlalchemy', 'pandas', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, db], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_differences_beyond_the_declared_change_are_reported(frame: pd.DataFrame) -> None:
    notes = row(frame, "unfair", "dropout")["notes"]
    assert "code differs from the baseline's runs: baseline 1f2e3d4c5b, this variant " \
           "9a8b7c6d5e+dirty" in notes
    assert row(frame, "unfair", "baseline")["study_notes"].startswith(
        "2 of 4 runs were trained from a working tree with uncommitted changes")
    assert "torch 2.4.1 -> 2.5.0" in notes
    assert "config differs from the baseline beyond the declared change: " \
           "optim.momentum 0.9 -> 0.95" in notes
    assert "tricks.dropout" not in notes  # the declared change itself is no surprise
    fair = row(frame, "tricks", "lr 0.2")
    assert fair["notes"] == "" and fair["degree"] == "-"  # lr has its own column
    assert set(frame[frame.study == "tricks"].notes) == {"", "2 of 3 seeds are in (seed 2 queued)"}
    assert row(frame, "tricks", "label smoothing")["degree"] == "smoothing=0.1"


def test_models_study_renders_the_models_table(frame: pd.DataFrame) -> None:
    text = study_markdown(frame, "models")
    assert cells(text.splitlines()[0]) == [
        "model", "epochs", "dtype", "batch size", "gpus", "lr", "tricks",
        "params (M) / MACs (G)", "top1/top5", "seeds"]
    mobile = next(ln for ln in text.splitlines() if ln.startswith("| mobilenetv3_large"))
    got = cells(mobile)
    assert got[:6] == ["mobilenetv3_large", "360", "FP16", "256", "8", "2.6"]
    assert got[6] == "label_smoothing(smoothing=0.1), no_bias_decay"
    assert got[8] == "75.25/92.25"


# --------------------------------------------------------------------------- CLI


def test_every_format_renders(db: str, tmp_path: Path) -> None:
    outputs = {}
    for fmt in ("markdown", "csv", "latex", "html", "json"):
        res = runner.invoke(app, ["report", "tricks", "one_seed", "--db", db, "--format", fmt])
        assert res.exit_code == 0, res.output
        outputs[fmt] = res.stdout
    md = outputs["markdown"]
    assert md.startswith("## tricks\n\n| model ") and "## one_seed" in md
    assert "baseline" in cells(md.splitlines()[4])
    assert "Noise floor: the baseline's top-1 varies by 0.31" in md
    csv = pd.read_csv(io.StringIO(outputs["csv"]))
    assert list(csv.variant[:6]) == [v.name for v in tricks_study()]
    assert csv.delta_top1[1] == pytest.approx(0.4666666, abs=1e-6)
    records = json.loads(outputs["json"])
    assert len(records) == 8 and records[1]["verdict"] == "better"
    assert records[0]["delta_top1"] is None
    assert "\\begin{tabular}" in outputs["latex"] and "\\textbf{+0.47}" in outputs["latex"]
    assert "<table" in outputs["html"] and "<strong>+0.47</strong>" in outputs["html"]
    out = tmp_path / "report.md"
    res = runner.invoke(app, ["report", "tricks", "--db", db, "-o", str(out)])
    assert res.exit_code == 0 and out.read_text().startswith("## tricks")


def one_line_error(res: Any) -> str:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_empty_database_and_unknown_study_are_one_line_errors(db: str, tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(empty).close()
    assert "no studies yet" in one_line_error(runner.invoke(app, ["report", "--db", empty]))
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert "no results database" in one_line_error(
        runner.invoke(app, ["report", "--db", missing]))
    line = one_line_error(runner.invoke(app, ["report", "trickz", "--db", db]))
    assert "unknown study 'trickz'; did you mean 'tricks'?" in line


def _reader_and_store(path: Path, tmp_path: Path, name: str) -> tuple[Any, Store]:
    """Two copies of a database: one opened as status and report open it (on a SQLite
    file, the SQLAlchemy-free reader), one as a Store."""
    import shutil

    from ablate.store_lite import SQLiteReader, open_reader

    a, b = tmp_path / f"{name}_reader.db", tmp_path / f"{name}_store.db"
    shutil.copy(path, a)
    shutil.copy(path, b)
    reader = open_reader(f"sqlite:///{a}")
    assert isinstance(reader, SQLiteReader)
    return reader, Store(f"sqlite:///{b}", create=False)


def _error(call: Any, *args: Any, **kwargs: Any) -> str:
    """The message of the AblateError ``call(*args, **kwargs)`` raises."""
    with pytest.raises(AblateError) as exc:
        call(*args, **kwargs)
    return str(exc.value)


def test_the_sqlite_reader_gives_what_the_store_gives(db: str, tmp_path: Path) -> None:
    """ablate status and report read a SQLite file without SQLAlchemy (0.2-0.3 s less
    start-up): the same rows, the same marking of lost runs, the same errors as the Store,
    on a database of this version and on one from before the job and model columns."""
    import sqlite3
    from datetime import datetime, timedelta

    from ablate.store_lite import open_reader, utcnow

    path = tmp_path / "states.db"
    path.write_bytes(Path(db[len("sqlite:///"):]).read_bytes())
    store = Store(f"sqlite:///{path}")
    with store.session() as s:  # every state a run can be in, as the orchestrator leaves it
        runs = s.query(RunRow).order_by(RunRow.hash).all()
        now = utcnow()
        for i, run in enumerate(runs[:8]):
            run.status = [Status.running, Status.running, Status.failed, Status.lost,
                          Status.interrupted, Status.queued, Status.running,
                          Status.succeeded][i]
            run.started_at = datetime(2025, 1, 2, 3, 4, 5, 678901)
            run.heartbeat_at = now - timedelta(seconds=[600, 1, 0, 0, 0, 0, 30, 0][i])
            run.finished_at = None if i < 2 else datetime(2025, 1, 2, 4, 0, 0)
            run.epochs_done, run.top1, run.images_per_s = i, 70.0 + i / 3, 1234.5
            run.job_id, run.job_state = (f"{1000 + i}", "RUNNING") if i % 2 else (None, None)
            run.code_dirty = [True, False, None][i % 3]
            run.error = "NonFiniteLossError: loss is nan" if i == 2 else None
            run.log_tail = "last\nlines" if i == 2 else None
            run.host, run.owner, run.attempts = "node1", f"node1:{i}:abc", i
    store.close()
    old = tmp_path / "old.db"  # a database from before the job and model columns
    old.write_bytes(path.read_bytes())
    with sqlite3.connect(old) as conn:
        for column in ("job_id", "job_state", "model"):
            conn.execute(f"ALTER TABLE run DROP COLUMN {column}")

    for name, source in (("now", path), ("old", old)):
        reader, store = _reader_and_store(source, tmp_path, name)
        assert (reader.has_jobs, reader.has_model) == (store.has_jobs, store.has_model)
        lost = reader.mark_lost(timedelta(seconds=60))
        assert lost == store.mark_lost(timedelta(seconds=60)) and len(lost) == 1
        assert reader.studies_runs() == store.studies_runs()
        for names in (["unfair", "tricks"], ["models"], []):
            assert reader.studies_runs(names) == store.studies_runs(names)
        assert reader.study_runs("tricks") == store.study_runs("tricks")
        for names in (None, [], ["models", "tricks", "models"], ["tricks", "nope"], ["nope"]):
            assert reader.report_runs(names) == store.report_runs(names)
        hashes = [row[5] for row in store.report_runs()[1]]
        assert reader.metric_values(hashes, "top1") == store.metric_values(hashes, "top1")
        assert build_frame(reader).equals(build_frame(store))
        assert _error(reader.studies_runs, ["trickz"]) == _error(store.studies_runs, ["trickz"])
        reader.close()
        store.close()
        query = "select * from run order by hash"
        with sqlite3.connect(tmp_path / f"{name}_reader.db") as a, \
                sqlite3.connect(tmp_path / f"{name}_store.db") as b:
            assert a.execute(query).fetchall() == b.execute(query).fetchall()

    # The same one-line errors, from a file that is missing, not a database or not ours.
    (tmp_path / "text.db").write_text("not a database")
    (tmp_path / "dir.db").mkdir()
    for bad in ("none.db", "no_dir/r.db", "text.db", "empty.db", "dir.db"):
        errors = []
        for opener in (open_reader, lambda url: Store(url, create=False)):
            for leftover in tmp_path.glob("empty.db*"):  # the opener made it a WAL database
                leftover.unlink()
            (tmp_path / "empty.db").write_bytes(b"")
            errors.append(_error(opener, f"sqlite:///{tmp_path / bad}"))
        assert errors[0] == errors[1], bad
    # A URL SQLAlchemy would read otherwise (%-escapes, a query string) gets the Store.
    for name in ("odd%5F.db", "odd_.db"):  # the file Store checks, the file it opens
        (tmp_path / name).write_bytes(old.read_bytes())
    assert isinstance(open_reader(f"sqlite:///{tmp_path}/odd%5F.db"), Store)


@pytest.mark.parametrize("console", CONSOLES)
def test_status_tables_print_without_cropping_what_they_print_cropped(
    console: dict[str, Any]
) -> None:
    """ablate status prints its tables without rich's cropping of every line to the
    console's width (print_table), where they are within it: the same text as
    console.print, in a pipe and on terminals, for every kind of cell."""
    from datetime import datetime

    from rich.console import Console

    from ablate.view import plan_table, print_table, status_table

    names = ["baseline", "lr 0.2 ünïcode", "日本語 variant", ":thumbs_up: emoji", "x[red]y",
             "trailing ", " leading", "—"]
    statuses = ["succeeded", "failed", "running", "queued", "lost", "interrupted"]
    runs = [{"variant": names[i % 8], "seed": i, "hash": f"{i:016x}", "change": "",
             "status": statuses[i % 6], "epochs_done": i % 4, "epochs": 3,
             "top1": None if i % 5 == 0 else 90 + i / 7, "images_per_s": 3000.0 + i,
             "started_at": datetime(2025, 1, 1), "finished_at": datetime(2025, 1, 1, 1, i),
             "error": "boom [rank 0] " * (i % 3) if i % 6 == 1 else None}
            for i in range(40)]
    for table in (status_table("study", runs), status_table("empty", []),
                  status_table("plain", [r for r in runs if r["variant"] == "baseline"]),
                  plan_table("plan", runs, {})):
        printed = []
        for cropped in (True, False):
            out = Console(file=io.StringIO(), highlight=False, **console)
            if cropped:
                out.print(table)
            else:
                print_table(table, out)
            printed.append(out.file.getvalue())  # type: ignore[attr-defined]
        assert printed[1] == printed[0]


README = """# Results

Hand-written text stays *exactly* as it is.\r
Even odd whitespace:\t

<!-- ablate:report tricks -->
an old table
<!-- /ablate:report -->

Between the blocks.

<!-- ablate:report one_seed --><!-- /ablate:report -->
trailing text without newline"""


def test_readme_blocks_are_replaced_and_nothing_else(db: str, tmp_path: Path) -> None:
    store = Store(db, create=False)
    new = render_readme(README, store)
    frame = build_frame(store, ["tricks", "one_seed"])
    assert new == (README
                   .replace("\nan old table\n", "\n" + study_markdown(frame, "tricks"))
                   .replace("one_seed --><!--",
                            "one_seed -->\n" + study_markdown(frame, "one_seed") + "<!--"))
    assert render_readme(new, store) == new  # idempotent
    # With plots the image links are refreshed; without, they are kept as they are.
    with_plots = render_readme(new, store, plots_dir="docs/plots")
    assert "![tricks: top-1 change against the baseline](docs/plots/tricks_delta.png)" \
        in with_plots
    assert render_readme(with_plots, store) == with_plots
    assert render_readme(with_plots, store, plots_dir="docs/plots") == with_plots

    path = tmp_path / "README.md"
    path.write_bytes(README.encode())
    res = runner.invoke(app, ["report", "--db", db, "--readme", str(path)])
    assert res.exit_code == 0, res.output
    assert path.read_bytes() == new.encode()
    res = runner.invoke(app, ["report", "--db", db, "--readme", str(path)])
    assert "already up to date" in res.output
    path.write_text("<!-- ablate:report nope -->\n<!-- /ablate:report -->\n")
    assert "unknown study 'nope'" in one_line_error(
        runner.invoke(app, ["report", "--db", db, "--readme", str(path)]))
    path.write_text("<!-- ablate:report tricks -->\nno end\n")
    assert "has no closing" in one_line_error(
        runner.invoke(app, ["report", "--db", db, "--readme", str(path)]))


def test_plots_are_written_as_png(db: str, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "plots"
    res = runner.invoke(app, ["report", "tricks", "one_seed", "--db", db, "--plots", str(out),
                              "-o", str(tmp_path / "r.md")])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["one_seed_curves.png", "one_seed_delta.png", "tricks_curves.png",
                     "tricks_delta.png"]
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(p) as im:
            im.verify()
            assert im.size[0] > 600 and im.size[1] > 250
    assert "](plots/tricks_delta.png)" in (tmp_path / "r.md").read_text()


# --------------------------------------------------------------------------- study files


@pytest.mark.parametrize("study", ["resnet50_tricks", "baselines"])
def test_study_files_validate_in_a_dry_run(study: str, digits_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGENET", str(digits_dir))
    db = tmp_path / "none.db"
    res = runner.invoke(app, ["run", str(ROOT / "studies" / f"{study}.yaml"), "--dry-run",
                              "--db", f"sqlite:///{db}"])
    assert res.exit_code == 0, res.output
    assert res.output.count("to do") == (14 if study == "resnet50_tricks" else 15) * 3
    assert not db.exists()
