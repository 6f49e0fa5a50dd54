"""Drawing detections on frames: boxes with class name and score in a stable colour per class,
and an FPS / latency overlay (OpenCV, BGR images, in place)."""

from __future__ import annotations

import colorsys
from typing import Any

import cv2
import numpy as np

__all__ = ["class_color", "draw_detections", "draw_overlay"]


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour for a class index (golden-ratio hue steps)."""
    hue = (int(label) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(image: np.ndarray, detections: Any, thickness: int = 2) -> np.ndarray:
    """Draw boxes with ``name score`` labels on a BGR image, in place; returns it.

    ``detections``: boxes (N, 4) xyxy pixels of ``image``, scores (N,), labels (N,), names.
    """
    h, w = image.shape[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(h, w) / 900)
    for box, score, label, name in zip(detections.boxes, detections.scores, detections.labels, detections.names):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        color = class_color(int(label))
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        text = f"{name} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(text, font, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(image, (x1, ty - th - base), (x1 + tw + 2, ty + 1), color, -1)
        cv2.putText(image, text, (x1 + 1, ty - base + 1), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def draw_overlay(image: np.ndarray, fps: float, latency_ms: float, extra: str = "") -> np.ndarray:
    """Write ``FPS`` and latency in the top-left corner of a BGR image, in place."""
    text = f"{fps:5.1f} FPS  {latency_ms:5.1f} ms" + (f"  {extra}" if extra else "")
    scale = max(0.5, image.shape[0] / 720)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (0, 0), (tw + 10, th + base + 10), (0, 0, 0), -1)
    cv2.putText(image, text, (5, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image
