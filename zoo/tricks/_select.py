"""What the model-selecting tricks share: a table from a model to its variant.

A selector changes the architecture the config names (``resnet50`` -> ``oct_resnet50``) in
the ``model_name`` hook, before the model is built; a model without that variant is a
config error naming the trick and the model. A config may also name the variant itself
(the trick then only passes its parameters).
"""

from __future__ import annotations

from typing import Any, ClassVar

from zoo.errors import ConfigError
from zoo.tricks.base import Audit, Trick

SELECTOR_CONFLICT = "both choose a different version of the architecture"


class ModelSelector(Trick):
    """Select the variant of the configured model from ``variants``."""

    touches = ("model",)
    conflict_reason = SELECTOR_CONFLICT
    #: Selected first: every other trick sees (and checks) the selected model.
    order = 10
    #: (configured model, the variant this trick selects) pairs.
    variants: ClassVar[tuple[tuple[str, str], ...]]
    #: What the variant is, for messages: "an OctConv version".
    what: ClassVar[str]

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.selected: tuple[str, str] | None = None

    @classmethod
    def check_model(cls, model_name: str) -> None:
        table = dict(cls.variants)
        if model_name not in table and model_name not in table.values():
            known = ", ".join(f"{a} -> {b}" for a, b in cls.variants)
            raise ConfigError(f"tricks.{cls.name}: model '{model_name}' has no {cls.what} "
                              f"(known: {known})")

    def model_name(self, name: str) -> str:
        selected = dict(self.variants).get(name, name)
        self.selected = (name, selected)
        return selected

    def audit(self) -> Audit:
        if self.selected is None:
            return Audit(self.name, f"{self.name}: not applied", effective=False)
        src, dst = self.selected
        return Audit(self.name, f"{self.name}: {src} -> {dst}" if src != dst
                     else f"{self.name}: {dst} as configured", details={"model": dst})
