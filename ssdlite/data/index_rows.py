"""Per-image annotation rows -> the compact :class:`~ssdlite.data.coco_index.CocoIndex`, for the
readers that walk one annotation file per image (:mod:`ssdlite.data.voc`, :mod:`ssdlite.data.yolo`).

Rows are appended to flat ``array.array`` buffers (no dict per image or box) and checked all at
once by :meth:`IndexRows.finish` with numpy (the same problem kinds and rules as the COCO json
reader: a box more than :data:`CLAMP_TOLERANCE` px outside the image is clamped and reported, one
whose width or height is <= ``min_box_size`` after clamping is dropped, one with x2 < x1 or
non-finite numbers is invalid). The index is the COCO reader's, so training, checks, evaluation and
conversion take any format.
"""

from __future__ import annotations

import array
from typing import Sequence

import numpy as np

from ssdlite.data.coco_index import CocoIndex
from ssdlite.data.problems import Problem

__all__ = ["IndexRows", "CLAMP_TOLERANCE", "TRUNCATED", "OCCLUDED"]

CLAMP_TOLERANCE = 1.0  # px outside the image before a clamp is reported (as for COCO json)
TRUNCATED, OCCLUDED = 1, 2  # bits of CocoIndex.attributes


class IndexRows:
    """Images and their boxes as they are read; :meth:`finish` checks the boxes and makes the :class:`CocoIndex`.

    ``normalized``: boxes are fractions of the image size (YOLO), checked against a 1 x 1 image
    and scaled when the file is read; else absolute pixels checked against each image's size.
    ``unit``: what numbers a box within its annotation file in a problem (``object`` / ``line``).
    """

    def __init__(self, source: str, keep_empty: bool = True, min_box_size: float = 1.0, normalized: bool = False,
                 unit: str = "object") -> None:
        self.source = source
        self.keep_empty = keep_empty
        self.min_box_size = 0.0 if normalized else float(min_box_size)
        self.tolerance = 1e-3 if normalized else CLAMP_TOLERANCE
        self.normalized = normalized
        self.unit = unit
        self.names: list[str] = []
        self.shown: list[str] = []  # the annotation file of each image, as problems name it
        self.sizes = array.array("i")  # h, w per image
        self.boxes = array.array("d")  # x1, y1, x2, y2 per box, unchecked
        self.labels = array.array("q")
        self.crowd = array.array("b")
        self.attrs = array.array("B")
        self.box_image = array.array("q")  # image index of each box
        self.box_num = array.array("q")  # object / line number of each box in its file
        self.problems: list[Problem] = []
        self.counts = {"images": 0, "annotations": 0}

    # ------------------------------------------------------------------ adding rows

    def add_image(self, name: str, h: int = 0, w: int = 0, shown: str = "") -> int:
        """A new image (file name relative to the image folder; size 0 when unknown; ``shown``: its
        annotation file in problems); its index."""
        self.names.append(name)
        self.shown.append(shown)
        self.sizes.extend((h, w))
        return len(self.names) - 1

    def problem(self, kind: str, file: str | None, detail: str, image: int | None = None) -> None:
        """Name a fault; ``image`` (an index of :meth:`add_image`) gives the image id in the report."""
        self.problems.append(Problem(kind, None, None if image is None else image + 1, file, detail))

    def add_box(self, image: int, box: Sequence[float], label: int, num: int, crowd: bool = False, attrs: int = 0) -> None:
        """One xyxy box of ``image`` (pixels, or fractions when normalized), number ``num`` in its
        file; checked by :meth:`finish`."""
        self.boxes.extend(box)
        self.labels.append(label)
        self.crowd.append(crowd)
        self.attrs.append(attrs)
        self.box_image.append(image)
        self.box_num.append(num)

    def where(self, k: int) -> str:
        """Where box ``k`` is: ``<annotation file> object 3`` / ``line 7``."""
        return f"{self.shown[self.box_image[k]]} {self.unit} {self.box_num[k]}"

    # ------------------------------------------------------------------ checks and the index

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        """The keep mask and the clamped ``(M, 4)`` boxes; every dropped or clamped box is named
        (the COCO reader's rules: invalid, degenerate after clamping, clamped beyond the tolerance)."""
        self.counts["annotations"] += len(self.labels)
        raw = np.frombuffer(self.boxes, dtype=np.float64).reshape(-1, 4) if len(self.boxes) else np.zeros((0, 4))
        img = np.frombuffer(self.box_image, dtype=np.int64) if len(self.box_image) else np.zeros(0, np.int64)
        x1, y1, x2, y2 = raw.T
        with np.errstate(invalid="ignore"):
            invalid = ~np.isfinite(raw).all(axis=1) | (x2 < x1) | (y2 < y1)
        hw = np.ones((len(raw), 2)) if self.normalized else np.frombuffer(self.sizes, dtype=np.int32).reshape(-1, 2)[img]
        H = np.where(hw[:, 0] > 0, hw[:, 0], np.inf)
        W = np.where(hw[:, 1] > 0, hw[:, 1], np.inf)
        box = np.where(np.isfinite(raw), raw, 0.0)
        clamped = np.stack([np.clip(box[:, 0], 0, W), np.clip(box[:, 1], 0, H), np.clip(box[:, 2], 0, W),
                            np.clip(box[:, 3], 0, H)], axis=1)
        outside = np.maximum.reduce([-box[:, 0], -box[:, 1], box[:, 2] - W, box[:, 3] - H])
        small = ~invalid & ((clamped[:, 2] - clamped[:, 0] <= self.min_box_size)
                            | (clamped[:, 3] - clamped[:, 1] <= self.min_box_size))
        moved = ~invalid & ~small & (outside > self.tolerance)

        def image_text(k: int) -> str:
            h, w = hw[k]
            return f"the {int(w)}x{int(h)} image" if h > 0 and not self.normalized else "the image"

        unit = " of the image size" if self.normalized else " px"
        for k in np.flatnonzero(invalid | small | moved).tolist():
            kind, detail = (("invalid_boxes", "is not x1 <= x2, y1 <= y2 finite numbers; dropped") if invalid[k] else
                            ("degenerate_boxes", f"has width or height <= {self.min_box_size:g}{'' if self.normalized else ' px'}"
                             f" inside {image_text(k)}; dropped") if small[k] else
                            ("clamped_boxes", f"extends {outside[k]:.4g}{unit} outside {image_text(k)}; clamped"))
            self.problem(kind, self.where(k), f"box {_fmt(raw[k])} {detail}", int(img[k]))
        return ~(invalid | small), clamped

    def finish(self, class_names: Sequence[str], category_ids: Sequence[int] | None = None) -> CocoIndex:
        """Check the boxes (:meth:`_check`) and make the compact index: images (all, or those with
        boxes) and their boxes grouped per image. ``category_ids``: the id of each label (default ``1..C``)."""
        keep, boxes = self._check()
        self.problems.sort(key=lambda p: p.image_id or len(self.names) + 1)  # per image, in file order; the rest last
        n_img = len(self.names)
        img = np.frombuffer(self.box_image, dtype=np.int64) if len(self.box_image) else np.zeros(0, np.int64)
        per_image = np.bincount(img[keep], minlength=n_img)
        kept = np.ones(n_img, dtype=bool) if self.keep_empty else per_image > 0
        sel = keep & kept[img]
        idx = np.flatnonzero(sel)[np.argsort(img[sel], kind="stable")]  # grouped per image, file order within
        n_boxes = per_image[kept]
        encoded = [n.encode("utf-8") for n, k in zip(self.names, kept.tolist()) if k]
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


def _fmt(box: Sequence[float] | np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"
