"""MobileNet V1 (arXiv 1704.04861, Table 1), as TF-slim ``mobilenet_v1.py`` and Keras build it.

A 3x3 stride-2 stem conv (``conv0``) and 13 depthwise-separable layers (``conv1`` .. ``conv13``:
3x3 depthwise + BN + ReLU6, then 1x1 pointwise + BN + ReLU6). ``features[i]`` is ``conv<i>``.
SSDLite taps: the pointwise output of conv11 (stride 16, 512 * alpha channels) and of conv13
(stride 32, 1024 * alpha). Classifier: global average pool, dropout, a 1024-to-classes linear.
There are no torchvision V1 weights; ``weights=`` takes state dicts of this module layout.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Sequence

from torch import nn
from torchvision.ops import Conv2dNormActivation

from backbones._common import MobileNet, NormLayer, Tap, check_width, make_divisible
from backbones._registry import register

WIDTHS = (0.25, 0.5, 0.75, 1.0)

STEM = (32, 2)  # conv0: (out channels, stride)
# conv1 .. conv13: (depthwise stride, pointwise out channels)
LAYERS = (
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),  # conv11: tap 1, stride 16
    (2, 1024),
    (1, 1024),  # conv13: tap 2, stride 32
)
TAP_LAYERS = (11, 13)

# Keras / TF-slim batch norm: epsilon 1e-3, moving-average decay 0.99 (torch momentum 0.01)
DEFAULT_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


def _separable(cin: int, cout: int, stride: int, norm_layer: NormLayer) -> nn.Sequential:
    """Depthwise 3x3 (stride) + BN + ReLU6, then pointwise 1x1 + BN + ReLU6."""
    return nn.Sequential(
        OrderedDict(
            dw=Conv2dNormActivation(cin, cin, 3, stride, groups=cin, norm_layer=norm_layer, activation_layer=nn.ReLU6),
            pw=Conv2dNormActivation(cin, cout, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
        )
    )


@register("mobilenet_v1", widths=WIDTHS)
def mobilenet_v1(
    *,
    width_mult: float = 1.0,
    reduced_tail: bool = False,
    num_classes: int | None = None,
    norm_layer: NormLayer | None = None,
    out_strides: Sequence[int] | None = None,
) -> MobileNet:
    """MobileNet V1 at ``width_mult`` (alpha in {0.25, 0.5, 0.75, 1.0}); taps conv5 (stride 8), conv11 and conv13."""
    check_width("mobilenet_v1", width_mult, WIDTHS)
    if reduced_tail:
        raise ValueError("mobilenet_v1: reduced_tail is only defined for mobilenet_v3_large and mobilenet_v3_small")
    norm_layer = norm_layer or DEFAULT_NORM

    cin, stride = make_divisible(STEM[0] * width_mult), STEM[1]
    layers: list[nn.Module] = [Conv2dNormActivation(3, cin, 3, stride, norm_layer=norm_layer, activation_layer=nn.ReLU6)]
    taps = []
    for i, (s, c) in enumerate(LAYERS, start=1):
        cout = make_divisible(c * width_mult)
        layers.append(_separable(cin, cout, s, norm_layer))
        cin, stride = cout, stride * s
        if i in TAP_LAYERS or (stride == 8 and i < len(LAYERS) and LAYERS[i][0] == 2):  # + optional stride-8 map (conv5)
            taps.append(Tap(layer=i, point="out", channels=cout, stride=stride))

    classifier = None
    if num_classes is not None:
        classifier = nn.Sequential(nn.Dropout(p=0.001), nn.Linear(cin, num_classes))
    return MobileNet(nn.Sequential(*layers), taps, classifier, out_strides, name="mobilenet_v1")
