"""MobileNet V1 / V2 / V3 feature extractors for SSDLite, created by name.

>>> import backbones
>>> bb = backbones.create("mobilenet_v3_large", reduced_tail=True)
>>> bb.out_channels, bb.strides
([672, 480], [16, 32])
>>> [(t.stride, t.channels) for t in bb.available_taps]
[(8, 240), (16, 672), (32, 480)]
>>> backbones.create("mobilenet_v3_large", reduced_tail=True, out_strides=(8, 16, 32)).strides
[8, 16, 32]

Each family is a data table of layer tuples walked by one builder (``mobilenet_v1.py``,
``mobilenet_v2.py``, ``mobilenet_v3.py``); its taps are declared by the table (``available_taps``)
and ``out_strides`` picks those the extractor returns when it is built (``None``:
:data:`DEFAULT_OUT_STRIDES`, the papers' two SSDLite taps at strides 16 and 32).
``timm:<model>`` names wrap any timm network (optional dependency). ``@register(name)`` adds your own.
"""

from __future__ import annotations

from backbones._common import DEFAULT_OUT_STRIDES, MobileNet, Tap, make_divisible
from backbones._registry import BackboneInfo, backbone_info, create, list_backbones, register
from backbones._weights import load_weights, read_state_dict

# the built-in families register themselves, in this order
from backbones import mobilenet_v1, mobilenet_v2, mobilenet_v3  # noqa: E402,F401  isort: skip

__all__ = [
    "DEFAULT_OUT_STRIDES",
    "BackboneInfo",
    "MobileNet",
    "Tap",
    "backbone_info",
    "create",
    "list_backbones",
    "load_weights",
    "make_divisible",
    "read_state_dict",
    "register",
]
