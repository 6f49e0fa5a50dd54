"""Backbones by name: ``register``, ``create``, ``list_backbones``, ``backbone_info``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from torch import Tensor, nn

from backbones._common import DEFAULT_OUT_STRIDES, NormLayer, check_declared, check_width, resolve_out_strides

TIMM_PREFIX = "timm:"

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class BackboneInfo:
    """What ``create`` accepts for one name: ``widths`` (``None``: any alpha > 0) and ``reduced_tail``."""

    name: str
    widths: tuple[float, ...] | None
    reduced_tail: bool
    builder: Builder


_REGISTRY: dict[str, BackboneInfo] = {}


def register(name: str, *, widths: Sequence[float] | None = None, reduced_tail: bool = False) -> Callable[[Builder], Builder]:
    """Decorator adding a builder under ``name``.

    The builder is called as ``builder(width_mult=..., reduced_tail=..., num_classes=..., norm_layer=...,
    out_strides=...)``. With ``num_classes=None`` it must return a module whose ``forward(images
    (N, 3, H, W))`` returns the list of tap maps and which declares ``out_channels: list[int]`` and
    ``strides == list(out_strides)`` (``out_strides=None``: :data:`DEFAULT_OUT_STRIDES`, ``[16, 32]``);
    it may also declare ``available_taps`` (records with ``.stride`` and ``.channels``: every tap it
    can give). ``widths`` lists the accepted width multipliers (``None``: any > 0); ``reduced_tail``
    says whether ``reduced_tail=True`` is meaningful.

    >>> @register("my_net", widths=(1.0,))
    ... def my_net(*, width_mult, reduced_tail, num_classes, norm_layer, out_strides): ...
    """
    if not isinstance(name, str) or not name or name.startswith(TIMM_PREFIX):
        raise ValueError(f"backbone names must be non-empty and must not start with {TIMM_PREFIX!r}, got {name!r}")

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = BackboneInfo(name, None if widths is None else tuple(widths), reduced_tail, builder)
        return builder

    return decorator


def list_backbones() -> list[str]:
    """Registered names in registration order (``timm:<model>`` names are accepted too, not listed)."""
    return list(_REGISTRY)


def backbone_info(name: str) -> BackboneInfo:
    """The :class:`BackboneInfo` of a registered name; ``ValueError`` listing valid names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(_REGISTRY)} or timm:<model>")
    return _REGISTRY[name]


def create(
    name: str,
    *,
    width_mult: float = 1.0,
    reduced_tail: bool = False,
    weights: str | Path | Mapping[str, Tensor] | None = None,
    num_classes: int | None = None,
    norm_layer: NormLayer | None = None,
    out_strides: Sequence[int] | None = None,
    partial_weights: bool = False,
) -> nn.Module:
    """Build a backbone by name.

    ``num_classes=None``: the SSDLite feature extractor, ``forward(images (N, 3, H, W)) -> one map
    (N, out_channels[i], H / strides[i], W / strides[i]) per stride of ``out_strides``, finest first
    (sizes rounded up), with ``.out_channels``, ``.strides == list(out_strides)`` and (MobileNets,
    ``timm:``) ``.available_taps``, every tap the backbone declares. ``out_strides=None``: the
    papers' two taps, :data:`DEFAULT_OUT_STRIDES` ``(16, 32)``; the MobileNets also declare a
    stride-8 tap (the expansion output of the block that leaves stride 8; conv5 for V1), so
    ``(8, 16, 32)`` adds SSDLite's optional small-object map first. ``num_classes=int``: the whole
    classification network, ``forward(images) -> logits (N, num_classes)`` (no ``out_strides``).

    ``weights``: path of a state-dict file (torchvision ImageNet ``mobilenet_v2`` /
    ``mobilenet_v3_large`` / ``mobilenet_v3_small``, or one saved from these modules); a feature
    extractor ignores the tensors of the classifier and of the layers after its last tap; a state
    dict already read is accepted too. ``partial_weights=True`` loads every tensor that fits and
    keeps the fresh initialization of the others (a reduced tail from full-size ImageNet weights):
    their keys are listed in the model's ``from_scratch`` attribute (empty when all fitted).
    ``norm_layer(num_channels)`` replaces the architecture's default batch norm. Raises
    ``ValueError`` for an unknown name, a width the architecture does not define, a stride it does
    not declare (listing those it does), or weights that do not fit.
    """
    if out_strides is not None:
        if num_classes is not None:
            raise ValueError(f"{name}: out_strides applies to the feature extractor (num_classes=None) only")
        out_strides = resolve_out_strides(name, out_strides)
    if isinstance(name, str) and name.startswith(TIMM_PREFIX):
        from backbones._timm import create_timm

        model = create_timm(name[len(TIMM_PREFIX) :], width_mult=width_mult, reduced_tail=reduced_tail,
                            num_classes=num_classes, norm_layer=norm_layer, out_strides=out_strides)
    else:
        info = backbone_info(name)
        if reduced_tail and not info.reduced_tail:
            raise ValueError(f"{name}: reduced_tail=True is not defined for this backbone")
        check_width(name, width_mult, info.widths)
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"{name}: num_classes must be a positive int or None, got {num_classes!r}")
        model = info.builder(width_mult=width_mult, reduced_tail=reduced_tail, num_classes=num_classes,
                             norm_layer=norm_layer, out_strides=out_strides)
    if num_classes is None:
        _check_extractor(name, model, list(out_strides or DEFAULT_OUT_STRIDES))
    if weights is not None:
        from backbones._weights import load_weights

        description = _describe(name, width_mult, reduced_tail, num_classes)
        body = getattr(model, "body", None) if name.startswith(TIMM_PREFIX) and num_classes is None else None
        if body is not None:  # timm features_only: timm's own key names, its head tensors unused
            model.from_scratch = load_weights(body, weights, description, ignore_unexpected=True, partial=partial_weights)
        else:
            model.from_scratch = load_weights(model, weights, description, partial=partial_weights)
    return model


def _check_extractor(name: str, model: nn.Module, expected: list[int]) -> None:
    channels, strides = getattr(model, "out_channels", None), getattr(model, "strides", None)
    if not isinstance(channels, list) or not isinstance(strides, list) or len(channels) != len(strides):
        raise ValueError(f"backbone {name!r} must declare out_channels and strides as lists of equal length")
    if strides != expected:
        declared = [t.stride for t in getattr(model, "available_taps", ())] or strides
        check_declared(f"backbone {name!r}", expected, declared)  # names the strides it lacks
        raise ValueError(f"backbone {name!r} returns maps at strides {strides}, not the requested {expected}")


def _describe(name: str, width_mult: float, reduced_tail: bool, num_classes: int | None) -> str:
    what = "feature extractor" if num_classes is None else f"classifier, {num_classes} classes"
    return f"{name}(width_mult={width_mult}, reduced_tail={reduced_tail}; {what})"
