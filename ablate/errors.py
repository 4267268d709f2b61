"""Errors of the orchestrator: each one line for a person, naming the file and the fix."""

from __future__ import annotations

from zoo.errors import ZooError


class AblateError(ZooError):
    """A problem the user can fix (bad study file, unknown study or run, bad option)."""


class StudyError(AblateError):
    """A study file that cannot be used."""
