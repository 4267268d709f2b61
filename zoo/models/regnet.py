"""RegNetX and RegNetY (Radosavovic, Kosaraju, Girshick, He, Dollár 2020, "Designing
Network Design Spaces", CVPR), from timm's ``RegNet``.

A RegNet is a stem (3x3 stride-2 conv, 32 channels), four stages of X blocks (1x1, grouped
3x3 with the stride, 1x1, bottleneck ratio 1) and a linear head. Stage widths and depths
come from the quantised linear rule ``u_j = w0 + wa * j`` with multiplier ``wm``; RegNetY
adds squeeze-excitation with ratio 1/4 of the block's input width. The parameters of each
model are the paper's (Appendix, Table of RegNetX/Y models; pycls model zoo):

| model          | w0  | wa    | wm   | g  | d  | paper params | paper flops |
|----------------|-----|-------|------|----|----|--------------|-------------|
| RegNetX-4.0GF  | 96  | 38.65 | 2.43 | 40 | 23 | 22.1M        | 4.0B        |
| RegNetY-4.0GF  | 96  | 31.41 | 2.24 | 64 | 22 | 20.6M        | 4.0B        |
| RegNetY-6.4GF  | 112 | 33.22 | 2.27 | 72 | 25 | 30.6M        | 6.4B        |

timm's configurations are exactly these, and the counts measured here (22.12M / 3.96 G,
20.65M / 3.97 G, 30.58M / 6.36 G MACs of convolutions and linear layers) agree with the
paper's, whose "flops" are multiply-adds (the names round them: 4.0GF is 3.96-4.0 G).
torchvision has no 4.0GF or 6.4GF RegNet (it has 3.2GF and 8GF), so timm is the source.

Defaults are the paper's baseline: no dropout, no drop-path, and zero-γ off (timm turns
it on by default; we pass ``zero_init_last=False``).
"""

from __future__ import annotations

from torch import nn

from zoo.models._layers import timm_with_options


def regnetx_040(num_classes: int = 1000, **options: object) -> nn.Module:
    """RegNetX-4.0GF."""
    return timm_with_options("regnetx_040", num_classes, **options)  # type: ignore[arg-type]


def regnety_040(num_classes: int = 1000, **options: object) -> nn.Module:
    """RegNetY-4.0GF."""
    return timm_with_options("regnety_040", num_classes, **options)  # type: ignore[arg-type]


def regnety_064(num_classes: int = 1000, **options: object) -> nn.Module:
    """RegNetY-6.4GF."""
    return timm_with_options("regnety_064", num_classes, **options)  # type: ignore[arg-type]
