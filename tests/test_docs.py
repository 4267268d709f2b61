"""The documentation: the reference pages name every CLI option, config key, trick, model
and database column (compared with the registries, not with the generator's own walk), the
guides quote only the demo numbers the generated report holds, and the site builds in
strict mode (what ``make docs`` and CI run)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType

import pytest
import typer

from ablate.cli import app
from tests.conftest import LIMIT, ROOT

DOCS = ROOT / "docs"


def generator() -> ModuleType:
    """docs/_gen/reference.py, the MkDocs hook that writes the reference pages."""
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "_gen" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections(page: str) -> dict[str, str]:
    """``## `NAME` `` heading -> the text up to the next such heading."""
    parts = re.split(r"^## `([^`]+)`$", page, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def leaf_keys(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += leaf_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def table_rows(page: str) -> dict[str, list[str]]:
    """First cell (backticks and spaces stripped) -> the row's other cells."""
    rows = {}
    for line in page.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_cli_reference_has_every_command_and_option() -> None:
    page = sections(generator().cli_page())

    def walk(name: str, cmd: typing.Any) -> None:
        assert name in page, f"no section for '{name}'"
        for param in cmd.params:
            if getattr(param, "hidden", False):
                continue
            names = [*param.opts, *param.secondary_opts]
            if param.param_type_name == "argument":
                names = [param.name]
            for opt in names:
                word = rf"(?<![\w-]){re.escape(opt)}(?![\w-])"
                assert re.search(rf"`[^`]*{word}[^`]*`", page[name]), (name, opt)
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            walk(f"{name} {sub_name}", sub)

    root = typer.main.get_command(app)
    assert {"run", "report", "data", "db", "export"} <= set(root.commands)
    walk("ablate", root)


def test_config_reference_has_every_key_with_type_default_and_meaning() -> None:
    from ablate.study.spec import Launch
    from zoo.config import RunConfig

    rows = table_rows(generator().config_page())
    keys = leaf_keys(RunConfig)
    assert {"model.name", "data.decode", "optim.lr", "schedule.min_lr", "epochs"} <= set(keys)
    for key in keys:
        assert key in rows, key
        kind, default, meaning = rows[key]
        assert kind and default, key
        assert len(meaning) > 10, f"run-config key '{key}' has no '#:' comment in zoo/config.py"
    assert rows["optim.lr"][1] == f"`{RunConfig().optim.lr}`"
    assert rows["data.decode"][0] == "`cpu`, `gpu` or `auto`"
    for key in leaf_keys(Launch, "launch."):
        assert key in rows, key


def test_trick_catalog_has_every_trick_with_its_parameters_and_hooks() -> None:
    from zoo.tricks import get_trick, list_tricks

    page = sections(generator().tricks_page())
    assert len(list_tricks()) >= 20
    assert set(page) == set(list_tricks())
    for name in list_tricks():
        cls = get_trick(name)
        params = [f.name for f in dataclasses.fields(cls.Params)]
        params += ["until_epoch"] if cls.stoppable else []
        for param in params:
            assert f"| `{param}` |" in page[name], (name, param)
        assert cls.paper.split(",")[0] in page[name], name
    # Hooks are read from the class: label smoothing acts through the loss's arguments.
    assert "`loss_kwargs`" in page["label_smoothing"]
    assert "`batch`" in page["mixup"] and "`loss_kwargs`" not in page["mixup"]


def test_model_catalog_has_every_model_with_its_reference_counts() -> None:
    from zoo.models import get_model_info, list_models

    rows = table_rows(generator().models_page())
    assert len(list_models()) >= 19
    for name in list_models():
        info = get_model_info(name)
        assert name in rows, name
        if info.ref_params_m is not None:
            assert rows[name][0] == f"{info.ref_params_m:g}", name
            assert rows[name][1] == f"{info.ref_macs_g:g}", name


def test_schema_reference_has_every_table_and_column() -> None:
    from ablate.store.schema import Base, Status

    page = sections(generator().schema_page())
    for table in Base.metadata.sorted_tables:
        rows = table_rows(page[table.name])
        assert [c.name for c in table.columns] == [k for k in rows if k != "column"]
    assert all(f"`{s.value}`" in generator().schema_page() for s in Status)


def test_writing_a_study_names_every_study_key() -> None:
    from ablate.study.spec import PLANNED_KEYS, STUDY_KEYS, VARIANT_KEYS

    text = (DOCS / "writing-a-study.md").read_text()
    rows = table_rows(text)
    for key in STUDY_KEYS:
        assert key in rows, f"study key '{key}' missing from the table of writing-a-study.md"
    for key in (*VARIANT_KEYS, *PLANNED_KEYS):
        assert f"`{key}`" in text or f"{key}:" in text or f"{key}," in text, key


def test_report_guide_quotes_only_numbers_of_the_generated_report() -> None:
    """Reading a report walks through the demo's numbers; each one it quotes is in the
    README's generated block, so a rerun of the demo that changes them fails here."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- ablate:report fashion_mnist_tricks -->")[1]
    block = block.split("<!-- /ablate:report -->")[0]
    text = (DOCS / "reading-a-report.md").read_text()
    walk = text.split("## Every column")[1].split("## What a report decides")[0]
    quoted = re.findall(r"[+-]?\d+\.\d+(?:/\d+\.\d+)?|\b\d{3,}\b", walk)
    quoted += re.findall(r"`(\w+ \(unadjusted: \w+\))`", walk)
    assert len(quoted) >= 10
    for number in quoted:
        assert number in block, f"reading-a-report.md quotes {number}, not in the report"


def test_readme_is_short_and_links_to_pages_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert not re.search(r"\bissue \d+|#\d+\b", text)
    links = re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]+)", text)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), link


@pytest.mark.slow
def test_site_builds_in_strict_mode(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=LIMIT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr
    from zoo.tricks import list_tricks

    tricks = (site / "reference" / "tricks.html").read_text()
    assert all(f"<code>{name}</code>" in tricks for name in list_tricks())
    api = (site / "reference" / "api.html").read_text()
    assert "ablate.api.open" in api and "Results" in api
    first = (site / "first-study.html").read_text()
    assert 'src="img/fashion_mnist_tricks_delta.png"' in first  # the README's block, included
    assert (site / "img" / "fashion_mnist_tricks_delta.png").is_file()


def help_of(args: list[str]) -> str:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "80"},
                                terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_help_fits_80_columns_and_ends_with_its_docs_page() -> None:
    commands = [[]] + [name.split()[1:] for name, _ in generator().cli_commands()[1:]]
    assert ["data", "prepare"] in commands and ["run"] in commands
    for args in commands:
        out = help_of(args)
        assert max(len(line) for line in out.splitlines()) <= 80, args
        last = out.strip().splitlines()[-1].strip()
        page = re.fullmatch(r"Docs: docs/([\w./-]+\.md)\b.*", last)
        assert page, (args, last)
        assert (DOCS / page.group(1)).is_file(), (args, page.group(1))


def test_command_summaries_are_whole_sentences_on_one_line() -> None:
    """The command lists show each command's first docstring line whole, not a summary
    broken mid-sentence ("(224 px, 1000" / "classes)")."""
    for group in ([], ["data"], ["db"], ["export"]):
        listing = help_of(group).split("Commands:\n", 1)[1].split("\n\n", 1)[0]
        rows = listing.splitlines()
        assert rows and all(re.fullmatch(r"  [\w-]+ +\S.*\.", row) for row in rows), rows
