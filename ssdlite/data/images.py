"""Image reading and geometry shared by training and inference, in one place.

Reading: :func:`load_image` decodes a file to RGB with OpenCV (EXIF orientation, gray, RGBA,
CMYK and 16-bit handled), as :class:`ssdlite.data.coco.CocoDetection` and
``ssdlite.eval.predict`` read images. Geometry: :func:`resize_geometry` / :func:`resize_image`
map an image into the network input, for training (``ssdlite.data.transforms``) and inference
(``ssdlite.deploy.detector``).

Kept free of albumentations and torch so that the inference path imports only OpenCV and numpy.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import cv2
import numpy as np

__all__ = ["load_image", "read_image_size", "ResizeGeometry", "resize_geometry", "resize_image"]

# ----------------------------------------------------------------------------- reading

_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def _decode_bytes(buf: np.ndarray, ignore_orientation: bool = False) -> np.ndarray | None:
    """Encoded image bytes -> HxWx3 uint8 RGB, None if not decodable.

    IMREAD_COLOR applies the EXIF orientation (unless ``ignore_orientation``), turns
    gray/RGBA/CMYK into 3 channels and 16-bit into 8-bit. OpenCV >= 4.10 decodes straight to RGB.
    """
    if buf.size == 0:
        return None
    extra = cv2.IMREAD_IGNORE_ORIENTATION if ignore_orientation else 0
    try:
        if _IMREAD_RGB is not None:
            img = cv2.imdecode(buf, _IMREAD_RGB | extra)
        else:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR | extra)
            if img is not None:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    except cv2.error:
        return None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.size == 0:
        return None
    return img


def _looks_decodable(path: str | os.PathLike) -> bool:
    """Cheap check without decoding: the file is not empty and starts like an image OpenCV reads.

    ``OSError`` (``FileNotFoundError`` for a missing file) when it cannot be opened.
    """
    with open(path, "rb") as f:
        if not f.read(1):
            return False
    return bool(cv2.haveImageReader(str(path)))


def _truncation(path: str | os.PathLike) -> str | None:
    """Why a JPEG or PNG file is cut short, found without decoding it (None when it ends as it should).

    A JPEG must end with its end-of-image marker ``FF D9`` and a PNG with its ``IEND`` chunk (what
    Ultralytics checks); a few bytes after the marker are allowed (some cameras append padding).
    """
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    return _truncation_of(head, tail)


_TAIL = 4096  # bytes at the end of a file searched for its end marker


def _truncation_of(head: bytes, tail: bytes) -> str | None:
    if head[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        return "truncated JPEG: no end-of-image marker (FF D9) at its end"
    if head[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "truncated PNG: no IEND chunk at its end"
    return None


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(h, w)`` of an image file as :func:`load_image` returns it (EXIF rotation applied), read from
    its header only. Raises ``ValueError`` naming the file when it cannot be read."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
        return int(h), int(w)
    except ImportError:  # no Pillow: decode the file
        return load_image(path).shape[:2]  # type: ignore[return-value]
    except FileNotFoundError:
        raise ValueError(f"image file not found: {path}") from None
    except Exception as e:  # Pillow raises many kinds for a file it cannot read
        raise ValueError(f"cannot read the size of image file {path}: {e}") from None


def _stored_orientation(buf: np.ndarray, img: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """The image without its EXIF rotation when that, and not ``img`` (rotated), has ``size`` (h, w)."""
    h, w = size
    if h > 0 and h != w and img.shape[:2] == (w, h):
        raw = _decode_bytes(buf, ignore_orientation=True)
        if raw is not None and raw.shape[:2] == (h, w):
            return raw
    return None


def load_image(path: str | os.PathLike, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB with OpenCV.

    EXIF orientation is applied; grayscale, RGBA, CMYK and 16-bit files become 8-bit RGB.
    ``expected_size``: the ``(h, w)`` the annotations give (a COCO json's height, width); when
    it is the file's size before its EXIF rotation and not after, the boxes were drawn on the
    stored pixels and the rotation is not applied (as :class:`ssdlite.data.coco.CocoDetection`
    does for training).
    Raises ``ValueError`` naming the file when it is missing, unreadable or not an image.
    """
    try:
        buf = np.fromfile(path, dtype=np.uint8)  # also handles non-ASCII paths on every OS
    except FileNotFoundError:
        raise ValueError(f"image file not found: {path}") from None
    except OSError as e:
        raise ValueError(f"cannot read image file {path}: {e.strerror or e}") from None
    img = _decode_bytes(buf)
    if img is None:
        raise ValueError(f"cannot decode image file {path}: empty, truncated or not a supported image format")
    if expected_size is not None:
        raw = _stored_orientation(buf, img, (int(expected_size[0]), int(expected_size[1])))
        if raw is not None:
            return raw
    return img


# ----------------------------------------------------------------------------- geometry


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
