"""SSDLite object detection with MobileNet V1/V2/V3 backbones.

Public API (see README): ``load_config``, ``build_model``, ``Detector``, ``Detections``.
Heavy submodules are imported lazily so that ``import ssdlite`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from ssdlite.config import Config, ConfigError, load_config

__version__ = "0.1.0"

_LAZY = {
    "build_model": "ssdlite.model",
    "SSDLite": "ssdlite.model",
    "Detector": "ssdlite.deploy.detector",
    "Detections": "ssdlite.deploy.detector",
}

__all__ = ["Config", "ConfigError", "load_config", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssdlite' has no attribute {name!r}")
