"""The researcher's own code: ``imports:`` of a study or run config, imported before
anything is checked, and copied into each run directory.

An entry is a path (a ``.py`` file or a package directory, relative to the file that
names it) or a module name (an installed lab package). A path's module name is found as
Python finds a script's: its stem, prefixed by the packages (directories with
``__init__.py``) above it; the directory above the outermost one goes on ``sys.path``.
Importing it runs its ``register_trick`` / ``register_model`` / ``register_data_format``
calls, the same calls the zoo's own modules make.

A plugin that fails to import is a one-line :class:`PluginError` naming the file and the
line. The same entry imported again in one process is imported anew only when one of its
files changed (its registrations then replace the old ones).

:func:`snapshot` copies a plugin's files (the module and the modules of the plugin it
imports) into a run directory's ``code/``; the trainer imports them from there, on every
rank and node, so the code a run records is the code it ran.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ConfigError
from zoo.fingerprint import PLUGIN_ROOTS, local_modules

#: The directory of a run directory that holds its plugins' code.
CODE_DIR = "code"


class PluginError(ConfigError):
    """A plugin that cannot be found or imported; the message names file and line."""


@dataclass(frozen=True)
class Plugin:
    """One entry of ``imports:``, resolved."""

    entry: str
    module: str
    #: The ``sys.path`` entry it is imported from.
    root: Path
    #: Its module's file.
    path: Path
    #: The directory whose modules are the plugin's own (snapshot, fingerprint).
    within: Path

    def files(self) -> list[tuple[str, Path]]:
        """(module, file) of the plugin's module and the plugin modules it imports, and
        the ``__init__.py`` of the packages above each."""
        found = dict(local_modules(self.module, self.path, self.root, self.within))
        for name in list(found):
            parts = name.split(".")
            for i in range(1, len(parts)):
                init = self.root.joinpath(*parts[:i], "__init__.py")
                if init.is_file():
                    found.setdefault(".".join(parts[:i]), init)
        return sorted(found.items())


def _from_path(entry: str, path: Path) -> Plugin:
    path = path.resolve()
    if path.name == "__init__.py":
        path = path.parent
    if path.is_dir():
        if not (path / "__init__.py").is_file():
            raise PluginError(f"'{entry}' is a directory without __init__.py; name a .py "
                              f"file or a package")
        parts, top = [path.name], path.parent
        file = path / "__init__.py"
    elif path.suffix == ".py":
        parts, top, file = [path.stem], path.parent, path
    else:
        raise PluginError(f"'{entry}' is not a .py file or a package directory")
    while (top / "__init__.py").is_file():  # inside a package: import it as part of it
        parts.insert(0, top.name)
        top = top.parent
    module = ".".join(parts)
    within = top / parts[0] if len(parts) > 1 or file.name == "__init__.py" else top
    return Plugin(entry, module, top, file, within)


def _from_module(entry: str) -> Plugin:
    try:
        spec = importlib.util.find_spec(entry)
    except (ImportError, ValueError) as exc:
        raise PluginError(f"'{entry}': {exc}") from None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise PluginError(f"'{entry}': no such file or module (a path is relative to the "
                          f"file that names it; a module must be importable)")
    file = Path(spec.origin).resolve()
    depth = entry.count(".") + (1 if file.name == "__init__.py" else 0)
    root = file.parents[depth]
    top = entry.split(".")[0]
    within = root / top if (root / top).is_dir() else file.parent
    return Plugin(entry, entry, root, file, within)


def resolve(entry: str, base_dir: Path) -> Plugin:
    """Where ``entry`` is and under which module name it imports."""
    path = Path(entry).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if entry.endswith(".py") or "/" in entry or path.exists():
        if not path.exists():
            raise PluginError(f"'{entry}': no such file ({path}); a path is relative to "
                              f"the file that names it")
        return _from_path(entry, path)
    return _from_module(entry)


def _where(exc: BaseException, plugin: Plugin) -> str:
    """``file:line`` of the failure: the syntax error's, or the innermost frame in the
    plugin's own files (else the plugin's module)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if Path(f.filename).resolve().is_relative_to(plugin.within)
           or Path(f.filename).resolve() == plugin.path]
    frame = own[-1] if own else None
    return f"{frame.filename}:{frame.lineno}" if frame else str(plugin.path)


#: Plugin module -> the stamps of its files when it was imported.
_LOADED: dict[str, tuple[tuple[str, int, int], ...]] = {}
#: Every module name a plugin was imported under: another plugin of the same name may
#: replace it (two studies' own sam.py in one process); a module no plugin made may not.
_OWNED: set[str] = set()


def _stamp(plugin: Plugin) -> tuple[tuple[str, int, int], ...]:
    out = []
    for _, file in plugin.files():
        st = file.stat()
        out.append((str(file), st.st_mtime_ns, st.st_size))
    return tuple(out)


def import_plugin(plugin: Plugin) -> None:
    """Import ``plugin`` (again, when one of its files changed since)."""
    loaded = sys.modules.get(plugin.module)
    file = getattr(loaded, "__file__", None)
    if loaded is not None and plugin.module not in _OWNED and (
            file is None or Path(file).resolve() != plugin.path):
        raise PluginError(f"{plugin.path}: its module name '{plugin.module}' is taken by "
                          f"{file or 'a built-in module'}; rename the file")
    top = plugin.module.split(".")[0]
    PLUGIN_ROOTS[top] = (plugin.root, plugin.within)
    if str(plugin.root) not in sys.path:
        sys.path.insert(0, str(plugin.root))
    try:
        stamp = _stamp(plugin)
        if plugin.module in sys.modules and _LOADED.get(plugin.module) == stamp:
            return
        for name, _ in plugin.files():  # stale versions of its modules
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        _OWNED.add(plugin.module)
        importlib.import_module(plugin.module)
        _LOADED[plugin.module] = _stamp(plugin)
    except SyntaxError as exc:  # also from plugin.files(), which parses them
        raise PluginError(f"{_where(exc, plugin)}: SyntaxError: {exc.msg}") from None
    except Exception as exc:  # anything the plugin's code raises at import
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PluginError(f"{_where(exc, plugin)}: {type(exc).__name__}: {message}") from None


def import_plugins(entries: Sequence[str], base_dir: Path, key: str = "imports"
                   ) -> tuple[Plugin, ...]:
    """Resolve and import every entry; errors name ``key[i]`` and the file and line."""
    if isinstance(entries, str) or not all(isinstance(e, str) and e for e in entries):
        raise PluginError(f"{key}: expected a list of paths or module names, got "
                          f"{entries!r}")
    plugins = []
    for i, entry in enumerate(entries):
        try:
            plugin = resolve(entry, base_dir)
            import_plugin(plugin)
        except PluginError as exc:
            raise PluginError(f"{key}[{i}]: {exc}") from None
        plugins.append(plugin)
    return tuple(plugins)


def snapshot(plugins: Sequence[Plugin], run_dir: Path) -> tuple[str, ...]:
    """Copy each plugin's files into ``run_dir/code`` once: a run directory that has a
    snapshot keeps it as it is (a resumed run imports the code it started with); the
    entries the trainer imports, those of the plugins the snapshot holds."""
    from zoo.contract import atomic_write

    code = run_dir / CODE_DIR
    if not code.exists():
        staging = run_dir / f".{CODE_DIR}.new"
        shutil.rmtree(staging, ignore_errors=True)
        for plugin in plugins:
            for _, file in plugin.files():
                dest = staging / file.relative_to(plugin.root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(dest, file.read_bytes())
        if plugins:
            os.replace(staging, code)  # the whole snapshot appears at once
    entries = []
    for plugin in plugins:
        entry = code / plugin.path.relative_to(plugin.root)
        if entry.exists():
            entries.append(str(entry.parent if entry.name == "__init__.py" else entry))
    return tuple(entries)
