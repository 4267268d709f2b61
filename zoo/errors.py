"""Domain errors of the zoo. Each carries a one-line message meant for a person."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZooError(Exception):
    """Base class: a problem the user can fix, reported as one line."""


class ConfigError(ZooError):
    """A run config that cannot be used: unknown key, wrong type, missing path."""


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
