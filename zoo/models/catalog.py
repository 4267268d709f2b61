"""What the zoo holds: one declaration per model, without importing torch.

A declaration names the model, the function that builds it (``module:function``, imported
only when the model is built), the facts a test or a report checks against (paper,
reference parameter count and MACs at 224x224 with 1000 classes) and the options it
takes. Validating a config (``zoo.config``) and listing models read this table alone, so
``ablate run`` checks a whole study before anything imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Options every model built on a residual network takes (see ``_options.py``).
RESNET_OPTIONS = ("act", "drop_rate", "drop_path_rate", "zero_init_last", "norm")
#: torchvision's ResNets also take the Bag of Tricks tweaks (see ``resnet.py``); the
#: bottleneck ones also the original stride on the 1x1.
TWEAK_OPTIONS = (*RESNET_OPTIONS, "stem", "avg_down")
BOTTLENECK_OPTIONS = (*TWEAK_OPTIONS, "stride_1x1")
#: MobileNets and GhostNets: no residual branch to drop or to zero (see ``mobilenet.py``).
MOBILE_OPTIONS = ("act", "drop_rate")

HE_2016 = "He et al. 2016, Deep Residual Learning for Image Recognition (CVPR)"
HE_2016_IDENTITY = "He et al. 2016, Identity Mappings in Deep Residual Networks (ECCV)"
BOT_2019 = ("He et al. 2019, Bag of Tricks for Image Classification with Convolutional "
            "Neural Networks (CVPR)")
REGNET = "Radosavovic et al. 2020, Designing Network Design Spaces (CVPR)"
GHOSTNET = "Han et al. 2020, GhostNet: More Features from Cheap Operations (CVPR)"
MOBILENET_V3 = "Howard et al. 2019, Searching for MobileNetV3 (ICCV)"


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about one model."""

    name: str
    #: ``module:function`` of the constructor ``fn(num_classes=..., **options) -> nn.Module``.
    builder: str
    paper: str = ""
    reference: str = ""
    #: Reference parameter count in millions (224x224 input, 1000 classes), if published.
    ref_params_m: float | None = None
    #: Reference multiply-accumulates in billions (224x224 input, 1000 classes).
    ref_macs_g: float | None = None
    #: Options from ``KNOWN_OPTIONS`` this model accepts.
    options: tuple[str, ...] = RESNET_OPTIONS
    #: Smallest input side the model is meant for (CIFAR-style models take 28-32 px).
    min_input: int = 32
    #: Architecture arguments of this model alone (not tricks), with their defaults,
    #: e.g. ``{"alpha": 0.125}`` for OctConv's low-frequency ratio.
    arch_args: dict[str, Any] = field(default_factory=dict)
    #: Train in channels_last on CUDA unless the config says otherwise: on for dense
    #: convolutions (cuDNN's NHWC kernels are faster with tensor cores), off for grouped
    #: and depthwise ones, whose NHWC kernels are slower on some GPUs.
    channels_last: bool = True

    @property
    def fn(self) -> Callable[..., Any]:
        """The constructor (imports its module, and with it torch)."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)


MODELS = (
    ModelInfo("resnet20", "zoo.models.resnet_cifar:resnet20",
              paper="He et al. 2016, Deep Residual Learning for Image Recognition "
              "(CIFAR, sec. 4.2)",
              reference="CIFAR ResNet-20, 0.27M params", min_input=8),
    ModelInfo("resnet18_cifar", "zoo.models.resnet:resnet18_cifar",
              paper=f"{HE_2016}; 3x3 stride-1 stem without max-pool for 28-32 px images",
              reference="torchvision resnet18 body, small-input stem", min_input=8),
    ModelInfo("resnet18", "zoo.models.resnet:resnet18", paper=HE_2016,
              reference="torchvision resnet18", ref_params_m=11.690, ref_macs_g=1.814,
              options=TWEAK_OPTIONS),
    ModelInfo("resnet50", "zoo.models.resnet:resnet50", paper=HE_2016,
              reference="torchvision resnet50", ref_params_m=25.557, ref_macs_g=4.089,
              options=BOTTLENECK_OPTIONS),
    # Bag of Tricks' ResNet-50-C/D as models (the tricks resnet_c/resnet_d give the same
    # networks from resnet50); their stem and shortcut are fixed, so not options here.
    ModelInfo("resnet50c", "zoo.models.resnet:resnet50c", paper=BOT_2019,
              reference="timm resnet50c", ref_params_m=25.576, ref_macs_g=4.329,
              options=(*RESNET_OPTIONS, "stride_1x1")),
    ModelInfo("resnet50d", "zoo.models.resnet:resnet50d", paper=BOT_2019,
              reference="timm resnet50d", ref_params_m=25.576, ref_macs_g=4.329,
              options=(*RESNET_OPTIONS, "stride_1x1")),
    ModelInfo("resnet101", "zoo.models.resnet:resnet101", paper=HE_2016,
              reference="torchvision resnet101", ref_params_m=44.549, ref_macs_g=7.801,
              options=BOTTLENECK_OPTIONS),
    ModelInfo("resnext50_32x4d", "zoo.models.resnet:resnext50_32x4d",
              paper="Xie et al. 2017, Aggregated Residual Transformations for Deep Neural "
              "Networks (CVPR)",
              reference="torchvision resnext50_32x4d", ref_params_m=25.029, ref_macs_g=4.230,
              options=BOTTLENECK_OPTIONS,
              channels_last=False),  # grouped convolutions (32 groups)
    ModelInfo("resnet50v2", "zoo.models.preact_resnet:resnet50v2", paper=HE_2016_IDENTITY,
              reference="timm resnetv2_50", ref_params_m=25.549, ref_macs_g=4.089),
    ModelInfo("resnet101v2", "zoo.models.preact_resnet:resnet101v2", paper=HE_2016_IDENTITY,
              reference="timm resnetv2_101", ref_params_m=44.541, ref_macs_g=7.801),
    ModelInfo("oct_resnet50", "zoo.models.oct_resnet:oct_resnet50",
              paper="Chen et al. 2019, Drop an Octave: Reducing Spatial Redundancy in "
              "Convolutional Neural Networks with Octave Convolution (ICCV)",
              reference="Oct-ResNet-50, alpha 0.125 (authors' resnet50_v1b layout): 25.6M "
              "params (= ResNet-50), 3.6 GFLOPs",
              ref_params_m=25.557, ref_macs_g=3.6, arch_args={"alpha": 0.125}),
    ModelInfo("lip_resnet50", "zoo.models.lip_resnet:lip_resnet50",
              paper="Gao, Wang, Wu 2019, LIP: Local Importance-based Pooling (ICCV)",
              reference="LIP-ResNet-50, the ImageNet table of the paper and of the authors' "
              "repository (sebgao/LIP): 23.9M params, 5.33 GFLOPs",
              ref_params_m=23.9, ref_macs_g=5.33),
    ModelInfo("resnest50", "zoo.models.resnest:resnest50",
              paper="Zhang et al. 2020, ResNeSt: Split-Attention Networks (arXiv:2004.08955)",
              reference="ResNeSt-50 (deep stem, avg-down), timm resnest50d",
              ref_params_m=27.483, ref_macs_g=5.371,
              channels_last=False),  # depthwise/grouped convolutions
    # RegNets: grouped convolutions (group width 40-112).
    ModelInfo("regnetx_4.0gf", "zoo.models.regnet:regnetx_040", paper=REGNET,
              reference="RegNetX-4.0GF, timm regnetx_040", ref_params_m=22.118,
              ref_macs_g=3.964, channels_last=False),
    ModelInfo("regnety_4.0gf", "zoo.models.regnet:regnety_040", paper=REGNET,
              reference="RegNetY-4.0GF, timm regnety_040", ref_params_m=20.647,
              ref_macs_g=3.973, channels_last=False),
    ModelInfo("regnety_6.4gf", "zoo.models.regnet:regnety_064", paper=REGNET,
              reference="RegNetY-6.4GF, timm regnety_064", ref_params_m=30.583,
              ref_macs_g=6.355, channels_last=False),
    # MobileNets and GhostNets: depthwise/grouped convolutions.
    ModelInfo("mobilenetv1", "zoo.models.mobilenet:mobilenetv1",
              paper="Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks "
              "for Mobile Vision Applications (arXiv:1704.04861)",
              reference="MobileNet v1 1.0, timm mobilenetv1_100", ref_params_m=4.232,
              ref_macs_g=0.569, options=MOBILE_OPTIONS, channels_last=False),
    ModelInfo("mobilenetv2", "zoo.models.mobilenet:mobilenetv2",
              paper="Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear "
              "Bottlenecks (CVPR)",
              reference="torchvision mobilenet_v2", ref_params_m=3.505, ref_macs_g=0.301,
              options=MOBILE_OPTIONS, channels_last=False),
    ModelInfo("mobilenetv3_large", "zoo.models.mobilenet:mobilenetv3_large",
              paper=MOBILENET_V3, reference="torchvision mobilenet_v3_large",
              ref_params_m=5.483, ref_macs_g=0.217, options=MOBILE_OPTIONS,
              channels_last=False),
    ModelInfo("mobilenetv3_small", "zoo.models.mobilenet:mobilenetv3_small",
              paper=MOBILENET_V3, reference="torchvision mobilenet_v3_small",
              ref_params_m=2.543, ref_macs_g=0.0565, options=MOBILE_OPTIONS,
              channels_last=False),
    ModelInfo("ghostnet_1.0", "zoo.models.ghostnet:ghostnet_100", paper=GHOSTNET,
              reference="GhostNet 1.0x, timm ghostnet_100", ref_params_m=5.183,
              ref_macs_g=0.1412, options=MOBILE_OPTIONS, channels_last=False),
    ModelInfo("ghostnet_1.3", "zoo.models.ghostnet:ghostnet_130", paper=GHOSTNET,
              reference="GhostNet 1.3x, timm ghostnet_130", ref_params_m=7.359,
              ref_macs_g=0.2270, options=MOBILE_OPTIONS, channels_last=False),
)
