"""``ablate db rebuild``: a results database made from run directories alone holds the
same rows as the one the study was recorded in (all but what only the orchestrating
machine knew: timestamps, owner, host, attempts)."""

from __future__ import annotations

from pathlib import Path

from tests.test_orchestrator import ablate, db_rows, study_dict, write_study

#: Each table's rows as a rebuild must reproduce them, in a stable order.
QUERIES = {
    "study": "select name, path, mode, spec from study order by name",
    "study_run": "select s.name, r.variant, r.variant_index, r.change, r.seed, r.run_hash "
                 "from study_run r join study s on s.id = r.study_id "
                 "order by s.name, r.variant_index, r.seed",
    "run": "select hash, config, status, run_dir, nproc, epochs, epochs_done, top1, "
           "images_per_s, code_commit, code_dirty, error, model from run order by hash",
    "metric": "select run_hash, epoch, key, value from metric order by run_hash, epoch, key",
    "result": "select * from result order by run_hash",
}


def test_rebuild_reproduces_a_studys_rows(digits_dir: Path, tmp_path: Path) -> None:
    spec = study_dict(digits_dir, seeds=[0, 1])
    spec["base"]["epochs"] = 1
    spec["variants"] = spec["variants"][:1]
    study = write_study(tmp_path / "s.yaml", spec)
    original = tmp_path / "results.db"
    ablate("run", str(study), "--db", f"sqlite:///{original}", "--runs-dir", "runs",
           "--cpu-threads", "1", cwd=tmp_path)
    rebuilt = tmp_path / "rebuilt.db"
    out = ablate("db", "rebuild", "--runs-dir", "runs", "--db", f"sqlite:///{rebuilt}",
                 cwd=tmp_path)
    assert "rebuilt 1 studies, 4 runs" in out.stdout
    for table, sql in QUERIES.items():
        want = db_rows(original, sql)
        assert want, table
        assert db_rows(rebuilt, sql) == want, table
    # The rebuilt database serves the reading commands as the original does.
    for db in (original, rebuilt):
        assert ablate("report", "--db", f"sqlite:///{db}", cwd=tmp_path).stdout == ablate(
            "report", "--db", f"sqlite:///{original}", cwd=tmp_path).stdout
    again = ablate("db", "rebuild", "--runs-dir", "runs", "--db", f"sqlite:///{rebuilt}",
                   cwd=tmp_path, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
