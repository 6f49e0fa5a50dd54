"""Weights by name: the registry of published weights (plain data rows) and a careful downloader.

``ssdlite weights`` lists the registry; a name (or the alias ``coco``) is accepted wherever a
checkpoint is (``--checkpoint coco``, ``Detector.from_checkpoint("coco")``) and in
``model.backbone.weights`` (``imagenet`` or a full name). Imports no torch.
"""

from __future__ import annotations

from ssdlite._lazy import lazy_attributes

_LAZY = {
    "WEIGHTS": "ssdlite.weights.registry",
    "WeightsEntry": "ssdlite.weights.registry",
    "lookup": "ssdlite.weights.registry",
    "imagenet_for": "ssdlite.weights.registry",
    "fetch": "ssdlite.weights.download",
    "cache_dir": "ssdlite.weights.download",
    "WeightsUnavailable": "ssdlite.weights.download",
    "WeightsHashError": "ssdlite.weights.download",
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
