"""ReLU6, min(max(x, 0), 6) (Krizhevsky 2010, "Convolutional Deep Belief Networks on
CIFAR-10"; the activation of MobileNets, Howard et al. 2017), in place of the network's
activations. Switched on through the model option ``act=relu6``."""

from __future__ import annotations

from zoo.tricks._activation import ActivationTrick
from zoo.tricks.registry import register_trick


@register_trick
class ReLU6(ActivationTrick):
    name = "relu6"
    paper = "Krizhevsky 2010, Convolutional Deep Belief Networks on CIFAR-10"
    conflicts = ("swish",)
    act = "relu6"
    act_class = "ReLU6"
