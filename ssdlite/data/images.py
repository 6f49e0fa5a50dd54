"""Image geometry shared by training (``ssdlite.data.transforms``) and inference (``ssdlite.deploy.detector``).

Kept free of albumentations and torch so that the inference path imports only OpenCV and numpy.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

__all__ = ["ResizeGeometry", "resize_geometry", "resize_image"]


class ResizeGeometry(NamedTuple):
    """How an ``(h, w)`` image maps into the ``(H, W)`` network input.

    The image is resized to ``(new_h, new_w)`` and placed at the top-left; the rest (letterbox)
    is padding. A point ``(x, y)`` of the image goes to ``(x * scale_x, y * scale_y)``.
    """

    new_h: int
    new_w: int
    scale_x: float
    scale_y: float


def resize_geometry(orig_hw: tuple[int, int], input_hw: tuple[int, int], mode: str = "stretch") -> ResizeGeometry:
    """``"stretch"``: to exactly ``(H, W)``; ``"letterbox"``: scale ``s = min(H/h, W/w)``, size
    ``(round(h*s), round(w*s))``, padded bottom/right. Scales are new size / old size per axis."""
    h, w = orig_hw
    H, W = input_hw
    if h <= 0 or w <= 0:
        raise ValueError(f"cannot resize an empty image of size {h}x{w}")
    if mode == "stretch":
        new_h, new_w = H, W
    elif mode == "letterbox":
        s = min(H / h, W / w)
        new_h, new_w = min(H, max(1, round(h * s))), min(W, max(1, round(w * s)))
    else:
        raise ValueError(f"resize mode {mode!r} is not one of ['stretch', 'letterbox']")
    return ResizeGeometry(new_h, new_w, new_w / w, new_h / h)


def resize_image(image: np.ndarray, input_hw: tuple[int, int], mode: str = "stretch", pad_value: int = 114
                 ) -> tuple[np.ndarray, ResizeGeometry]:
    """Resize ``(h, w, 3)`` uint8 to ``(H, W, 3)`` (OpenCV bilinear, as torchvision's detection
    transform) by :func:`resize_geometry`; letterbox padding is ``pad_value``."""
    geo = resize_geometry(image.shape[:2], input_hw, mode)
    H, W = input_hw
    if (geo.new_h, geo.new_w) != image.shape[:2]:
        image = cv2.resize(image, (geo.new_w, geo.new_h), interpolation=cv2.INTER_LINEAR)
    if (geo.new_h, geo.new_w) != (H, W):
        image = cv2.copyMakeBorder(image, 0, H - geo.new_h, 0, W - geo.new_w, cv2.BORDER_CONSTANT,
                                   value=(pad_value,) * 3)
    return image, geo
