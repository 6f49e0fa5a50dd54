"""The demo's video step: a generated video of moving shapes (:func:`make_shapes_video`) and
``ssdlite detect`` run on it in its own process (:func:`detect_video`)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

__all__ = ["make_shapes_video", "detect_video"]


def make_shapes_video(path: str | os.PathLike, frames: int = 150, size: int = 320, seed: int = 0, fps: float = 25.0,
                      classes: Sequence[str] | None = None, num_shapes: tuple[int, int] = (3, 7)) -> Path:
    """Write a short ``.mp4`` (``size`` x ``size``, ``mp4v``) of shapes moving over a textured background.

    The shapes, background and pixel noise come from :mod:`ssdlite.data.synthetic` (the training
    data's look): ``num_shapes`` shapes of ``classes`` (default: the dataset's classes), longer side
    24-120 px at 320, each gliding at a constant velocity, bouncing off the borders and slowly
    rotating. Deterministic given ``seed``. Returns ``path``.
    """
    from ssdlite.data import synthetic as syn

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if size < 64:
        raise ValueError(f"size must be >= 64 px, got {size}")
    classes = tuple(classes or syn.DEFAULT_CLASSES)
    unknown = [c for c in classes if c not in syn.SHAPES]
    if unknown:
        raise ValueError(f"unknown shape classes {unknown}; choose from {list(syn.SHAPES)}")
    rng = np.random.default_rng([seed, 7])
    background = syn._background(size, rng)
    shapes = _moving_shapes(classes, size, num_shapes, background, rng)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (size, size))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path} (OpenCV has no mp4v encoder?)")
    try:
        for _ in range(frames):
            img = _draw_and_move(background, shapes, size)
            img = syn._add_noise(img, rng)
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def _moving_shapes(classes: Sequence[str], size: int, num_shapes: tuple[int, int], background: np.ndarray,
                   rng: np.random.Generator) -> list[dict[str, Any]]:
    """``num_shapes`` random shapes of ``classes``: unit polygon, half size, centre, velocity, angle,
    spin and a colour that stands out from ``background``."""
    from ssdlite.data import synthetic as syn

    scale = size / 320.0
    shapes = []
    for _ in range(int(rng.integers(num_shapes[0], num_shapes[1] + 1))):
        unit = syn._unit_polygon(classes[int(rng.integers(len(classes)))], rng)
        unit = unit - (unit.min(0) + unit.max(0)) / 2
        unit = unit / np.abs(unit).max()  # longer half-extent 1 (before rotation)
        half = rng.uniform(12, 60) * scale
        center = rng.uniform(half, size - half, 2)
        speed = rng.uniform(1.0, 3.5) * scale
        angle = rng.uniform(0, 2 * np.pi)
        colour = syn._pick_colour(background.reshape(-1, 3).mean(0), rng)
        shapes.append({"unit": unit, "half": half, "center": center, "velocity": speed * np.array([math.cos(angle), math.sin(angle)]),
                       "angle": 0.0, "spin": rng.uniform(-0.03, 0.03), "colour": colour})
    return shapes


def _draw_and_move(background: np.ndarray, shapes: list[dict[str, Any]], size: int) -> np.ndarray:
    """One RGB frame: ``shapes`` drawn over a copy of ``background``, each then moved one step."""
    from ssdlite.data import synthetic as syn

    img = background.copy()
    for s in shapes:
        pts = syn._rotate(s["unit"], s["angle"]) * s["half"] + s["center"]
        ipts = np.round(pts * (1 << syn._SUB)).astype(np.int32)[None]
        cv2.fillPoly(img, ipts, s["colour"], cv2.LINE_AA, syn._SUB)
        # move, bouncing off the borders (the rotated extent stays inside)
        s["center"] = s["center"] + s["velocity"]
        s["angle"] += s["spin"]
        for axis in (0, 1):
            if not s["half"] <= s["center"][axis] <= size - s["half"]:
                s["velocity"][axis] = -s["velocity"][axis]
                s["center"][axis] = float(np.clip(s["center"][axis], s["half"], size - s["half"]))
    return img


def detect_video(onnx_path: Path, video: Path, save: Path, json_path: Path, threads: int | None) -> tuple[float | None, str]:
    """Run ``ssdlite detect`` (tools/detect.py) in its own process; returns (FPS, its output)."""
    cmd = [sys.executable, "-m", "ssdlite", "detect", "--source", str(video), "--checkpoint", str(onnx_path),
           "--save", str(save), "--json", str(json_path)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise RuntimeError(f"detection on {video} failed (exit {proc.returncode}): {output[-800:]}")
    m = re.search(r"FPS:\s*([0-9.]+)", proc.stdout)
    return (float(m.group(1)) if m else None), output
