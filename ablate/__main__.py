"""``python -m ablate`` is the ``ablate`` command."""

from ablate.cli import app

app(prog_name="ablate")
