"""Errors of the orchestrator: each one line for a person, naming the file and the fix.

They are not the trainer's errors (:class:`zoo.errors.ZooError`): ablate plans, launches and
reports, zoo trains. A command turns either kind into one line at the edge
(:data:`USER_ERRORS`), since a study's configs are validated by zoo's config code.
"""

from __future__ import annotations

from zoo.errors import ZooError


class AblateError(Exception):
    """A problem the user can fix (bad study file, unknown study or run, bad option)."""


class StudyError(AblateError):
    """A study file that cannot be used."""


#: What a command reports as one line: the orchestrator's errors and the trainer's
#: (a study's base config is checked by :mod:`zoo.config`).
USER_ERRORS: tuple[type[Exception], ...] = (AblateError, ZooError)
