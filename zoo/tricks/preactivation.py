"""Pre-activation residual blocks (He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep
Residual Networks", ECCV): selects the v2 version of the model (``resnet50`` ->
``resnet50v2``, ``resnet101`` -> ``resnet101v2``, see ``zoo/models/preact_resnet.py``)."""

from __future__ import annotations

from zoo.tricks._select import ModelSelector
from zoo.tricks.registry import register_trick


@register_trick
class Preactivation(ModelSelector):
    name = "preactivation"
    paper = "He et al. 2016, Identity Mappings in Deep Residual Networks (ECCV)"
    conflicts = ("octconv", "lip")
    variants = (("resnet50", "resnet50v2"), ("resnet101", "resnet101v2"))
    what = "pre-activation (v2) version"
