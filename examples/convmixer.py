"""ConvMixer (Trockman & Kolter 2022, "Patches Are All You Need?", TMLR), as a
researcher's own model: a patch embedding, then ``depth`` blocks of a depthwise convolution
(with a residual connection) and a pointwise one, each followed by GELU and BatchNorm.

``convmixer_768_32`` is the paper's ConvMixer-768/32 (kernel 7, patch 7: 21.1M parameters
at 1000 classes); ``convmixer_256_8`` is a small one for 28-32 px images (kernel 5, patch 2).
Its own sizes are architecture arguments: ``model: {name: convmixer_256_8, options:
{depth: 4}}``.

Not in the zoo: ``imports: [examples/convmixer.py]`` in a study brings it in.
"""

from __future__ import annotations

from torch import nn

from zoo import register_model

PAPER = "Trockman & Kolter 2022, Patches Are All You Need? (TMLR)"


class Residual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fn(x) + x


def convmixer(dim: int, depth: int, kernel_size: int, patch_size: int,
              num_classes: int) -> nn.Module:
    def block() -> nn.Module:
        return nn.Sequential(
            Residual(nn.Sequential(
                nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same"),
                nn.GELU(), nn.BatchNorm2d(dim))),
            nn.Conv2d(dim, dim, kernel_size=1), nn.GELU(), nn.BatchNorm2d(dim))

    return nn.Sequential(
        nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size), nn.GELU(),
        nn.BatchNorm2d(dim), *[block() for _ in range(depth)],
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, num_classes))


@register_model("convmixer_768_32", paper=PAPER, reference="ConvMixer-768/32, Table 1",
                ref_params_m=21.1, options=(), channels_last=False,
                arch_args={"dim": 768, "depth": 32, "kernel_size": 7, "patch_size": 7})
def convmixer_768_32(num_classes: int = 1000, dim: int = 768, depth: int = 32,
                     kernel_size: int = 7, patch_size: int = 7) -> nn.Module:
    return convmixer(dim, depth, kernel_size, patch_size, num_classes)


@register_model("convmixer_256_8", paper=PAPER, reference="a small ConvMixer for 28-32 px",
                options=(), min_input=8, channels_last=False,
                arch_args={"dim": 256, "depth": 8, "kernel_size": 5, "patch_size": 2})
def convmixer_256_8(num_classes: int = 1000, dim: int = 256, depth: int = 8,
                    kernel_size: int = 5, patch_size: int = 2) -> nn.Module:
    return convmixer(dim, depth, kernel_size, patch_size, num_classes)
