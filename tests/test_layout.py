"""The layout of ``ablate/`` and ``zoo/``: no module imports one that imports it back, the
subpackages of ablate depend on each other in one direction (study -> launch/store ->
report -> cli), and zoo imports nothing of ablate.

Read from the source with :mod:`ast` (every import, lazy ones inside functions too; those
under ``if TYPE_CHECKING:`` are annotations only and left out), not by importing it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ablate"
ZOO = ROOT.parent / "zoo"


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip |= {id(n) for n in ast.walk(child)}
    return skip


def import_graph(root: Path = ROOT, keep_outside: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of package ``root`` it imports (``from X import name`` counts
    as X, or as X.name where that is a module); with ``keep_outside``, every module it
    imports."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_blocks(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([base] if base else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    deps.add(sub if sub in files else base)
        graph[name] = {d for d in deps if (keep_outside or d in files) and d != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_graph_sees_imports() -> None:
    graph = import_graph()
    assert "ablate.store.db" in graph["ablate.launch.orchestrator"]
    assert "ablate.study.spec" in graph["ablate.launch.orchestrator"]


def test_cycle_finder() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_cycle() -> None:
    assert _cycle(import_graph()) is None


def test_no_module_cycle_in_zoo() -> None:
    """The trainer's package too: the config's types and parsing (zoo.config) lie below
    the registries, its checks against them (zoo.validate) above."""
    graph = import_graph(ZOO)
    assert "zoo.tricks.registry" in graph["zoo.validate"] or "zoo.tricks" in graph["zoo.validate"]
    assert _cycle(graph) is None


def test_zoo_knows_nothing_of_ablate() -> None:
    """zoo trains one run from one config; studies and the database are ablate's."""
    users = {m: sorted(d for d in deps if d.split(".")[0] == "ablate")
             for m, deps in import_graph(ZOO, keep_outside=True).items()}
    assert {m: d for m, d in users.items() if d} == {}


def test_subpackages_depend_one_way() -> None:
    """The subpackages as nodes: ``ablate.report`` may read the store, never the other
    way round; nothing but the CLI imports the CLI."""
    packages: dict[str, set[str]] = {}
    for module, deps in import_graph().items():
        top = ".".join(module.split(".")[:2])
        packages.setdefault(top, set()).update(".".join(d.split(".")[:2]) for d in deps)
    for top in packages:
        packages[top].discard(top)
    assert _cycle(packages) is None, packages
    users_of_cli = {p for p, deps in packages.items() if "ablate.cli" in deps}
    assert users_of_cli <= {"ablate", "ablate.__main__"}


@pytest.mark.parametrize("module", ["ablate.errors"])
def test_ablate_errors_are_not_the_trainers(module: str) -> None:
    from ablate.errors import AblateError
    from zoo.errors import ZooError

    assert not issubclass(AblateError, ZooError)


#: The longest a function of zoo/ or ablate/ may be, its signature and docstring included.
MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_sixty_lines() -> None:
    """Small explicit functions (the house rule): a longer one is split, not excused."""
    long = []
    for root in (ROOT, ZOO):
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(root.parent)}:{node.lineno} "
                                    f"{node.name} ({lines} lines)")
    assert long == []
