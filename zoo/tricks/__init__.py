"""Training tricks: each one a small unit with typed parameters that acts through hooks.

Importing this package registers every trick; each module below registers its own. The
trainer calls the hooks of :class:`TrickSet` (see :mod:`zoo.tricks.base` for the hooks and
the loop events); it never names a trick.

When several tricks act at the same hook they run in ascending ``order`` (then by name).
The order, which is also the order of the lists in ``ablate tricks``:

====  =====================================  ==============================================
  10  octconv, lip, preactivation            choose the architecture (``model_name``); the
                                             tricks after them check the chosen model
  20  dropout, stochastic_depth, zero_gamma, model options (``model_options``), merged;
      relu6 / swish, switchnorm              two tricks may not set one option
  30  deformable_conv                        model surgery on the built model
  35  sync_bn                                converts the BatchNorms of the final model
  40  no_bias_decay                          parameter groups of the optimizer
  60  mixup / cutmix                         per batch; together, one of them per batch,
                                             drawn 50/50 from the run's generator
  64  random_rotation                        uint8 ops after crop and flip (``pre``):
  65  autoaugment / randaugment /            rotation first, then the augmentation policy
      trivialaugment
  70  cutout / random_erasing                float ops after normalisation (``post``)
  80  gradient_centralization                gradients, before the step
  90  lookahead                              wraps the optimizer
 100  label_smoothing                        loss (smooths mixed targets too)
 200  ema                                    copies the final model; evaluated in its place
====  =====================================  ==============================================

A slash marks tricks that cannot be combined (an error naming both); so are octconv with
lip, preactivation or deformable_conv, cutout with random_erasing, and sync_bn with
switchnorm.
"""

from zoo.tricks import (  # noqa: F401  (each module registers its trick)
    autoaugment,
    cutmix,
    cutout,
    deformable_conv,
    dropout,
    ema,
    gradient_centralization,
    label_smoothing,
    lip,
    lookahead,
    mixup,
    no_bias_decay,
    octconv,
    preactivation,
    randaugment,
    random_erasing,
    random_rotation,
    relu6,
    stochastic_depth,
    swish,
    switchnorm,
    sync_bn,
    trivialaugment,
    zero_gamma,
)
from zoo.tricks.base import Audit, NoParams, Resolved, RunFacts, TrainContext, Trick
from zoo.tricks.registry import (
    TrickSet,
    get_trick,
    list_tricks,
    parse_params,
    register_trick,
    validate_tricks,
)

__all__ = [
    "Audit",
    "NoParams",
    "Resolved",
    "RunFacts",
    "TrainContext",
    "Trick",
    "TrickSet",
    "get_trick",
    "list_tricks",
    "parse_params",
    "register_trick",
    "validate_tricks",
]
