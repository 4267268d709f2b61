"""The ``ablate`` script's start-up (ablate/startup.py): its imports and each command's
heavy imports leave the garbage collector's scans (gc.freeze) in the script only; a
process that imports ablate (a notebook, these tests) keeps its collector untouched, and
the output is the same either way."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.startup import frozen_imports
from ablate.store.db import Store
from tests.conftest import ROOT
from tests.test_report import V, add_study, tricks_study

#: Runs ``ablate.__main__.main`` (what the console script and ``python -m ablate`` run) on
#: the arguments, then prints the collector's state as the command left it.
PROBE = ("import gc, sys\nfrom ablate.__main__ import main\nsys.argv = ['ablate', *sys.argv[1:]]\n"
         "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
         "print(gc.get_freeze_count(), gc.isenabled(), file=sys.stderr)")


def script(*args: str) -> tuple[str, int, bool]:
    """stdout, the frozen objects' count and whether the collector is on, after ``args``."""
    env = {k: v for k, v in os.environ.items() if k != "ABLATE_DB"}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          check=True, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                          timeout=300)
    frozen, enabled = done.stderr.strip().splitlines()[-1].split()
    return done.stdout, int(frozen), enabled == "True"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('startup') / 'results.db'}"
    store = Store(url)
    add_study(store, "tricks", tricks_study())
    add_study(store, "two", [V("baseline", {0: 76.0, 1: 76.2}),
                             V("dropout", {0: 76.4, 1: 76.5}, tricks={"dropout": {"rate": 0.3}})])
    store.close()
    return url


def test_the_script_freezes_its_imports_and_each_commands_and_collects_after(db: str) -> None:
    """Start-up alone (--version) freezes the CLI's imports; report and status freeze
    their own heavy imports (the store, the statistics) on top; the collector is on again
    for the command's work."""
    _, start, on = script("--version")
    assert start > 10_000 and on  # typer, rich, the CLI's modules
    for command in ("report", "status"):
        out, frozen, on = script(command, "--db", db)
        assert frozen > start + 10_000 and on, (command, start, frozen)
        assert out == CliRunner().invoke(app, [command, "--db", db]).stdout


def test_an_importing_process_keeps_its_collector() -> None:
    """Outside the script, frozen_imports is a plain block: nothing frozen, the collector
    as it was (on, or off where the caller turned it off), also when the block raises."""
    assert gc.get_freeze_count() == 0
    with frozen_imports():
        import ablate.report  # noqa: F401
        assert gc.isenabled()
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(KeyError), frozen_imports():
            raise KeyError("x")
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_a_failing_import_in_the_script_leaves_the_collector_on() -> None:
    """In the script (a start-up froze), an import that fails inside the block still
    freezes what was built and turns the collector back on."""
    code = ("import gc\nfrom ablate.startup import frozen_imports\n"
            "with frozen_imports(start=True):\n    pass\nn = gc.get_freeze_count()\n"
            "try:\n    with frozen_imports():\n        import ablate_no_such_module\n"
            "except ImportError:\n    pass\nassert gc.isenabled() and gc.get_freeze_count() >= n\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
