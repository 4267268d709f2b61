"""The results database from a notebook, read-only, as pandas DataFrames::

    import ablate
    r = ablate.open("results.db")
    r.report("fashion_mnist_tricks")          # the frame `ablate report` renders

:meth:`Results.report` is the report's own frame (:func:`ablate.report.build_frame`), so a
notebook and ``ablate report`` never disagree; :meth:`Results.metrics` is every epoch of
every run of a study in long form. Nothing here writes: the store is opened as a reader
(``create=False``), as ``ablate status`` and ``ablate report`` open it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from ablate.store.db import Store

#: Columns of :meth:`Results.metrics`, one row per (run, epoch, metric).
METRIC_COLUMNS = ("study", "variant", "variant_index", "seed", "hash", "status", "epoch",
                  "metric", "value")


class Results:
    """A results database, read-only. Use as a context manager, or call :meth:`close`."""

    def __init__(self, db: str | Path = "results.db") -> None:
        from ablate.store.db import Store

        text = str(db)
        # A path is a SQLite file; anything with a scheme is an SQLAlchemy URL.
        url = text if "://" in text else f"sqlite:///{text}"
        self.store: Store = Store(url, create=False)

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"ablate.Results({self.store.display_url!r})"

    def studies(self) -> list[str]:
        """The studies in the database, by name."""
        return self.store.study_names()

    def report(self, study: str | None = None, metrics: Sequence[str] = ()) -> pd.DataFrame:
        """One row per (study, variant), baseline first: the frame ``ablate report``
        renders (columns: :data:`ablate.report.COLUMNS`, then those of the metrics decided
        beyond top-1: the study's ``primary:`` and ``metrics``, as ``--metric``). Default:
        every study."""
        from ablate.report import build_frame

        return build_frame(self.store, [study] if study else None, metrics=metrics)

    def metrics(self, study: str) -> pd.DataFrame:
        """Every epoch's metrics of every run of ``study`` (any status: a running run
        shows its epochs so far), long form: one row per (run, epoch, metric), columns
        :data:`METRIC_COLUMNS`. ``df.pivot_table(index="epoch", columns="variant",
        values="value")`` on one metric gives the mean curve per variant."""
        import pandas as pd

        from ablate.report import load_studies

        (record,) = load_studies(self.store, [study])
        frames = []
        for run in record.runs:
            epochs = self.store.metrics(run.hash)
            if not epochs:
                continue
            wide = pd.DataFrame(epochs)
            long = wide.melt(id_vars="epoch", var_name="metric", value_name="value")
            ids: dict[str, Any] = {"study": record.name, "variant": run.variant,
                                   "variant_index": run.variant_index, "seed": run.seed,
                                   "hash": run.hash, "status": run.status}
            frames.append(long.dropna(subset=["value"]).assign(**ids))
        if not frames:
            return pd.DataFrame(columns=list(METRIC_COLUMNS))
        out = pd.concat(frames, ignore_index=True)[list(METRIC_COLUMNS)]
        return out.sort_values(["variant_index", "seed", "epoch", "metric"],
                               ignore_index=True)


def open(db: str | Path = "results.db") -> Results:
    """Open a results database for reading: a SQLite file's path or any SQLAlchemy URL
    (``postgresql://...``). An unknown file or a database that is not ablate's is an
    :class:`ablate.errors.AblateError` naming it."""
    return Results(db)
