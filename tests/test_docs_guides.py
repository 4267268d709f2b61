"""Guides that run: every ```bash block of a guide in docs/ marked ``<!-- runnable -->`` is
executed as written, in a fresh directory that holds the checkout's configs/ and studies/,
with the checkout's ``ablate``, ``python`` and ``torchrun`` first on the PATH. The blocks
train on scikit-learn's 8x8 digits, so a guide that goes stale fails here in seconds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LIMIT, ROOT

RUNNABLE = re.compile(r"^<!-- runnable -->\n```bash\n(.*?)^```", re.S | re.M)
GUIDES = sorted(p for p in (ROOT / "docs").glob("*.md") if RUNNABLE.search(p.read_text()))


def run_block(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k != "ABLATE_DB"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT))
    return subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=LIMIT)


def test_the_guides_that_teach_commands_have_runnable_blocks() -> None:
    names = {p.name for p in GUIDES}
    assert {"first-study.md", "writing-a-study.md", "one-run.md"} <= names


def test_a_failing_block_fails(tmp_path: Path) -> None:
    """The runner stops at the first failing command of a block (bash -e)."""
    proc = run_block("ablate run studies/no_such_study.yaml\necho not reached\n", tmp_path)
    assert proc.returncode != 0 and "not reached" not in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("guide", GUIDES, ids=[p.stem for p in GUIDES])
def test_runnable_blocks_of_the_guide_run(guide: Path, tmp_path: Path) -> None:
    for name in ("configs", "studies"):
        (tmp_path / name).symlink_to(ROOT / name)
    for code in RUNNABLE.findall(guide.read_text()):
        proc = run_block(code, tmp_path)
        assert proc.returncode == 0, f"{guide.name}:\n{code}\n{proc.stdout[-2000:]}" \
                                     f"{proc.stderr[-3000:]}"
        assert "error:" not in proc.stderr, proc.stderr[-3000:]
    assert (tmp_path / "data" / "digits" / "dataset.json").is_file()
    assert any((tmp_path / "runs").rglob("result.json")), "no block trained a run"
