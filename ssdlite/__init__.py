"""SSDLite object detection with MobileNet V1/V2/V3 backbones.

Public API (see README): ``load_config``, ``build_model``, ``Detector``, ``Detections``.
Heavy submodules are imported lazily so that ``import ssdlite`` stays cheap.
"""

from __future__ import annotations

from ssdlite._lazy import lazy_attributes
from ssdlite.config import Config, ConfigError, load_config

__version__ = "0.1.0"

_LAZY = {
    "build_model": "ssdlite.model",
    "SSDLite": "ssdlite.model",
    "Detector": "ssdlite.deploy.detector",
    "Detections": "ssdlite.deploy.detector",
}

__all__ = ["Config", "ConfigError", "load_config", *_LAZY]
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
