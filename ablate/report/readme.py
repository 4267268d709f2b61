"""README blocks: the tables between ``<!-- ablate:report STUDY -->`` and
``<!-- /ablate:report -->`` in a markdown file, refreshed in place from the database."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ablate.errors import AblateError
from ablate.report.aggregate import build_frame
from ablate.report.render import _records_by_study, _study_block, image_links

if TYPE_CHECKING:
    from ablate.store.db import Store

#: The marker comments around a generated README table.
README_MARKER = re.compile(
    r"(<!-- ablate:report (?P<study>[^\s>]+) -->)(?P<body>.*?)(<!-- /ablate:report -->)",
    re.S,
)
_OPEN_MARKER = re.compile(r"<!-- ablate:report (?P<study>[^\s>]+) -->")
_IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\([^)]*\)\s*$")

# --------------------------------------------------------------------------- README


def readme_studies(text: str) -> list[str]:
    """The studies named by report markers in a README, in order; a marker without its
    closing comment is an error."""
    opened = [m.group("study") for m in _OPEN_MARKER.finditer(text)]
    closed = [m.group("study") for m in README_MARKER.finditer(text)]
    if opened != closed:
        missing = next((s for s in opened if opened.count(s) != closed.count(s)), opened[-1])
        raise AblateError(f"marker '<!-- ablate:report {missing} -->' has no closing "
                          f"'<!-- /ablate:report -->'")
    return list(dict.fromkeys(closed))


def render_readme(text: str, store: Store, plots_dir: str | None = None,
                  studies: Sequence[str] | None = None) -> str:
    """``text`` with the block between each ``<!-- ablate:report STUDY -->`` and
    ``<!-- /ablate:report -->`` replaced by that study's table and notes; everything outside
    the markers is left byte for byte. Image lines inside a block are kept as they are, or,
    with ``plots_dir`` (as the README's reader sees it), replaced by links to the study's
    plots there. With ``studies``, only their markers are refreshed. Idempotent.

    A README holds what the report makes from the database exactly when
    ``render_readme(text, store) == text``.
    """
    names = readme_studies(text)
    if studies:
        names = [n for n in names if n in set(studies)]
    if not names:
        return text
    by_study = _records_by_study(build_frame(store, names))

    def replace(m: re.Match[str]) -> str:
        study = m.group("study")
        if study not in names:
            return m.group(0)
        if plots_dir is not None:
            images = image_links(study, plots_dir)
        else:
            images = [ln.strip() for ln in m.group("body").splitlines()
                      if _IMAGE_LINE.match(ln.strip())]
        if study not in by_study:
            raise AblateError(f"study '{study}' is not in the report")
        block = _study_block(by_study[study], images)
        return f"{m.group(1)}\n{block}{m.group(4)}"

    return README_MARKER.sub(replace, text)
