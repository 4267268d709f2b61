"""Local Importance-based Pooling (Gao, Wang, Wu 2019, "LIP: Local Importance-based
Pooling", ICCV): selects the LIP version of the model (``resnet50`` -> ``lip_resnet50``, see
``zoo/models/lip_resnet.py``), whose downsampling is a learned importance-weighted average."""

from __future__ import annotations

from zoo.tricks._select import ModelSelector
from zoo.tricks.registry import register_trick


@register_trick
class LIP(ModelSelector):
    name = "lip"
    paper = "Gao, Wang, Wu 2019, LIP: Local Importance-based Pooling (ICCV)"
    conflicts = ("octconv", "preactivation")
    variants = (("resnet50", "lip_resnet50"),)
    what = "LIP version"
