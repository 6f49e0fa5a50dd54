"""MobileNet V2 (arXiv 1801.04381, Table 2), laid out as torchvision's ``mobilenet_v2``.

``features[0]`` is the 3x3 stride-2 stem conv, ``features[1..17]`` the 17 inverted-residual
bottlenecks, ``features[18]`` the final 1x1 conv (1280 channels, kept for alpha <= 1).
SSDLite taps (paper section 6.2): the expansion output of the first stride-32 bottleneck,
``features[14].conv[0]`` ("layer 15" counting the stem conv; 576 channels at alpha 1, stride 16),
and the final 1x1 conv (stride 32). Module names equal torchvision's, so its ImageNet state dict
loads as is.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn
from torchvision.ops import Conv2dNormActivation

from backbones._common import ExpandingResidual, MobileNet, NormLayer, Tap, check_width, make_divisible
from backbones._registry import register

WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)

STEM = (32, 2)  # (out channels, stride)
# Table 2 of the paper: (expansion t, out channels c, repeats n, stride s of the first repeat)
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),  # its first block goes to stride 32: tap 1 is that block's expansion
    (6, 320, 1, 1),
)
TAP_STAGE = 5
LAST_CONV = 1280  # scaled only when alpha > 1

DEFAULT_NORM = nn.BatchNorm2d  # torchvision: eps 1e-5, momentum 0.1


class InvertedResidual(ExpandingResidual):
    """[1x1 expand + BN + ReLU6] -> 3x3 depthwise + BN + ReLU6 -> 1x1 linear projection + BN (+ input).

    ``conv`` holds the layers under torchvision's names (``conv.0`` expansion when t != 1).
    """

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int, norm_layer: NormLayer) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.has_expansion = expand_ratio != 1
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if self.has_expansion:
            layers.append(Conv2dNormActivation(cin, hidden, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(hidden, hidden, 3, stride, groups=hidden, norm_layer=norm_layer, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            norm_layer(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.expanded_channels = hidden
        self.out_channels = cout

    def layers(self) -> nn.Sequential:
        return self.conv


@register("mobilenet_v2", widths=WIDTHS)
def mobilenet_v2(
    *,
    width_mult: float = 1.0,
    reduced_tail: bool = False,
    num_classes: int | None = None,
    norm_layer: NormLayer | None = None,
    out_strides: Sequence[int] | None = None,
) -> MobileNet:
    """MobileNet V2 at ``width_mult`` (alpha in {0.35, 0.5, 0.75, 1.0, 1.3, 1.4}); taps at strides 8, 16 and 32."""
    check_width("mobilenet_v2", width_mult, WIDTHS)
    if reduced_tail:
        raise ValueError("mobilenet_v2: reduced_tail is only defined for mobilenet_v3_large and mobilenet_v3_small")
    norm_layer = norm_layer or DEFAULT_NORM

    cin, stride = make_divisible(STEM[0] * width_mult), STEM[1]
    layers: list[nn.Module] = [Conv2dNormActivation(3, cin, 3, stride, norm_layer=norm_layer, activation_layer=nn.ReLU6)]
    taps = []
    for stage, (t, c, n, s) in enumerate(STAGES):
        cout = make_divisible(c * width_mult)
        for i in range(n):
            block_stride = s if i == 0 else 1
            block = InvertedResidual(cin, cout, block_stride, t, norm_layer)
            if (stage == TAP_STAGE and i == 0) or (stride == 8 and block_stride == 2):  # + optional stride-8 map
                taps.append(Tap(layer=len(layers), point="expansion", channels=block.expanded_channels, stride=stride))
            layers.append(block)
            cin, stride = cout, stride * block_stride

    last = make_divisible(LAST_CONV * max(1.0, width_mult))
    taps.append(Tap(layer=len(layers), point="out", channels=last, stride=stride))
    layers.append(Conv2dNormActivation(cin, last, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6))

    classifier = None
    if num_classes is not None:
        classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(last, num_classes))
    return MobileNet(nn.Sequential(*layers), taps, classifier, out_strides, name="mobilenet_v2")
