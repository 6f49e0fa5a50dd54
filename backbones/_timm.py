"""``timm:<model>`` backbones: any timm network's ``features_only`` maps at the requested strides.

timm is optional (``pip install ssdlite[timm]``). The maps are chosen from the model's declared
``feature_info`` (the last feature level at each reduction of ``out_strides``, by default 16 and
32), never by a dummy forward; timm builds the model with those ``out_indices`` only.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from backbones._common import NormLayer, Tap, check_declared, check_images, resolve_out_strides


class TimmNotInstalledError(ImportError, ValueError):
    """timm is needed for a ``timm:`` backbone and is not installed (an ImportError and a ValueError)."""


def _import_timm():
    try:
        import timm
    except ImportError as e:
        raise TimmNotInstalledError(
            "timm backbones need the optional timm package: pip install ssdlite[timm]  (or: pip install timm)"
        ) from e
    return timm


class TimmFeatures(nn.Module):
    """timm ``features_only`` model returning one map per selected stride (16 and 32 by default).

    ``forward(images (N, 3, H, W)) -> [(N, out_channels[i], H / strides[i], W / strides[i]), ...]``.
    ``available_taps``: the last feature level at each reduction timm declares (``Tap.layer`` is
    the level's index), whichever were selected.
    """

    def __init__(self, model: nn.Module, available_taps: Sequence[Tap] = ()) -> None:
        super().__init__()
        self.body = model
        self.out_channels = list(model.feature_info.channels())
        self.strides = list(model.feature_info.reduction())
        self.available_taps = tuple(available_taps)

    def forward(self, images: Tensor) -> list[Tensor]:
        check_images(images)
        return list(self.body(images))


def _declared_taps(reductions: list[int], channels: list[int], indices: list[int]) -> tuple[Tap, ...]:
    """The last feature level at each reduction, finest first, as :class:`Tap` records."""
    last = {r: (i, c) for i, r, c in zip(indices, reductions, channels)}  # later levels overwrite earlier ones
    return tuple(Tap(layer=i, point="out", channels=c, stride=r) for r, (i, c) in sorted(last.items()))


def _pick_levels(model_name: str, taps: Sequence[Tap], strides: Sequence[int]) -> tuple[int, ...]:
    """Feature indices of the declared taps at ``strides``; ``ValueError`` listing the declared strides otherwise."""
    by_stride = {t.stride: t.layer for t in taps}
    check_declared(f"timm:{model_name}", strides, list(by_stride))
    return tuple(by_stride[s] for s in strides)


def create_timm(
    model_name: str,
    *,
    width_mult: float = 1.0,
    reduced_tail: bool = False,
    num_classes: int | None = None,
    norm_layer: NormLayer | None = None,
    out_strides: Sequence[int] | None = None,
) -> nn.Module:
    """A timm model: feature extractor at ``out_strides`` (``num_classes=None``; default 16 and 32) or the whole classifier."""
    timm = _import_timm()
    if width_mult != 1.0 or reduced_tail:
        raise ValueError(f"timm:{model_name}: width_mult and reduced_tail do not apply; pick a timm variant instead")
    kwargs = {} if norm_layer is None else {"norm_layer": norm_layer}

    def make(**more):
        try:
            return timm.create_model(model_name, pretrained=False, **kwargs, **more)
        except RuntimeError as e:  # timm: "Unknown model (...)"
            raise ValueError(f"timm:{model_name}: {e}; see timm.list_models()") from e

    if num_classes is not None:
        return make(num_classes=num_classes)
    info = make(features_only=True).feature_info
    taps = _declared_taps(list(info.reduction()), list(info.channels()), list(info.out_indices))
    levels = _pick_levels(model_name, taps, resolve_out_strides(f"timm:{model_name}", out_strides))
    return TimmFeatures(make(features_only=True, out_indices=levels), taps)
