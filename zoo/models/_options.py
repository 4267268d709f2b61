"""What the model options mean, in one place: their names, their values and their
validation. Torch-free, so that a config can be checked without building anything; the
layers that honour the options are in ``_layers.py``.

- ``act``: the activation of the network (``relu``, ``relu6``, ``silu``/``swish``,
  ``hardswish``). Gates (the sigmoids of squeeze-excitation, attention softmaxes) are part
  of the architecture and are never replaced.
- ``drop_rate``: dropout on the pooled features, before the classifier.
- ``drop_path_rate``: stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic
  Depth") on the residual branches, at most this rate (the deepest block's).
- ``zero_init_last``: zero-γ (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): the last
  BN of every residual branch starts with γ = 0, so every block starts as the identity.
- ``norm``: the normalisation layer, ``batchnorm`` or ``switchnorm`` (see ``switchnorm.py``).
- ``stem``, ``avg_down``, ``stride_1x1``: the ResNet tweaks of Bag of Tricks (He et al.
  2019, sec. 4): the deep 3x3 stem (ResNet-C), the average-pooled projection shortcut
  (ResNet-D) and the original stride on the bottleneck's 1x1 (the opposite of ResNet-B);
  see ``resnet.py``.
"""

from __future__ import annotations

from typing import Any

from zoo.errors import UnknownNameError, did_you_mean

#: Options a model may declare. Tricks switch them on; a model that does not declare
#: an option rejects it instead of ignoring it.
KNOWN_OPTIONS = ("act", "drop_rate", "drop_path_rate", "zero_init_last", "norm", "stem",
                 "avg_down", "stride_1x1")

#: The values of ``stem``.
STEM_NAMES = ("default", "deep")

#: The values of ``act`` (``swish`` is another name of ``silu``).
ACTIVATION_NAMES = ("relu", "relu6", "silu", "swish", "hardswish")

#: The values of ``norm``.
NORM_NAMES = ("batchnorm", "switchnorm")


def check_option(model: str, option: str, value: Any) -> None:
    """Raise when ``value`` is not a valid value of ``option``; the message names both."""
    if option == "act":
        if value not in ACTIVATION_NAMES:
            raise UnknownNameError(
                f"model '{model}': unknown activation '{value}' for option 'act'"
                f"{did_you_mean(str(value), ACTIVATION_NAMES)} "
                f"(choose from {', '.join(ACTIVATION_NAMES)})"
            )
    elif option == "norm":
        if value not in NORM_NAMES:
            raise UnknownNameError(
                f"model '{model}': unknown normalisation '{value}' for option 'norm'"
                f"{did_you_mean(str(value), NORM_NAMES)} "
                f"(choose from {', '.join(NORM_NAMES)})"
            )
    elif option in ("drop_rate", "drop_path_rate"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ValueError(f"model '{model}': option '{option}' must be a number in [0, 1), "
                             f"got {value!r}")
    elif option == "stem":
        if value not in STEM_NAMES:
            raise UnknownNameError(
                f"model '{model}': unknown stem '{value}' for option 'stem'"
                f"{did_you_mean(str(value), STEM_NAMES)} (choose from {', '.join(STEM_NAMES)})"
            )
    elif option in ("zero_init_last", "avg_down", "stride_1x1") and not isinstance(value, bool):
        raise ValueError(f"model '{model}': option '{option}' must be true or false, "
                         f"got {value!r}")
