"""Per-image annotation rows -> the compact :class:`~ssdlite.data.coco_index.CocoIndex`, for the
readers that walk one annotation file per image (:mod:`ssdlite.data.voc`, :mod:`ssdlite.data.yolo`).

Rows are appended to flat ``array.array`` buffers (no dict per image or box), checked one box at a
time by :meth:`IndexRows.add_box` (the same problem kinds and rules as the COCO json reader: a box
more than :data:`CLAMP_TOLERANCE` px outside the image is clamped and reported, one whose width or
height is <= ``min_box_size`` after clamping is dropped), and turned into numpy arrays once by
:meth:`IndexRows.finish`. The index is the COCO reader's, so training, checks, evaluation and
conversion take any format.
"""

from __future__ import annotations

import array
import math
from typing import Sequence

import numpy as np

from ssdlite.data.coco_index import CocoIndex
from ssdlite.data.problems import Problem

__all__ = ["IndexRows", "CLAMP_TOLERANCE", "TRUNCATED", "OCCLUDED"]

CLAMP_TOLERANCE = 1.0  # px outside the image before a clamp is reported (as for COCO json)
TRUNCATED, OCCLUDED = 1, 2  # bits of CocoIndex.attributes


class IndexRows:
    """Images and their boxes as they are read; :meth:`finish` makes the :class:`CocoIndex`.

    ``normalized``: boxes are fractions of the image size (YOLO), checked against a 1 x 1 image
    and scaled when the file is read; else absolute pixels checked against each image's size.
    """

    def __init__(self, source: str, keep_empty: bool = True, min_box_size: float = 1.0, normalized: bool = False) -> None:
        self.source = source
        self.keep_empty = keep_empty
        self.min_box_size = 0.0 if normalized else float(min_box_size)
        self.tolerance = 1e-3 if normalized else CLAMP_TOLERANCE
        self.normalized = normalized
        self.names: list[str] = []
        self.sizes = array.array("i")  # h, w per image
        self.boxes = array.array("d")  # x1, y1, x2, y2 per box
        self.labels = array.array("q")
        self.crowd = array.array("b")
        self.attrs = array.array("B")
        self.box_image = array.array("q")  # image index of each box
        self.problems: list[Problem] = []
        self.counts = {"images": 0, "annotations": 0}

    # ------------------------------------------------------------------ adding rows

    def add_image(self, name: str, h: int = 0, w: int = 0) -> int:
        """A new image (file name relative to the image folder; size 0 when unknown); its index."""
        self.names.append(name)
        self.sizes.extend((h, w))
        return len(self.names) - 1

    def problem(self, kind: str, file: str | None, detail: str, image: int | None = None) -> None:
        """Name a fault; ``image`` (an index of :meth:`add_image`) gives the image id in the report."""
        self.problems.append(Problem(kind, None, None if image is None else image + 1, file, detail))

    def add_box(self, image: int, box: Sequence[float], label: int, where: str, crowd: bool = False, attrs: int = 0) -> bool:
        """Check one xyxy box of ``image`` (pixels, or fractions when normalized); keep it if usable.

        ``where`` names it in a problem (``file``, ``object 3`` / ``line 7``). Returns whether it was kept.
        """
        self.counts["annotations"] += 1
        x1, y1, x2, y2 = box
        if not all(map(math.isfinite, box)) or x2 < x1 or y2 < y1:
            self.problem("invalid_boxes", where, f"box {_fmt(box)} is not x1 <= x2, y1 <= y2 finite numbers; dropped", image)
            return False
        if label < 0:
            return False
        h, w = (1, 1) if self.normalized else self.sizes[2 * image: 2 * image + 2]
        W, H = (w or math.inf), (h or math.inf)
        outside = max(-x1, -y1, x2 - W, y2 - H)
        cx1, cy1, cx2, cy2 = min(max(x1, 0.0), W), min(max(y1, 0.0), H), min(max(x2, 0.0), W), min(max(y2, 0.0), H)
        image_text = f"the {w}x{h} image" if h and not self.normalized else "the image"
        if cx2 - cx1 <= self.min_box_size or cy2 - cy1 <= self.min_box_size:
            self.problem("degenerate_boxes", where, f"box {_fmt(box)} has width or height <= {self.min_box_size:g}"
                         f"{'' if self.normalized else ' px'} inside {image_text}; dropped", image)
            return False
        if outside > self.tolerance:
            unit = " of the image size" if self.normalized else " px"
            self.problem("clamped_boxes", where, f"box {_fmt(box)} extends {outside:.4g}{unit} outside {image_text}; clamped",
                         image)
        self.boxes.extend((cx1, cy1, cx2, cy2))
        self.labels.append(label)
        self.crowd.append(1 if crowd else 0)
        self.attrs.append(attrs)
        self.box_image.append(image)
        return True

    # ------------------------------------------------------------------ the index

    def finish(self, class_names: Sequence[str], category_ids: Sequence[int] | None = None) -> CocoIndex:
        """The compact index: images (all, or those with boxes) and their boxes grouped per image.

        ``category_ids``: the id of each label (default ``1..C``).
        """
        n_img = len(self.names)
        img = np.frombuffer(self.box_image, dtype=np.int64) if len(self.box_image) else np.zeros(0, np.int64)
        per_image = np.bincount(img, minlength=n_img)
        kept = np.ones(n_img, dtype=bool) if self.keep_empty else per_image > 0
        sel = kept[img]
        order = np.argsort(img[sel], kind="stable")  # rows are appended per image: already grouped
        idx = np.flatnonzero(sel)[order]
        n_boxes = per_image[kept]
        encoded = [n.encode("utf-8") for n, k in zip(self.names, kept.tolist()) if k]
        boxes = np.frombuffer(self.boxes, dtype=np.float64).reshape(-1, 4) if len(self.boxes) else np.zeros((0, 4))
        crowd = np.frombuffer(self.crowd, dtype=np.int8).astype(bool) if len(self.crowd) else np.zeros(0, bool)
        c = dict(self.counts)
        c.update(images=n_img, images_kept=int(kept.sum()), images_empty=int((n_boxes == 0).sum()),
                 images_dropped_empty=int(n_img - kept.sum()), boxes=int(len(idx)), crowd_boxes=int(crowd[idx].sum()))
        sizes = np.frombuffer(self.sizes, dtype=np.int32).reshape(-1, 2) if n_img else np.zeros((0, 2), np.int32)
        return CocoIndex(
            category_ids=list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1)),
            class_names=list(class_names),
            image_ids=np.flatnonzero(kept).astype(np.int64) + 1,
            sizes=sizes[kept].copy(),
            name_blob=np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
            name_offsets=np.concatenate([[0], np.cumsum([len(b) for b in encoded])]).astype(np.int64),
            boxes=boxes[idx].astype(np.float32),
            labels=np.frombuffer(self.labels, dtype=np.int64)[idx].copy() if len(idx) else np.zeros(0, np.int64),
            crowd=crowd[idx],
            box_offsets=np.concatenate([[0], np.cumsum(n_boxes)]).astype(np.int64),
            counts=c,
            problems=self.problems,
            attributes=np.frombuffer(self.attrs, dtype=np.uint8)[idx].copy() if len(idx) else np.zeros(0, np.uint8),
            normalized=self.normalized,
            source=self.source,
        )


def _fmt(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"
