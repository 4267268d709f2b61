"""Training tricks: each one a small unit with typed parameters that acts through hooks.

Importing this package registers every trick; each module below registers its own. The
trainer calls the hooks of :class:`TrickSet` (see :mod:`zoo.tricks.base` for the hooks and
the loop events); it never names a trick.

When several tricks act at the same hook they run in ascending ``order`` (then by name).
The order, which is also the order of the lists in ``ablate tricks``:

====  =====================================  ==============================================
   5  linear_lr_scaling                      the learning rate from the global batch
                                             (``resolve``)
   6  repeated_augmentation,                 the training data: sampler, crop size
      train_resolution
  10  octconv, lip, preactivation            choose the architecture (``model_name``); the
                                             tricks after them check the chosen model
  20  dropout, stochastic_depth, zero_gamma, model options (``model_options``), merged;
      relu6 / swish, switchnorm,             two tricks may not set one option
      resnet_c / resnet_d
  30  deformable_conv, resnet_b              model surgery on the built model
  35  sync_bn                                converts the BatchNorms of the final model
  40  no_bias_decay                          parameter groups of the optimizer
  60  mixup / cutmix                         per batch; together, one of them per batch,
                                             drawn 50/50 from the run's generator
  64  random_rotation                        uint8 ops after crop and flip (``pre``):
  65  autoaugment / randaugment /            rotation first, then the augmentation policy
      trivialaugment
  70  cutout / random_erasing                float ops after normalisation (``post``)
  80  gradient_centralization                gradients, before the step
  85  lamb                                   replaces SGD over the same parameter groups
  90  lookahead                              wraps the optimizer
 100  label_smoothing / bce_loss             loss (label_smoothing smooths mixed targets
                                             too; bce_loss replaces the cross-entropy)
 110  distillation                           adds the teacher's soft term to the loss
 200  ema                                    copies the final model; evaluated in its place
====  =====================================  ==============================================

A slash marks tricks that cannot be combined (an error naming both); so are octconv with
lip, preactivation or deformable_conv, cutout with random_erasing, and sync_bn with
switchnorm.

Tricks acting per step (mixup, cutmix, label_smoothing, bce_loss, distillation,
gradient_centralization) also take ``until_epoch``: they stop after that epoch.
"""

from zoo.tricks import (  # noqa: F401  (each module registers its trick)
    autoaugment,
    bce_loss,
    cutmix,
    cutout,
    deformable_conv,
    distillation,
    dropout,
    ema,
    gradient_centralization,
    label_smoothing,
    lamb,
    linear_lr_scaling,
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
    repeated_augmentation,
    resnet_tweaks,
    stochastic_depth,
    swish,
    switchnorm,
    sync_bn,
    train_resolution,
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
