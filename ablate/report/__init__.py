"""Reports that tell signal from noise, from the results database.

load (:mod:`.load`: the rows of the studies as plain records) -> aggregate
(:mod:`.aggregate`: one pandas DataFrame, one row per study and variant, with the paired
statistics of :mod:`.stats`) -> render (:mod:`.render`: markdown, csv, latex, html, json;
:mod:`.readme`: the README's marked blocks; :mod:`.plots`: PNGs). The DataFrame is the one
form every renderer takes but markdown, which renders the frame's rows as records without
building it (:func:`.aggregate.build_rows`; pandas' import is a fifth of a report's time).
"""

from __future__ import annotations

from ablate.report.aggregate import (
    COLUMNS,
    build_frame,
    build_rows,
    config_diff,
    flatten,
    frame_of,
    study_rows,
)
from ablate.report.load import curves_frame, load_studies
from ablate.report.readme import readme_studies, render_readme
from ablate.report.render import FORMATS, display_table, render, study_markdown, study_notes
from ablate.report.stats import paired_delta, paired_power, seeds_for_power, t_ppf

__all__ = ["COLUMNS", "FORMATS", "build_frame", "build_rows", "config_diff", "curves_frame",
           "display_table", "flatten", "frame_of", "load_studies", "paired_delta", "paired_power",
           "readme_studies", "render", "render_readme", "seeds_for_power", "study_markdown",
           "study_notes", "study_rows", "t_ppf"]
