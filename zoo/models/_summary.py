"""What a model costs, measured now: the numbers ``ablate models`` prints.

Models are built on PyTorch's ``meta`` device, which tracks shapes without allocating or
computing anything, so summarising the whole zoo at 224 px takes seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from zoo.measure import count_macs, count_params
from zoo.models._registry import create_model, get_model_info


@dataclass(frozen=True)
class ModelSummary:
    """One registered model: measured and reference cost, paper, options."""

    name: str
    params_m: float
    macs_g: float
    image_size: int
    ref_params_m: float | None
    ref_macs_g: float | None
    paper: str
    reference: str
    options: tuple[str, ...]
    arch_args: dict[str, Any] = field(default_factory=dict)
    min_input: int = 32

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        out["options"] = list(self.options)
        return out


def summarize_model(name: str, *, image_size: int = 224, num_classes: int = 1000
                    ) -> ModelSummary:
    """Build ``name`` with its defaults on the meta device and count its cost."""
    info = get_model_info(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes)
    return ModelSummary(
        name=name,
        params_m=count_params(model) / 1e6,
        macs_g=count_macs(model, image_size) / 1e9,
        image_size=image_size,
        ref_params_m=info.ref_params_m,
        ref_macs_g=info.ref_macs_g,
        paper=info.paper,
        reference=info.reference,
        options=info.options,
        arch_args=dict(info.arch_args),
        min_input=info.min_input,
    )
