"""Swish / SiLU, x * sigmoid(x) (Ramachandran, Zoph, Le 2017, "Searching for Activation
Functions"; Elfwing et al. 2018 as SiLU), in place of the network's activations. Switched on
through the model option ``act=silu``."""

from __future__ import annotations

from zoo.tricks._activation import ActivationTrick
from zoo.tricks.registry import register_trick


@register_trick
class Swish(ActivationTrick):
    name = "swish"
    paper = "Ramachandran, Zoph, Le 2017, Searching for Activation Functions (arXiv:1710.05941)"
    conflicts = ("relu6",)
    act = "silu"
    act_class = "SiLU"
