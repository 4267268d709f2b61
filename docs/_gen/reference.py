"""The reference pages, generated from the code at every build (a MkDocs hook).

Nothing in ``docs/reference/`` is typed by hand: the CLI comes from the Typer app (every
command, argument and option, as ``--help`` prints them), the run-config keys from the
config dataclasses of ``zoo/config.py`` and their ``#:`` field comments, the trick and
model catalogs from the registries, the database schema from the SQLAlchemy tables. The
Python API page is a mkdocstrings directive (``docs/reference/api.md``).

``tests/test_docs.py`` builds these pages and compares them with the registries.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

#: The checkout these pages describe: its code, not whichever copy a virtual env installed.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GENERATED = "<!-- Generated at build time by docs/_gen/reference.py; do not edit. -->\n\n"


# --------------------------------------------------------------------------- helpers


def field_docs(cls: type) -> dict[str, str]:
    """Each annotated attribute of ``cls`` -> the ``#:`` comment lines just above it."""
    lines, _ = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    docs: dict[str, str] = {}
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            comment: list[str] = []
            i = item.lineno - 2  # the line above, 0-based
            while i >= 0 and lines[i].strip().startswith("#:"):
                comment.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            docs[item.target.id] = rst_to_md(" ".join(comment))
    return docs


def rst_to_md(text: str) -> str:
    """Docstring markup to Markdown: ``code`` and :role:`~a.b.name` become `code`."""
    text = re.sub(r":\w+:`~?([\w.]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return text.replace("``", "`")


def first_paragraph(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "").split("\n\n")[0]
    return rst_to_md(" ".join(text.split()))


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def plain(text: str) -> str:
    """Help text shown as written: no HTML tags, no emphasis from a glob's ``*``."""
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")


def type_name(tp: Any) -> str:
    """A config field's type as a reader says it: `cpu`, `gpu` or `auto`; integer or null."""
    origin = get_origin(tp)
    if origin is Literal:
        names = [f"`{a}`" for a in get_args(tp)]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    if origin in (typing.Union, types.UnionType):
        arms = ["null" if a is type(None) else type_name(a) for a in get_args(tp)]
        return " or ".join(arms)
    if origin is tuple:
        args = get_args(tp)
        count = "" if args[-1] is Ellipsis else f"{len(args)} "
        return f"list of {count}{type_name(args[0])}s"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    plain = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return plain.get(tp, getattr(tp, "__name__", str(tp)))


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def show(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "required"
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)  # type: ignore[arg-type]
    return f"`{json.dumps(value, default=list)}`"


# --------------------------------------------------------------------------- run config


def config_rows(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every leaf key of dataclass ``cls``, in order."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    rows = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = prefix + f.name
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            rows.extend(config_rows(tp, key + "."))
            continue
        rows.append((key, type_name(tp), show(default_of(f)), docs.get(f.name, "")))
    return rows


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def config_page() -> str:
    from ablate.study.spec import Launch
    from zoo.config import RunConfig

    sections = [f.name for f in dataclasses.fields(RunConfig)
                if dataclasses.is_dataclass(typing.get_type_hints(RunConfig)[f.name])]
    parts = [GENERATED, "# Run config keys\n\n", first_paragraph(sys.modules["zoo.config"].__doc__),
             "\n\n",
             "A study's `base:` and every variant's `set:` take these keys; "
             "`python -m zoo.train --config FILE` reads them alone. Sections: ",
             ", ".join(f"`{s}` ({first_paragraph(typing.get_type_hints(RunConfig)[s].__doc__)})"
                       for s in sections), ".\n\n",
             table(config_rows(RunConfig), ("key", "type", "default", "meaning")),
             "\n## The study's `launch:` keys\n\n", first_paragraph(Launch.__doc__), "\n\n",
             inspect.cleandoc(Launch.__doc__ or "").split("\n\n", 1)[1].replace("``", "`"),
             "\n\n", table(config_rows(Launch, "launch."), ("key", "type", "default", "meaning"))]
    return "".join(parts)


# --------------------------------------------------------------------------- CLI


def cli_commands() -> list[tuple[str, Any]]:
    """(full name, command) of every command of the ``ablate`` CLI, each group first."""
    import typer

    from ablate.cli import app

    out: list[tuple[str, Any]] = []

    def walk(name: str, cmd: Any) -> None:
        out.append((name, cmd))
        for sub in getattr(cmd, "commands", {}).values():
            walk(f"{name} {sub.name}", sub)

    walk("ablate", typer.main.get_command(app))
    return out


def cli_params(name: str, cmd: Any) -> list[tuple[str, str]]:
    """(argument or option, its help) of ``cmd``, exactly as ``--help`` prints them."""
    ctx = click_context(cmd, name)
    records = [p.get_help_record(ctx) for p in cmd.params]
    return [(opts, " ".join(help_.split())) for opts, help_ in filter(None, records)]


def click_context(cmd: Any, name: str) -> Any:
    """A context for ``cmd``, from the click that Typer uses (its own copy since 0.20)."""
    try:
        from typer._click.core import Context
    except ImportError:
        from click import Context
    return Context(cmd, info_name=name)


def cli_page() -> str:
    parts = [GENERATED, "# Command line\n\n",
             "Every command, argument and option of `ablate`, as `ablate COMMAND --help` "
             "prints them.\n"]
    for name, cmd in cli_commands():
        usage = " ".join([name, *cmd.collect_usage_pieces(click_context(cmd, name))])
        parts += [f"\n## `{name}`\n\n", plain(inspect.cleandoc(cmd.help or "")), "\n\n",
                  f"```\n{usage}\n```\n\n"]
        page = re.search(r"Docs: docs/(\S+\.md)", cmd.epilog or "")
        if page:  # the guide that explains the command, as its --help ends
            parts.append(f"Explained in [{page.group(1)}](../{page.group(1)}).\n\n")
        rows = [(f"`{opts}`", plain(help_)) for opts, help_ in cli_params(name, cmd)]
        if rows:
            parts.append(table(rows, ("argument / option", "meaning")))
    return "".join(parts)


# --------------------------------------------------------------------------- tricks


def trick_hooks(cls: type) -> list[str]:
    """The hooks of :class:`zoo.tricks.base.Trick` that ``cls`` overrides."""
    from zoo.tricks.base import Trick

    hooks = [n for n, v in vars(Trick).items() if not n.startswith("_")
             and isinstance(v, (types.FunctionType, classmethod)) and n not in ("active", "check")]
    own = cls.__mro__[: cls.__mro__.index(Trick)]
    return [h for h in hooks if any(h in vars(k) for k in own)]


def tricks_page() -> str:
    from ablate.cli.tricks import describe_tricks
    from zoo.tricks import get_trick

    parts = [GENERATED, "# Trick catalog\n\n",
             "Every trick a study can switch on by name (`tricks: {NAME: {PARAM: VALUE}}`), "
             "in the order the trainer runs them at a shared hook; `ablate tricks` prints "
             "the same list. The hooks are the points of the loop listed in "
             "`zoo/tricks/base.py`.\n"]
    for row in describe_tricks():
        cls = get_trick(row["name"])
        params = [(f"`{p['name']}`", p["type"], f"`{json.dumps(p['default'])}`")
                  for p in row["params"]]
        if cls.stoppable:
            params.append(("`until_epoch`", "int | None", "`null`"))
        facts = [("touches", ", ".join(row["touches"]) or "—"),
                 ("hooks", ", ".join(f"`{h}`" for h in trick_hooks(cls)) or "—"),
                 ("order", str(row["order"])),
                 ("not with", ", ".join(row["conflicts"]) or "—"),
                 ("paper", row["paper"] or "—")]
        doc = cls.__doc__ or sys.modules[cls.__module__].__doc__
        parts += [f"\n## `{row['name']}`\n\n", first_paragraph(doc), "\n\n",
                  table(params, ("parameter", "type", "default")) if params
                  else "No parameters.\n", "\n",
                  "".join(f"- **{k}**: {v}\n" for k, v in facts)]
    return "".join(parts)


# --------------------------------------------------------------------------- models


def models_page() -> str:
    from zoo.models import get_model_info, list_models

    def num(value: float | None) -> str:
        return "—" if value is None else f"{value:g}"

    rows = []
    for name in list_models():
        info = get_model_info(name)
        args = ", ".join(f"{k}={v}" for k, v in info.arch_args.items())
        rows.append((f"`{name}`", num(info.ref_params_m), num(info.ref_macs_g),
                     ", ".join(info.options) + (f"; {args}" if args else ""),
                     str(info.min_input), "yes" if info.channels_last else "no",
                     info.paper or "—", info.reference or "—"))
    return "".join([
        GENERATED, "# Model catalog\n\n",
        "Every model a config can name (`model: NAME`), from the zoo's catalog "
        "(`zoo/models/catalog.py`). Reference counts are the published ones at 224 px with "
        "1000 classes; `ablate models --check` measures each model now against them. "
        "`model.options` takes the options listed for the model. NHWC on CUDA: the model trains "
        "in channels_last when `model.channels_last` is `null` (on for dense convolutions, "
        "off for grouped and depthwise ones, whose NHWC kernels are slower on some GPUs).\n\n",
        table(rows, ("model", "params (M)", "MACs (G)", "options", "min. input (px)",
                     "NHWC on CUDA", "paper", "reference"))])


# --------------------------------------------------------------------------- schema


def schema_page() -> str:
    from ablate.store import schema

    classes = {c.__tablename__: c for c in vars(schema).values()
               if isinstance(c, type) and issubclass(c, schema.Base) and c is not schema.Base}
    parts = [GENERATED, "# Database schema\n\n", first_paragraph(schema.__doc__), "\n\n",
             f"Schema version **{schema.SCHEMA_VERSION}**. A run's `status` is one of "
             + ", ".join(f"`{s.value}`" for s in schema.Status) + ".\n"]
    for tbl in schema.Base.metadata.sorted_tables:
        cls = classes[tbl.name]
        docs = field_docs(cls)
        rows = []
        for col in tbl.columns:
            keys = ["primary key"] if col.primary_key else []
            keys += [f"→ `{fk.target_fullname}`" for fk in col.foreign_keys]
            rows.append((f"`{col.name}`", str(col.type), "yes" if col.nullable else "no",
                         " ".join(keys), docs.get(col.name, "")))
        extra = [f"unique ({', '.join(c.name for c in con.columns)})"
                 for con in tbl.constraints if con.__class__.__name__ == "UniqueConstraint"]
        extra += [f"index {ix.name} ({', '.join(c.name for c in ix.columns)})"
                  for ix in sorted(tbl.indexes, key=lambda i: i.name or "")]
        parts += [f"\n## `{tbl.name}`\n\n", first_paragraph(cls.__doc__) + "\n\n"
                  if cls.__doc__ else "",
                  table(rows, ("column", "type", "null", "key", "meaning")),
                  ("\n" + "; ".join(extra) + ".\n") if extra else ""]
    return "".join(parts)


#: Page path under docs/ -> the function that writes it.
PAGES = {
    "reference/cli.md": cli_page,
    "reference/config.md": config_page,
    "reference/tricks.md": tricks_page,
    "reference/models.md": models_page,
    "reference/schema.md": schema_page,
}


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated pages to the site's files."""
    from mkdocs.structure.files import File

    for path, make in PAGES.items():
        files.append(File.generated(config, path, content=make()))
    return files



def included(path: str, section: str | None) -> str:
    """A file of the checkout's root (README.md, CHANGELOG.md), or its part between
    ``--8<-- [start:SECTION]`` and ``--8<-- [end:SECTION]``, with its ``docs/...`` links made
    relative to a page in docs/."""
    text = (ROOT / path).read_text()
    if section is not None:
        text = text.split(f"--8<-- [start:{section}] -->\n", 1)[1]
        text = text.split("\n<!-- --8<-- [end:", 1)[0]
    return text.replace("](docs/", "](")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: ``--8<-- "README.md:demo-report"`` includes the demo's generated report
    from the README, ``--8<-- "CHANGELOG.md"`` the changelog: one copy of each, in the
    checkout's root, with links that work from docs/."""
    pattern = r'^--8<-- "([A-Z]+\.md)(?::([\w-]+))?"$'
    return re.sub(pattern, lambda m: included(m.group(1), m.group(2)), markdown, flags=re.M)
