"""What code a run trains with: a fingerprint of each component a run names.

A run's identity is its config plus the code of the components it names
(:func:`run_code`): each trick of ``tricks``, the model it builds (after the
model-selecting tricks) and its data format. A component's code is the module that
defines it and the modules it imports from its own place (for the zoo's own components:
the same package, ``zoo/tricks/`` or ``zoo/models/``, less the extension API itself; for
a plugin: the plugin's directory or package), found by reading their imports, not by
running them.

A module's fingerprint is taken from what runs: the SHA-256 of its abstract syntax tree
without docstrings and without positions (:func:`source_fingerprint`). Comments,
blank lines, formatting and docstrings never change it; an edited expression, default or
hook always does. ``timm/<name>`` models are fingerprinted by timm's version.

The training loop itself (``zoo.train``, the engine, the input pipeline) is not part of
a run's identity: every run of a study shares it, and a refactor of it would otherwise
retrain every finished run. Its fingerprint (:func:`core_fingerprint`) is recorded in
each run's ``config.json``, and ``ablate report`` says when the runs it compares were
trained by different versions of it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoo.config import RunConfig

ZOO = Path(__file__).resolve().parent
#: The extension API and the registries: the frame every component is written against,
#: not part of any one component's code.
API_FILES = frozenset(ZOO / f for f in (
    "tricks/__init__.py", "tricks/base.py", "tricks/registry.py", "models/__init__.py",
    "models/_registry.py", "models/catalog.py", "data/__init__.py", "data/formats.py",
))
#: Roots of the plugins imported by :mod:`zoo.plugins`: top-level module -> the directory
#: whose modules count as the plugin's own (its ``within``).
PLUGIN_ROOTS: dict[str, tuple[Path, Path]] = {}


@dataclass(frozen=True)
class Component:
    """The code of one component of a run: its fingerprint and the files it reads."""

    name: str  # e.g. "trick:mixup", "model:resnet20", "data:imagefolder"
    fingerprint: str
    #: Module name -> file, the defining module first.
    files: tuple[tuple[str, str], ...] = ()


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(text: str, filename: str = "<source>") -> str:
    """SHA-256 of the source's syntax tree without docstrings and positions."""
    tree = _strip_docstrings(ast.parse(text, filename))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


@lru_cache(maxsize=4096)
def _parsed(path: str, mtime_ns: int, size: int) -> tuple[str, tuple[tuple[int, str], ...]]:
    """(fingerprint, imports as (level, dotted name)) of one file version."""
    text = Path(path).read_text()
    tree = ast.parse(text, path)
    imports: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            imports.append((node.level, base))
            imports += [(node.level, f"{base}.{a.name}" if base else a.name)
                        for a in node.names if a.name != "*"]
    return source_fingerprint(text, path), tuple(imports)


def _file_info(path: Path) -> tuple[str, tuple[tuple[int, str], ...]]:
    st = path.stat()
    return _parsed(str(path), st.st_mtime_ns, st.st_size)


def module_file(root: Path, dotted: str) -> Path | None:
    """The file of module ``dotted`` under sys.path entry ``root``, if it lies there."""
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _absolute(module: str, is_package: bool, level: int, name: str) -> str:
    if level == 0:
        return name
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join([*parts, name] if name else parts)


def local_modules(module: str, path: Path, root: Path, within: Path) -> list[tuple[str, Path]]:
    """``module`` (file ``path``, importable from ``root``) and the modules it imports,
    transitively, whose files lie under ``within`` (the extension API excluded)."""
    seen: dict[str, Path] = {module: path}
    todo = [(module, path)]
    while todo:
        name, file = todo.pop()
        for level, target in _file_info(file)[1]:
            dotted = _absolute(name, file.name == "__init__.py", level, target)
            found = module_file(root, dotted) if dotted else None
            if found is None or dotted in seen or found in API_FILES:
                continue
            if not found.resolve().is_relative_to(within):
                continue
            seen[dotted] = found
            todo.append((dotted, found))
    return [(module, path), *sorted((n, p) for n, p in seen.items() if n != module)]


def fingerprint_files(files: Iterable[tuple[str, Path]]) -> str:
    """One fingerprint of several modules (by name and syntax tree)."""
    digest = hashlib.sha256()
    for name, file in sorted(files):
        digest.update(f"{name}\0{_file_info(file)[0]}\n".encode())
    return digest.hexdigest()[:16]


def _placement(module: str) -> tuple[Path, Path, Path]:
    """(file, sys.path root, the directory of the component's own modules) of a module."""
    loaded = sys.modules.get(module)
    file = getattr(loaded, "__file__", None)
    if file is None:
        spec = importlib.util.find_spec(module)
        file = spec.origin if spec is not None else None
    if file is None:
        raise ValueError(f"module '{module}' has no source file to fingerprint")
    path = Path(file).resolve()
    top = module.split(".")[0]
    if top == "zoo":
        return path, ZOO.parent, path.parent
    if top in PLUGIN_ROOTS:
        root, within = PLUGIN_ROOTS[top]
        return path, root, within
    depth = module.count(".") + (1 if path.name == "__init__.py" else 0)
    root = path.parents[depth]
    return path, root, path.parent


#: (component, module, its file) -> (the stamps of its files, the component): planning a
#: study fingerprints the same few components for every run; a hit stats each file.
_COMPONENTS: dict[tuple[str, str, str | None],
                  tuple[tuple[tuple[str, int, int], ...], Component]] = {}


def _stamps(files: Iterable[str]) -> tuple[tuple[str, int, int], ...] | None:
    """(file, mtime, size) of each file; None when one is gone."""
    out = []
    for file in files:
        try:
            st = Path(file).stat()
        except OSError:
            return None
        out.append((file, st.st_mtime_ns, st.st_size))
    return tuple(out)


def module_component(name: str, module: str) -> Component:
    """Component ``name`` whose code is ``module`` and its local imports."""
    # Keyed by the module's file too: two plugins of one module name in one process.
    key = (name, module, getattr(sys.modules.get(module), "__file__", None))
    hit = _COMPONENTS.get(key)
    if hit is not None and _stamps(f for f, _, _ in hit[0]) == hit[0]:
        return hit[1]
    path, root, within = _placement(module)
    files = local_modules(module, path, root, within)
    component = Component(name, fingerprint_files(files),
                          tuple((n, str(p)) for n, p in files))
    stamps = _stamps(str(p) for _, p in files)
    if stamps is not None:
        _COMPONENTS[key] = (stamps, component)
    return component


@lru_cache(maxsize=1024)
def _built_model(model: str, tricks_json: str) -> str:
    """The model a config builds, after its model-selecting tricks."""
    from zoo.tricks import TrickSet

    return TrickSet(json.loads(tricks_json)).model_name(model)


def _timm_component(name: str) -> Component:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("timm")
    except PackageNotFoundError:
        ver = "absent"
    return Component(name, hashlib.sha256(f"timm=={ver}".encode()).hexdigest()[:16])


def run_components(cfg: RunConfig) -> list[Component]:
    """The components ``cfg`` names, each with its code: its tricks, the model it builds
    and its data format."""
    from zoo.data.formats import get_data_format
    from zoo.models import get_model_info
    from zoo.tricks import get_trick

    out = [module_component(f"trick:{t}", get_trick(t).__module__) for t in sorted(cfg.tricks)]
    model = _built_model(cfg.model.name, json.dumps(cfg.tricks, sort_keys=True))
    if model.startswith("timm/"):
        out.append(_timm_component(f"model:{model}"))
    else:
        builder = get_model_info(model).builder.partition(":")[0]
        out.append(module_component(f"model:{model}", builder))
    out.append(module_component(f"data:{cfg.data.format}",
                                get_data_format(cfg.data.format).module))
    return out


def run_code(cfg: RunConfig) -> dict[str, str]:
    """Component name -> fingerprint: the code part of a run's identity."""
    return {c.name: c.fingerprint for c in run_components(cfg)}


def describe(components: Iterable[Component]) -> dict[str, dict[str, object]]:
    """The components as ``config.json`` records them."""
    return {c.name: {"fingerprint": c.fingerprint, "modules": dict(c.files)}
            for c in components}


def core_fingerprint() -> str:
    """The training loop's code: ``zoo.train`` and the zoo modules it imports, less the
    tricks and models (components of their own)."""
    files = [(n, p) for n, p in local_modules("zoo.train", ZOO / "train.py", ZOO.parent, ZOO)
             if not p.resolve().is_relative_to(ZOO / "tricks")
             and not p.resolve().is_relative_to(ZOO / "models")]
    return fingerprint_files(files)


def changed(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The components whose code differs between two ``run_code`` records."""
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
