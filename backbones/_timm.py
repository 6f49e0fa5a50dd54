"""``timm:<model>`` backbones: any timm network's ``features_only`` maps at strides 16 and 32.

timm is optional (``pip install ssdlite[timm]``). The two maps are chosen from the model's declared
``feature_info`` (the last feature level at reduction 16 and the last at reduction 32), never by a
dummy forward.
"""

from __future__ import annotations

from torch import Tensor, nn

from backbones._common import NormLayer, check_images


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
    """timm ``features_only`` model returning the stride-16 and stride-32 maps (stride 8 first when asked).

    ``forward(images (N, 3, H, W)) -> [(N, out_channels[0], H/16, W/16), (N, out_channels[1], H/32, W/32)]``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.body = model
        self.out_channels = list(model.feature_info.channels())
        self.strides = list(model.feature_info.reduction())

    def forward(self, images: Tensor) -> list[Tensor]:
        check_images(images)
        return list(self.body(images))


def _pick_levels(model_name: str, reductions: list[int], indices: list[int], strides: tuple[int, ...] = (16, 32)) -> tuple[int, ...]:
    """Feature indices of the last level at each reduction of ``strides``."""
    chosen = []
    for r in strides:
        at = [i for i, red in zip(indices, reductions) if red == r]
        if not at:
            raise ValueError(f"timm model {model_name!r} has no feature level at stride {r} (its strides: {reductions})")
        chosen.append(at[-1])
    return tuple(chosen)


def create_timm(
    model_name: str,
    *,
    width_mult: float = 1.0,
    reduced_tail: bool = False,
    num_classes: int | None = None,
    norm_layer: NormLayer | None = None,
    stride8: bool = False,
) -> nn.Module:
    """A timm model: stride-16/32 (and 8 with ``stride8``) feature extractor (``num_classes=None``) or the whole classifier."""
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
    levels = _pick_levels(model_name, list(info.reduction()), list(info.out_indices), (8, 16, 32) if stride8 else (16, 32))
    return TimmFeatures(make(features_only=True, out_indices=levels))
