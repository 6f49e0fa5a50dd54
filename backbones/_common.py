"""Pieces shared by every MobileNet family: channel rounding, tap declarations, the network shell.

A family module (``mobilenet_v1.py`` ...) holds its layer table as tuples and one builder that
walks the table into ``features`` (an ``nn.Sequential``) and declares its SSDLite taps as
:class:`Tap` records: the papers' two (strides 16 and 32) and a stride-8 one, used only when a
model asks for the small-object map (``MobileNet.select_taps((8, 16, 32))``). :class:`MobileNet`
then either returns the tap maps (detection feature extractor, ``features`` cut right after the
last tap, no classifier) or ImageNet logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

NormLayer = Callable[[int], nn.Module]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going down by more than 10%.

    The channel rounding of the reference MobileNet V2/V3 code (TF-slim ``_make_divisible``,
    torchvision ``_make_divisible``): ``make_divisible(32 * 0.35) == 16``, ``make_divisible(18) == 24``.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def check_width(name: str, width_mult: float, allowed: Sequence[float] | None) -> None:
    """``ValueError`` listing the allowed values when ``width_mult`` is not one of them."""
    if allowed is None:
        if not width_mult > 0:
            raise ValueError(f"{name}: width_mult must be > 0, got {width_mult}")
        return
    if not any(abs(width_mult - a) < 1e-9 for a in allowed):
        listed = ", ".join(str(a) for a in allowed)
        raise ValueError(f"{name}: width_mult={width_mult} is not supported; choose one of {listed}")


def check_images(x: Tensor) -> None:
    """``ValueError`` unless ``x`` is an image batch ``(N, C, H, W)``."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected a 4-D image batch (N, 3, H, W), got {shape}")


DEFAULT_STRIDES = (16, 32)  # the papers' SSDLite taps; a family may also declare a stride-8 tap


@dataclass(frozen=True)
class Tap:
    """One SSDLite feature tap, declared by the family's table.

    ``layer`` indexes the network's ``features``; ``point`` is ``"out"`` (the layer's output) or
    ``"expansion"`` (the output of the layer's 1x1 expansion conv + norm + activation, which the
    block must expose through ``forward_with_expansion``). ``stride`` is the output stride of the
    map and ``channels`` its channel count.
    """

    layer: int
    point: str
    channels: int
    stride: int

    def __post_init__(self) -> None:
        if self.point not in ("out", "expansion"):
            raise ValueError(f"Tap.point must be 'out' or 'expansion', got {self.point!r}")


def init_weights(module: nn.Module) -> None:
    """torchvision's MobileNet initialisation: Kaiming-normal (fan_out) convs, unit norms, N(0, 0.01) linears."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class MobileNet(nn.Module):
    """A MobileNet as ``features`` + declared taps (+ pooling and ``classifier`` when classifying).

    Feature extractor (``classifier is None``): ``features`` ends at the last tap and
    ``forward(images) -> [tap_16, tap_32]`` (``[tap_8, tap_16, tap_32]`` after ``select_taps((8, 16, 32))``),
    each ``(N, out_channels[i], ceil(H / strides[i]), ceil(W / strides[i]))``.
    Classifier: ``forward(images) -> logits (N, num_classes)``; ``forward_taps`` still gives the taps.
    Module names follow torchvision's ``mobilenet_v2`` / ``mobilenet_v3_*`` so their state dicts load as is.
    """

    def __init__(self, features: nn.Sequential, taps: Sequence[Tap], classifier: nn.Module | None = None) -> None:
        super().__init__()
        if not taps:
            raise ValueError("a MobileNet needs at least one tap")
        last = max(t.layer for t in taps)
        if classifier is None:
            # the detection extractor: nothing after the last tap exists
            features = nn.Sequential(*list(features)[: last + 1])
        self.features = features
        self.available_taps = tuple(sorted(taps, key=lambda t: t.stride))
        default = tuple(t.stride for t in self.available_taps if t.stride in DEFAULT_STRIDES)
        self.select_taps(default or tuple(t.stride for t in self.available_taps))
        if classifier is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = classifier
        else:
            self.classifier = None
        init_weights(self)

    def select_taps(self, strides: Sequence[int]) -> None:
        """Return the maps of these declared strides from now on (default: 16 and 32; ``(8, 16, 32)``
        adds the stride-8 map of the small-object head). Raises ``ValueError`` for an undeclared stride."""
        by_stride = {t.stride: t for t in self.available_taps}
        missing = [s for s in strides if s not in by_stride]
        if missing:
            raise ValueError(f"{type(self).__name__} declares taps at strides {sorted(by_stride)}, not {missing}")
        self.taps = tuple(by_stride[s] for s in sorted(strides))
        self.out_channels = [t.channels for t in self.taps]
        self.strides = [t.stride for t in self.taps]
        self._points: list[str | None] = [None] * (self.taps[-1].layer + 1)  # forward_taps stops at the last tap
        for t in self.taps:
            self._points[t.layer] = t.point

    def forward_taps(self, images: Tensor) -> list[Tensor]:
        """The selected tap maps of ``images (N, 3, H, W)``, finest first (stride 16, then 32 by default)."""
        check_images(images)
        x, outs = images, []
        for layer, point in zip(self.features, self._points):
            if point == "expansion":
                x, expanded = layer.forward_with_expansion(x)
                outs.append(expanded)
            else:
                x = layer(x)
                if point == "out":
                    outs.append(x)
        return outs

    def forward(self, images: Tensor) -> list[Tensor] | Tensor:
        """Tap maps (feature extractor) or logits ``(N, num_classes)`` (classifier)."""
        if self.classifier is None:
            return self.forward_taps(images)
        check_images(images)
        x = self.avgpool(self.features(images))
        return self.classifier(torch.flatten(x, 1))


def expansion_point(block: nn.Module, layers: nn.Sequential, has_expansion: bool, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``layers`` on ``x`` and return ``(output, output of layers[0])`` (the 1x1 expansion)."""
    if not has_expansion:
        raise ValueError(f"{type(block).__name__} has no expansion conv to tap")
    expanded = layers[0](x)
    y = expanded
    for m in list(layers)[1:]:
        y = m(y)
    return y, expanded
