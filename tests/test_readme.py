"""The README's results tables are generated: they equal what ``ablate report`` makes from
the committed results.db, and the README's two commands are what CI and the Makefile run."""

from __future__ import annotations

import re

from ablate.report import readme_studies, render_readme
from ablate.store.db import Store
from tests.conftest import ROOT

README = ROOT / "README.md"
RESULTS = ROOT / "results.db"


def test_readme_tables_equal_the_report_from_results_db() -> None:
    text = README.read_text()
    assert "fashion_mnist_tricks" in readme_studies(text)
    assert RESULTS.exists(), "results.db must be committed with the README it generates"
    store = Store(f"sqlite:///{RESULTS}", create=False)
    try:
        assert render_readme(text, store) == text, (
            "README.md's report tables differ from results.db: run "
            "'ablate report --db sqlite:///results.db --readme README.md --plots docs/img'"
        )
    finally:
        store.close()


def test_readme_starts_with_the_two_commands_ci_and_make_run() -> None:
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [ln.split("#")[0].strip() for ln in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_plots_shown_in_the_readme_exist() -> None:
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text()):
        assert (ROOT / link).is_file(), link
