"""Named weights: one row each, plain data. Adding weights is adding a row.

Every URL and hash below was read from the publisher's own material, never guessed: torchvision
0.29.1's code (``torchvision/models/mobilenetv2.py``, ``mobilenetv3.py``,
``detection/ssdlite.py``) and, for MobileNetV1, the Hugging Face hub's file page of
``google/mobilenet_v1_1.0_224`` (pinned to a revision). torchvision names its files
``<name>-<first 8 hex digits of the SHA-256>.pth`` and ``torch.hub`` checks that prefix; we check
it the same way (the full digest where one is published), before a file is loaded. The
accuracies are the publishers' figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["WeightsEntry", "WEIGHTS", "ALIASES", "IMAGENET", "lookup", "imagenet_for"]

_TV = "torchvision 0.29.1"
_TV_LICENSE = "BSD-3-Clause (torchvision)"


@dataclass(frozen=True)
class WeightsEntry:
    """One published weights file.

    ``kind``: ``"detector"`` (a whole COCO detector, converted to our checkpoint format on first
    use) or ``"backbone"`` (ImageNet classification weights for ``model.backbone.weights``).
    ``sha256``: the full hex digest or the leading hex digits the publisher gives (at least 8).
    ``fits``: for a backbone, ``(backbone name, width_mult)``; for a detector, the converter that
    turns it into an ssdlite checkpoint (``"torchvision_ssdlite"``). ``layout``: how the file's
    tensors name our layers: ``"ours"`` (torchvision's names, which ours follow) or
    ``"in_order"`` (another naming, matched to ours tensor by tensor in order, each shape checked).
    """

    name: str
    kind: str
    url: str
    sha256: str
    source: str
    license: str
    fits: tuple
    accuracy: str
    size_mb: float
    note: str = ""
    layout: str = "ours"

    @property
    def filename(self) -> str:
        """The file name in the cache: the URL's last part, as torch.hub names it (hub files get the name and hash)."""
        last = self.url.rstrip("/").split("/")[-1]
        return last if "huggingface.co" not in self.url else f"{self.name}-{self.sha256[:8]}{Path(last).suffix}"


WEIGHTS: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        "ssdlite320_mobilenet_v3_large_coco", "detector",
        "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth", "a79551df",
        f"{_TV} SSDLite320_MobileNet_V3_Large_Weights.COCO_V1", _TV_LICENSE, ("torchvision_ssdlite",),
        "21.3 box AP (COCO val2017)", 13.418,
        "SSDLite + MobileNetV3-Large (reduced tail), 320x320, torchvision anchors, 90 COCO ids",
    ),
    WeightsEntry(
        "mobilenet_v2_imagenet_v1", "backbone", "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        "b0353104", f"{_TV} MobileNet_V2_Weights.IMAGENET1K_V1", _TV_LICENSE, ("mobilenet_v2", 1.0),
        "71.878 top-1 (ImageNet-1k)", 13.555,
    ),
    WeightsEntry(
        "mobilenet_v2_imagenet_v2", "backbone", "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth",
        "7ebf99e0", f"{_TV} MobileNet_V2_Weights.IMAGENET1K_V2", _TV_LICENSE, ("mobilenet_v2", 1.0),
        "72.154 top-1 (ImageNet-1k)", 13.598,
    ),
    WeightsEntry(
        "mobilenet_v3_large_imagenet_v1", "backbone", "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
        "8738ca79", f"{_TV} MobileNet_V3_Large_Weights.IMAGENET1K_V1", _TV_LICENSE, ("mobilenet_v3_large", 1.0),
        "74.042 top-1 (ImageNet-1k)", 21.114, "the backbone torchvision's ssdlite320 recipe starts from",
    ),
    WeightsEntry(
        "mobilenet_v3_large_imagenet_v2", "backbone", "https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth",
        "5c1a4163", f"{_TV} MobileNet_V3_Large_Weights.IMAGENET1K_V2", _TV_LICENSE, ("mobilenet_v3_large", 1.0),
        "75.274 top-1 (ImageNet-1k)", 21.107,
    ),
    WeightsEntry(
        "mobilenet_v3_small_imagenet_v1", "backbone", "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
        "047dcff4", f"{_TV} MobileNet_V3_Small_Weights.IMAGENET1K_V1", _TV_LICENSE, ("mobilenet_v3_small", 1.0),
        "67.668 top-1 (ImageNet-1k)", 9.829,
    ),
    WeightsEntry(
        "mobilenet_v1_imagenet_google", "backbone",
        "https://huggingface.co/google/mobilenet_v1_1.0_224/resolve/dd9bc45ff57d9492e00d48547587baf03f0cdade/pytorch_model.bin",
        "533912ba76c89fd19ae3572a74ed43965e514e6948c80939c7c3c72e12292f95",
        "Google's TF-slim mobilenet_v1_1.0_224 checkpoint as ported to PyTorch by Hugging Face "
        "(google/mobilenet_v1_1.0_224, revision dd9bc45f; SHA-256 from the hub's file page)",
        "Apache-2.0 (TF-slim checkpoint)", ("mobilenet_v1", 1.0),
        "70.6 top-1 (MobileNetV1 paper, Table 8)", 17.1,
        "the 1001-class TF layout; its convolutions are mapped onto ours in layer order", layout="in_order",
    ),
)

ALIASES: dict[str, str] = {"coco": "ssdlite320_mobilenet_v3_large_coco"}

# model.backbone.weights: imagenet -> the weights torchvision's detection recipes start from
IMAGENET: dict[str, str] = {
    "mobilenet_v1": "mobilenet_v1_imagenet_google",
    "mobilenet_v2": "mobilenet_v2_imagenet_v1",
    "mobilenet_v3_large": "mobilenet_v3_large_imagenet_v1",
    "mobilenet_v3_small": "mobilenet_v3_small_imagenet_v1",
}

_BY_NAME = {w.name: w for w in WEIGHTS}


def lookup(name: str) -> WeightsEntry | None:
    """The entry of a registry name or alias (``"coco"``); None for anything else (e.g. a file path)."""
    return _BY_NAME.get(ALIASES.get(name, name))


def imagenet_for(backbone: str, width_mult: float) -> WeightsEntry:
    """The ImageNet entry ``model.backbone.weights: imagenet`` means for this backbone; ValueError if none fits."""
    entry = _BY_NAME.get(IMAGENET.get(backbone, ""))
    if entry is None or abs(entry.fits[1] - width_mult) > 1e-9:
        have = ", ".join(f"{w.name} ({w.fits[0]} x{w.fits[1]})" for w in WEIGHTS if w.kind == "backbone")
        raise ValueError(
            f"model.backbone.weights=imagenet: no published ImageNet weights for {backbone} at width_mult={width_mult} "
            f"(published: {have}); train from scratch (weights: null) or give a file path"
        )
    return entry
