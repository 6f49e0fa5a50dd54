"""Synthetic shapes dataset in COCO format: the embedded demo data.

Every image has 1-8 filled shapes (circle, rectangle, triangle, star, ... ) of random colours
and sizes (longer side 16-160 px at 320, scaled with the image size) on a textured, noisy
background (smooth colour noise, a gradient, random lines, pixel noise). Shapes may overlap,
but a placement that would hide more than 60% of an earlier shape (or shrink its visible
extent below the minimum size) is redrawn, so every label stays true. Boxes, areas and
polygons describe the *visible* part of each shape.

The output is deterministic: image ``k`` of a split is drawn from its own random generator
seeded by ``(seed, split, k)``, so the same seed gives byte-identical json and identical JPEGs,
with or without worker processes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

__all__ = ["SHAPES", "DEFAULT_CLASSES", "make_shapes_dataset", "render_image"]

DEFAULT_CLASSES = ("circle", "rectangle", "triangle", "star")
SHAPES = ("circle", "rectangle", "triangle", "star", "cross", "ellipse")

MIN_SIZE, MAX_SIZE = 16, 160  # longer box side in px at a 320 image
MAX_OBJECTS = 8
MAX_OCCLUDED = 0.6  # a shape keeps at least 40% of its pixels visible
_SPLITS = {"train": 0, "val": 1}
_SUB = 4  # fixed-point bits for sub-pixel polygon drawing
_JPEG_QUALITY = 92


# ----------------------------------------------------------------------------- shapes


def _unit_polygon(shape: str, rng: np.random.Generator) -> np.ndarray:
    """(P, 2) vertices of a shape around the origin, before scaling (any size)."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "ellipse":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), rng.uniform(0.35, 0.6) * np.sin(t)], 1)
        return _rotate(pts, rng.uniform(0, np.pi))
    if shape == "rectangle":
        a = rng.uniform(0.35, 1.0)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]], dtype=np.float64)
        if rng.random() < 0.5:
            pts = pts[:, ::-1]
        return _rotate(pts, rng.uniform(-0.25, 0.25))  # roughly axis-aligned
    if shape == "triangle":
        t = np.pi / 2 + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
        return _rotate(np.stack([np.cos(t), np.sin(t)], 1), rng.uniform(0, 2 * np.pi))
    if shape == "star":
        t = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        return _rotate(np.stack([r * np.cos(t), r * np.sin(t)], 1), rng.uniform(0, 2 * np.pi / 5))
    if shape == "cross":
        w = rng.uniform(0.25, 0.4)
        pts = np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1], [-w, w], [-1, w],
                        [-1, -w], [-w, -w]], dtype=np.float64)
        return _rotate(pts, rng.uniform(0, np.pi / 2))
    raise ValueError(f"unknown shape {shape!r}; choose from {list(SHAPES)}")


def _rotate(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _place(unit: np.ndarray, size: float, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Scale ``unit`` so its longer extent is ``size`` px and put it fully inside the image."""
    lo, hi = unit.min(0), unit.max(0)
    pts = (unit - lo) * (size / (hi - lo).max())
    ext = pts.max(0)
    offset = rng.uniform(0, np.maximum(image_size - ext - 1, 0))
    return pts + offset


# ----------------------------------------------------------------------------- background


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Textured noisy background: smooth colour noise at two scales, a gradient and lines.

    The smooth parts are built at a quarter of the size and upsampled once (fast).
    """
    low = max(size // 4, 8)
    coarse = rng.random((size // 40 + 2, size // 40 + 2, 3), dtype=np.float32)
    fine = rng.random((size // 10 + 2, size // 10 + 2, 3), dtype=np.float32)
    img = cv2.resize(coarse, (low, low), interpolation=cv2.INTER_CUBIC) * np.float32(rng.uniform(90, 170))
    img += cv2.resize(fine, (low, low), interpolation=cv2.INTER_LINEAR) * np.float32(rng.uniform(20, 60))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-1.0, 1.0, low, dtype=np.float32)
    grad = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
    img += grad[:, :, None] * rng.uniform(-50, 50, 3).astype(np.float32)
    img += np.float32(rng.uniform(-20, 60))
    img = cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(4, 14))):
        p1 = tuple(int(v) for v in rng.integers(-size // 4, size + size // 4, 2))
        p2 = tuple(int(v) for v in rng.integers(-size // 4, size + size // 4, 2))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.line(img, p1, p2, color, int(rng.integers(1, 4)), cv2.LINE_AA)
    return img


def _add_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform pixel noise in [-16, 15] with saturation (random bytes >> 3, OpenCV saturating ops)."""
    noise = np.frombuffer(rng.bytes(img.size), dtype=np.uint8).reshape(img.shape) >> 3
    return cv2.subtract(cv2.add(img, noise), np.full_like(img, 16))


def _pick_colour(under: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    """A colour far from the mean colour ``under`` the shape (so the shape stays visible)."""
    best, best_d = None, -1.0
    for _ in range(12):
        c = rng.integers(0, 256, 3)
        d = float(np.abs(c - under).sum())
        if d > best_d:
            best, best_d = c, d
        if d >= 180:
            break
    return tuple(int(v) for v in best)


# ----------------------------------------------------------------------------- one image


def render_image(rng: np.random.Generator, size: int = 320, classes: Sequence[str] = DEFAULT_CLASSES
                 ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one image: ``(size, size, 3)`` uint8 RGB and its objects.

    Each object: ``{"label": index into classes, "bbox": [x, y, w, h] of the visible pixels,
    "area": visible pixels, "full_area": pixels before occlusion, "polygons": [[x1, y1, x2, y2,
    ...], ...] of the visible region}``.
    """
    scale = size / 320.0
    min_size, max_size = MIN_SIZE * scale, MAX_SIZE * scale
    img = _background(size, rng)
    owner = np.zeros((size, size), dtype=np.uint8)  # 0: background, k: object k (1-based), topmost
    full_area: list[int] = []
    visible: list[int] = []
    labels: list[int] = []
    extents: list[tuple[int, int, int, int]] = []  # drawn region of each shape (x0, y0, x1, y1)
    target = int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(target):
        label = int(rng.integers(len(classes)))
        for _attempt in range(10):
            side = float(rng.uniform(min_size, max_size - 1))  # pixel extent <= side + 1
            pts = _place(_unit_polygon(classes[label], rng), side, size, rng)
            ipts = np.round(pts * (1 << _SUB)).astype(np.int32)[None]
            x0, y0 = np.floor(pts.min(0)).astype(int)
            x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
            mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
            cv2.fillPoly(mask, ipts - np.array([x0, y0]) * (1 << _SUB), 1, cv2.LINE_8, _SUB)
            m = mask.astype(bool)
            area = int(m.sum())
            if area < 0.2 * min_size * min_size:
                continue
            region = owner[y0:y1, x0:x1]
            hidden = np.bincount(region[m], minlength=len(labels) + 1)[1:]
            if not _occlusion_ok(owner, m, hidden, visible, full_area, extents, (x0, y0), min_size):
                continue
            under = img[y0:y1, x0:x1][m].mean(0)
            cv2.fillPoly(img, ipts, _pick_colour(under, rng), cv2.LINE_AA, _SUB)
            region[m] = len(labels) + 1
            for k in np.flatnonzero(hidden).tolist():
                visible[k] -= int(hidden[k])
            labels.append(label)
            full_area.append(area)
            extents.append((x0, y0, x1, y1))
            visible.append(area)
            break
    # pixel noise over everything, shapes included
    img = _add_noise(img, rng)
    objects = [_describe(owner, k + 1, labels[k], extents[k]) for k in range(len(labels))]
    for o, full in zip(objects, full_area):
        o["full_area"] = float(full)
    return img, objects


def _occlusion_ok(owner: np.ndarray, m: np.ndarray, hidden: np.ndarray, visible: list[int], full_area: list[int],
                  extents: list[tuple[int, int, int, int]], origin: tuple[int, int], min_size: float) -> bool:
    """Would covering ``m`` (placed at ``origin``) keep every earlier shape >= 40% visible and
    its visible extent >= ``min_size``?"""
    ox, oy = origin
    for k in np.flatnonzero(hidden).tolist():
        if visible[k] - hidden[k] < (1.0 - MAX_OCCLUDED) * full_area[k]:
            return False
        x0, y0, x1, y1 = extents[k]
        still = owner[y0:y1, x0:x1] == k + 1
        # the part of m inside shape k's extent
        ix0, iy0 = max(x0, ox), max(y0, oy)
        ix1, iy1 = min(x1, ox + m.shape[1]), min(y1, oy + m.shape[0])
        still[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] &= ~m[iy0 - oy:iy1 - oy, ix0 - ox:ix1 - ox]
        cols, rows = np.flatnonzero(still.any(0)), np.flatnonzero(still.any(1))
        if max(cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1) < min_size:
            return False
    return True


def _describe(owner: np.ndarray, k: int, label: int, extent: tuple[int, int, int, int]) -> dict[str, Any]:
    ex0, ey0, ex1, ey1 = extent
    mask = (owner[ey0:ey1, ex0:ex1] == k).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(mask)
    contours, _ = cv2.findContours(mask[y:y + h, x:x + w], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(x + ex0, y + ey0))
    x, y = x + ex0, y + ey0
    polygons = []
    for c in contours:
        c = cv2.approxPolyDP(c, 0.75, True).reshape(-1, 2)
        if len(c) >= 3:
            polygons.append([float(v) for v in (c + 0.5).reshape(-1)])
    return {"label": label, "bbox": [float(x), float(y), float(w), float(h)], "area": float(mask.sum()), "polygons": polygons}


# ----------------------------------------------------------------------------- dataset


def _render_file(job: tuple[int, int, int, int, tuple[str, ...], str]) -> list[dict[str, Any]]:
    seed, split_code, index, size, classes, path = job
    rng = np.random.default_rng([seed, split_code, index])
    img, objects = render_image(rng, size, classes)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise OSError(f"cannot encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
    return objects


def _write_split(out_dir: Path, split: str, n: int, size: int, seed: int, classes: tuple[str, ...], workers: int) -> Path:
    img_dir = out_dir / split
    img_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{k:06d}.jpg" for k in range(n)]
    jobs = [(seed, _SPLITS[split], k, size, classes, str(img_dir / names[k])) for k in range(n)]
    if workers > 1 and n > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_render_file, jobs, chunksize=max(1, n // (8 * workers)))
    else:
        results = [_render_file(j) for j in jobs]
    images, annotations = [], []
    for k, objects in enumerate(results):
        images.append({"id": k + 1, "file_name": names[k], "width": size, "height": size})
        for o in objects:
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": k + 1,
                "category_id": o["label"] + 1,
                "bbox": o["bbox"],
                "area": o["area"],
                "iscrowd": 0,
                "segmentation": o["polygons"],
            })
    coco = {
        "info": {"description": f"ssdlite synthetic shapes, split {split}, seed {seed}", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(classes)],
    }
    ann_path = out_dir / "annotations" / f"instances_{split}.json"
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ann_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(coco, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, ann_path)
    return ann_path


def make_shapes_dataset(
    out_dir: str | os.PathLike,
    num_train: int,
    num_val: int,
    size: int = 320,
    seed: int = 0,
    classes: Sequence[str] = DEFAULT_CLASSES,
    workers: int = 0,
) -> dict[str, Path]:
    """Write ``out_dir/{train,val}/NNNNNN.jpg`` and ``out_dir/annotations/instances_{train,val}.json``.

    COCO format: category ids 1..K in ``classes`` order, image ids 1..N, ``iscrowd`` 0, ``area``
    and polygon ``segmentation`` of the visible region. ``workers > 1`` renders in that many
    processes (same output). Returns the paths as ``{"train_images", "train_annotations",
    "val_images", "val_annotations"}``.
    """
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {list(SHAPES)}, got {list(classes)}")
    if num_train < 0 or num_val < 0:
        raise ValueError(f"image counts must be >= 0, got train={num_train} val={num_val}")
    if size < 64:
        raise ValueError(f"size must be >= 64 px, got {size}")
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for split, n in (("train", num_train), ("val", num_val)):
        paths[f"{split}_annotations"] = _write_split(out, split, n, size, seed, classes, workers)
        paths[f"{split}_images"] = out / split
    return paths
