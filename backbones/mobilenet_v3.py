"""MobileNet V3 Large and Small (arXiv 1905.02244, Tables 1-2), laid out as torchvision's ``mobilenet_v3_*``.

``features[0]`` is the 3x3 stride-2 stem (hard-swish), ``features[1..]`` the bottlenecks (1x1
expansion, depthwise k x k, optional squeeze-excitation with hard-sigmoid gate, 1x1 linear
projection), then the last 1x1 conv (hard-swish). The classifier pools, then 1x1 "head" linear +
hard-swish, dropout, and the class linear. SSDLite taps (paper section 6.3): the expansion output
of the C4 block, the first stride-32 bottleneck (``features[13].block[0]`` for Large,
``features[9].block[0]`` for Small; stride 16), and the last conv before pooling (stride 32).

``reduced_tail=True`` halves every layer between C4 and C5 (the C4 block's output, the later
blocks, the last conv and the head), exactly like torchvision's ``reduced_tail``.

Width multiplier: at alpha = 1 the channels are those of the tables (and of torchvision). For
other alphas the channel rule is the authors' TF-slim reference, whose checkpoints the paper's
Table 3 rows describe: a block's expansion is ``make_divisible(rounded input channels x expansion
ratio)``, the last conv is ``make_divisible(960 * alpha)``, and the head keeps its 1280 (1024)
channels unless alpha > 1. (torchvision instead rounds every expansion size on its own and scales
the head, which gives 10% fewer MACs and 16% fewer parameters than the paper at alpha 0.75.)
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

from torch import nn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

from backbones._common import ExpandingResidual, MobileNet, NormLayer, Tap, check_width, make_divisible
from backbones._registry import register

STEM = (16, 2)  # (out channels, stride), hard-swish


def large_table(d: int) -> tuple[tuple, int, int, int]:
    """Large: (bottleneck rows, index of the C4 row, last conv channels, head channels); ``d = 2`` halves the tail.

    A row is (kernel, expansion channels, out channels, squeeze-excite, activation, stride), at alpha 1.
    """
    rows = (
        (3, 16, 16, False, "RE", 1),
        (3, 64, 24, False, "RE", 2),  # C1
        (3, 72, 24, False, "RE", 1),
        (5, 72, 40, True, "RE", 2),  # C2
        (5, 120, 40, True, "RE", 1),
        (5, 120, 40, True, "RE", 1),
        (3, 240, 80, False, "HS", 2),  # C3
        (3, 200, 80, False, "HS", 1),
        (3, 184, 80, False, "HS", 1),
        (3, 184, 80, False, "HS", 1),
        (3, 480, 112, True, "HS", 1),
        (3, 672, 112, True, "HS", 1),
        (5, 672, 160 // d, True, "HS", 2),  # C4: tap 1 = its expansion output
        (5, 960 // d, 160 // d, True, "HS", 1),
        (5, 960 // d, 160 // d, True, "HS", 1),
    )
    return rows, 12, 960 // d, 1280 // d


def small_table(d: int) -> tuple[tuple, int, int, int]:
    """Small: same layout as :func:`large_table`."""
    rows = (
        (3, 16, 16, True, "RE", 2),  # C1
        (3, 72, 24, False, "RE", 2),  # C2
        (3, 88, 24, False, "RE", 1),
        (5, 96, 40, True, "HS", 2),  # C3
        (5, 240, 40, True, "HS", 1),
        (5, 240, 40, True, "HS", 1),
        (5, 120, 48, True, "HS", 1),
        (5, 144, 48, True, "HS", 1),
        (5, 288, 96 // d, True, "HS", 2),  # C4: tap 1 = its expansion output
        (5, 576 // d, 96 // d, True, "HS", 1),
        (5, 576 // d, 96 // d, True, "HS", 1),
    )
    return rows, 8, 576 // d, 1024 // d


ACTIVATIONS = {"RE": nn.ReLU, "HS": nn.Hardswish}
# torchvision's V3 batch norm (TF's decay 0.99, epsilon 1e-3)
DEFAULT_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class InvertedResidual(ExpandingResidual):
    """[1x1 expand + BN + act] -> k x k depthwise + BN + act -> [SE] -> 1x1 projection + BN (+ input).

    ``block`` holds the layers under torchvision's names (``block.0`` expansion when present).
    """

    def __init__(
        self, cin: int, expanded: int, cout: int, kernel: int, use_se: bool, act: str, stride: int, norm_layer: NormLayer
    ) -> None:
        super().__init__()
        activation = ACTIVATIONS[act]
        self.has_expansion = expanded != cin
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if self.has_expansion:
            layers.append(Conv2dNormActivation(cin, expanded, 1, norm_layer=norm_layer, activation_layer=activation))
        layers.append(
            Conv2dNormActivation(
                expanded, expanded, kernel, stride, groups=expanded, norm_layer=norm_layer, activation_layer=activation
            )
        )
        if use_se:
            squeeze = make_divisible(expanded // 4, 8)
            layers.append(SqueezeExcitation(expanded, squeeze, scale_activation=nn.Hardsigmoid))
        layers.append(Conv2dNormActivation(expanded, cout, 1, norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.expanded_channels = expanded
        self.out_channels = cout

    def layers(self) -> nn.Sequential:
        return self.block


def _build(
    name: str,
    table,
    width_mult: float,
    reduced_tail: bool,
    num_classes: int | None,
    norm_layer: NormLayer | None,
    out_strides: Sequence[int] | None,
) -> MobileNet:
    check_width(name, width_mult, None)
    norm_layer = norm_layer or DEFAULT_NORM
    rows, c4, last_conv, head = table(2 if reduced_tail else 1)

    cin_ref = STEM[0]  # channels at alpha 1, for the expansion ratio
    cin, stride = make_divisible(STEM[0] * width_mult), STEM[1]
    layers: list[nn.Module] = [Conv2dNormActivation(3, cin, 3, stride, norm_layer=norm_layer, activation_layer=nn.Hardswish)]
    taps = []
    for i, (k, exp, out, se, act, s) in enumerate(rows):
        expanded = make_divisible(cin * exp / cin_ref)  # = exp at alpha 1
        cout = make_divisible(out * width_mult)
        block = InvertedResidual(cin, expanded, cout, k, se, act, s, norm_layer)
        if i == c4 or (stride == 8 and s == 2):  # C4 (stride 16), and C3 for the optional stride-8 map
            taps.append(Tap(layer=len(layers), point="expansion", channels=expanded, stride=stride))
        layers.append(block)
        cin, cin_ref, stride = cout, out, stride * s

    last = make_divisible(last_conv * width_mult)
    taps.append(Tap(layer=len(layers), point="out", channels=last, stride=stride))
    layers.append(Conv2dNormActivation(cin, last, 1, norm_layer=norm_layer, activation_layer=nn.Hardswish))

    classifier = None
    if num_classes is not None:
        hidden = make_divisible(head * max(1.0, width_mult))
        classifier = nn.Sequential(
            nn.Linear(last, hidden), nn.Hardswish(inplace=True), nn.Dropout(p=0.2, inplace=True), nn.Linear(hidden, num_classes)
        )
    return MobileNet(nn.Sequential(*layers), taps, classifier, out_strides, name=name)


@register("mobilenet_v3_large", widths=None, reduced_tail=True)
def mobilenet_v3_large(
    *,
    width_mult: float = 1.0,
    reduced_tail: bool = False,
    num_classes: int | None = None,
    norm_layer: NormLayer | None = None,
    out_strides: Sequence[int] | None = None,
) -> MobileNet:
    """MobileNet V3 Large at any ``width_mult`` > 0; taps: C4 expansion (672) and last conv (960; 480 reduced);
    C3 expansion at stride 8 for the optional small-object map."""
    return _build("mobilenet_v3_large", large_table, width_mult, reduced_tail, num_classes, norm_layer, out_strides)


@register("mobilenet_v3_small", widths=None, reduced_tail=True)
def mobilenet_v3_small(
    *,
    width_mult: float = 1.0,
    reduced_tail: bool = False,
    num_classes: int | None = None,
    norm_layer: NormLayer | None = None,
    out_strides: Sequence[int] | None = None,
) -> MobileNet:
    """MobileNet V3 Small at any ``width_mult`` > 0; taps: C4 expansion (288) and last conv (576; 288 reduced);
    C3 expansion at stride 8 for the optional small-object map."""
    return _build("mobilenet_v3_small", small_table, width_mult, reduced_tail, num_classes, norm_layer, out_strides)
