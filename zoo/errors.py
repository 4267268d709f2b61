"""Domain errors of the zoo. Each carries a one-line message meant for a person."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ZooError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    #: Whether the same run, started again as it is, could end otherwise (a full disk
    #: freed meanwhile); False where config, data or checkpoint repeat it every time, so
    #: that an orchestrator says it once instead of retrying it.
    retryable: bool = True


class ConfigError(ZooError):
    """A run config that cannot be used: unknown key, wrong type, missing path."""

    retryable = False


class CheckpointError(ZooError):
    """A run directory whose checkpoints cannot be read: every start of the run meets it."""

    retryable = False


class UnknownNameError(ConfigError, KeyError):
    """A model, trick or option name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The registered names closest to `name`, best first (difflib ratio >= 0.5)."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)


def did_you_mean(name: str, choices: Iterable[str], prefix: str = "") -> str:
    """'; did you mean 'PREFIXx'?' or '' when nothing is close."""
    near = closest(name, choices)
    if not near:
        return ""
    return "; did you mean " + " or ".join(f"'{prefix}{c}'" for c in near) + "?"


def defined_at(obj: Any) -> str:
    """``file:line`` of a class or function (else ``module.name``): an error that names two
    definitions of one registered name (a built-in and a plugin's) says where each is."""
    import inspect

    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (OSError, TypeError):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
