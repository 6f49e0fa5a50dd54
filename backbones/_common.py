"""Pieces shared by every MobileNet family: channel rounding, tap declarations, the network shell.

A family module (``mobilenet_v1.py`` ...) holds its layer table as tuples and one builder that
walks the table into ``features`` (an ``nn.Sequential``) and declares its SSDLite taps as
:class:`Tap` records: the papers' two (strides 16 and 32, :data:`DEFAULT_OUT_STRIDES`) and a
stride-8 one for the optional small-object map. :class:`MobileNet` picks the taps of the requested
``out_strides`` once, at construction, then either returns their maps (detection feature
extractor, ``features`` cut right after the last of them, no classifier) or ImageNet logits.
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


# The papers' SSDLite taps (MobileNetV2 section 6.2, MobileNetV3 section 6.3): what a feature
# extractor returns when ``out_strides`` is not given. A family may declare more (stride 8).
DEFAULT_OUT_STRIDES: tuple[int, ...] = (16, 32)


def resolve_out_strides(name: str, out_strides: Sequence[int] | None) -> tuple[int, ...]:
    """``out_strides`` as a tuple (``None``: :data:`DEFAULT_OUT_STRIDES`); ``ValueError`` unless it is a
    non-empty, strictly increasing sequence of positive ints (finest first)."""
    if out_strides is None:
        return DEFAULT_OUT_STRIDES
    strides = tuple(out_strides) if isinstance(out_strides, (tuple, list)) else None
    if (
        not strides
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in strides)
        or any(a >= b for a, b in zip(strides, strides[1:]))
    ):
        raise ValueError(f"{name}: out_strides must be positive ints in increasing order (finest first), got {out_strides!r}")
    return strides


def check_declared(name: str, out_strides: Sequence[int], declared: Sequence[int]) -> None:
    """``ValueError`` naming the backbone and listing its declared strides when one of ``out_strides`` is not among them."""
    missing = [s for s in out_strides if s not in declared]
    if missing:
        listed = ", ".join(str(s) for s in sorted(set(declared)))
        raise ValueError(f"{name} has no tap at stride {', '.join(map(str, missing))}; it declares taps at strides {listed}")


@dataclass(frozen=True)
class Tap:
    """One SSDLite feature tap, declared by the family's table.

    ``layer`` indexes the network's ``features`` (a ``timm:`` backbone: its feature level);
    ``point`` is ``"out"`` (the layer's output) or ``"expansion"`` (the output of the layer's 1x1
    expansion conv + norm + activation, which the block must expose through
    ``forward_with_expansion``). ``stride`` is the output stride of the map and ``channels`` its
    channel count.
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

    ``taps`` are all the taps the family declares (kept, sorted by stride, as ``available_taps``);
    ``out_strides`` picks those returned, finest first (``None``: :data:`DEFAULT_OUT_STRIDES`, the
    papers' 16 and 32; ``(8, 16, 32)`` adds the small-object map). A stride not declared raises
    ``ValueError`` naming ``name`` and listing the declared strides.

    Feature extractor (``classifier is None``): ``features`` keeps the layers up to the last selected
    tap (``full_depth`` counts those of the whole network, whose weights files still load) and
    ``forward(images) -> [tap_16, tap_32]`` (one map per ``out_strides``), each
    ``(N, out_channels[i], ceil(H / strides[i]), ceil(W / strides[i]))``.
    Classifier: ``forward(images) -> logits (N, num_classes)``; ``forward_taps`` still gives the taps.
    Module names follow torchvision's ``mobilenet_v2`` / ``mobilenet_v3_*`` so their state dicts load as is.
    """

    def __init__(
        self,
        features: nn.Sequential,
        taps: Sequence[Tap],
        classifier: nn.Module | None = None,
        out_strides: Sequence[int] | None = None,
        *,
        name: str = "MobileNet",
    ) -> None:
        super().__init__()
        if not taps:
            raise ValueError(f"{name}: a MobileNet needs at least one tap")
        self.available_taps = tuple(sorted(taps, key=lambda t: t.stride))
        by_stride = {t.stride: t for t in self.available_taps}
        strides = resolve_out_strides(name, out_strides)
        check_declared(name, strides, list(by_stride))
        self.taps = tuple(by_stride[s] for s in strides)
        self.out_channels = [t.channels for t in self.taps]
        self.strides = list(strides)
        last = max(t.layer for t in self.taps)
        self._points: list[str | None] = [None] * (last + 1)  # forward_taps stops at the last selected tap
        for t in self.taps:
            self._points[t.layer] = t.point
        self.full_depth = len(features)  # layers of the whole network (a weights file may hold them all)
        if classifier is None:
            # the detection extractor: nothing after the last selected tap exists
            features = nn.Sequential(*list(features)[: last + 1])
        self.features = features
        if classifier is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = classifier
        else:
            self.classifier = None
        init_weights(self)

    def forward_taps(self, images: Tensor) -> list[Tensor]:
        """The selected tap maps of ``images (N, 3, H, W)``, finest first (``strides``: 16, then 32 by default)."""
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


class ExpandingResidual(nn.Module):
    """An inverted residual block: its layers (a ``nn.Sequential`` whose first layer is the 1x1
    expansion when ``has_expansion``), plus the input when ``use_res_connect``.

    The V2 and V3 blocks keep their layers under torchvision's attribute names (``conv``,
    ``block``) so torchvision's state dicts load as is, and return them from :meth:`layers`.
    """

    has_expansion: bool
    use_res_connect: bool

    def layers(self) -> nn.Sequential:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        y = self.layers()(x)
        return x + y if self.use_res_connect else y

    def forward_with_expansion(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(block output, expansion output (N, expanded_channels, H, W))``: the expansion is an SSDLite tap."""
        if not self.has_expansion:
            raise ValueError(f"{type(self).__name__} has no expansion conv to tap")
        layers = list(self.layers())
        expanded = y = layers[0](x)
        for m in layers[1:]:
            y = m(y)
        return (x + y if self.use_res_connect else y), expanded
