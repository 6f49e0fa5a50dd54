"""COCO instances json -> compact arrays, with the json's faults counted and named.

:func:`read_coco_index` parses an instances json once and keeps what training needs in a
handful of numpy arrays (one concatenated ``(M, 4)`` box array with per-image offsets, label
and crowd arrays, and the file names as one utf-8 blob with offsets), then drops the parsed
json. Forked DataLoader workers of :class:`ssdlite.data.coco.CocoDetection` therefore never
touch millions of Python objects, which is what makes them copy the parent's memory page by
page (pytorch/pytorch#13246).

Each faulty image entry or annotation is repaired or skipped, counted and named by a
:class:`ssdlite.data.problems.Problem` (the kinds of ``PARSE_PROBLEMS``; their table is in
:mod:`ssdlite.data.problems`).
"""

from __future__ import annotations

import array
import gc
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ssdlite.data.problems import Problem

__all__ = ["CocoIndex", "read_coco_index"]

_NO_ID = np.iinfo(np.int64).min  # stands for an id that is missing or not an integer
_CLAMP_TOLERANCE = 1.0  # px outside the image before a clamp is reported


class CocoIndex(NamedTuple):
    """What training keeps of an instances json: ``N`` images and their ``M`` boxes as flat arrays.

    Image ``i``'s boxes are ``boxes[box_offsets[i]:box_offsets[i + 1]]`` (json order within an
    image); its file name is ``name_blob[name_offsets[i]:name_offsets[i + 1]]`` (utf-8).
    """

    category_ids: list[int]  # label k is category_ids[k]
    class_names: list[str]  # one per label
    image_ids: np.ndarray  # (N,) int64 json image ids
    sizes: np.ndarray  # (N, 2) int32 (h, w) from the json; (0, 0) when it has none
    name_blob: np.ndarray  # (sum of name lengths,) uint8
    name_offsets: np.ndarray  # (N + 1,) int64
    boxes: np.ndarray  # (M, 4) float32 xyxy pixels, clamped to the json size where known
    labels: np.ndarray  # (M,) int64 in 0..C-1
    crowd: np.ndarray  # (M,) bool
    box_offsets: np.ndarray  # (N + 1,) int64
    counts: dict[str, int]  # images, images_kept, images_empty, images_dropped_empty, annotations, boxes, crowd_boxes
    problems: list[Problem]  # the json's faults (kinds of PARSE_PROBLEMS), in the order found
    # VOC truncated (bit 0) / occluded (bit 1) per box; None when the format has no such attributes
    attributes: np.ndarray | None = None  # (M,) uint8
    normalized: bool = False  # boxes in [0, 1] of the image size (YOLO: sizes unknown until the file is read)
    source: str = ""  # what was read (the json, the VOC folder + split, the data.yaml + split), for messages


def read_coco_index(
    annotation_json: str | os.PathLike,
    category_ids: Sequence[int] | None = None,
    keep_empty: bool = True,
    min_box_size: float = 1.0,
) -> CocoIndex:
    """Parse a COCO instances json (``images``, ``annotations``, ``categories``) into a :class:`CocoIndex`.

    ``category_ids``, ``keep_empty`` and ``min_box_size`` as for
    :class:`ssdlite.data.coco.CocoDetection`. Faults of single entries are repaired or skipped
    and named in ``problems``; a json that cannot be used at all (missing, invalid JSON, not
    UTF-8, ``images`` not a list, bad ``categories``) raises ``ValueError`` naming the file.
    """
    builder = _IndexBuilder(Path(annotation_json), keep_empty, float(min_box_size))
    collector = _AnnotationCollector()
    data = _read_json(builder.src, collector)
    images = _check_layout(data, builder.src)
    builder.set_categories(data.get("categories"), category_ids)
    img = builder.parse_images(images)
    del data, images
    index = builder.build_index(img, collector)
    del collector, img
    _release_memory()
    return index


# ----------------------------------------------------------------------------- json parsing


class _AnnotationCollector:
    """``json.load`` object hook that turns each annotation dict into array rows on the fly.

    The hook runs as each JSON object is completed, so segmentation polygons and RLEs are
    freed as soon as their annotation is parsed: peak memory stays far below the size of a
    fully parsed COCO json. Non-annotation objects (images, categories, ...) pass through.
    """

    def __init__(self) -> None:
        self.ids = array.array("q")  # per annotation: id, image_id, category_id, iscrowd | attribute bits << 1
        self.xywh = array.array("d")
        self.invalid: list[tuple[int, str]] = []  # (annotation index, reason)

    def __call__(self, d: dict) -> Any:
        if "image_id" not in d:
            return d
        box = d.get("bbox")
        if box is None and "category_id" not in d:
            return d
        ids = (d.get("id"), d["image_id"], d.get("category_id"))
        if not (type(ids[0]) is int and type(ids[1]) is int and type(ids[2]) is int):
            ids = tuple(_as_int(v) for v in ids)
        crowd = 1 if d.get("iscrowd", 0) == 1 else 0
        attrs = d.get("attributes")  # CVAT / convert-data: VOC's truncated / occluded, kept in bits 1 and 2
        if type(attrs) is dict:
            crowd |= (2 if attrs.get("truncated") is True else 0) | (4 if attrs.get("occluded") is True else 0)
        n_ids, n_xywh = len(self.ids), len(self.xywh)
        try:
            self.ids.extend((*ids, crowd))
            if type(box) is list and len(box) == 4:
                x, y, w, h = box
                if type(x) in _NUMBER and type(y) in _NUMBER and type(w) in _NUMBER and type(h) in _NUMBER:
                    self.xywh.extend(box)
                    return None
        except OverflowError:  # an integer beyond int64 / float range: undo the partial row
            del self.ids[n_ids:], self.xywh[n_xywh:]
            self.ids.extend((*(_as_int(v) for v in ids), crowd))
        self.xywh.extend(_NAN4)
        self.invalid.append((n_ids // 4, f"bbox {_short(box)} is not [x, y, width, height] numbers"))
        return None

    def __len__(self) -> int:
        return len(self.ids) // 4


_NUMBER = (int, float)
_NAN4 = (math.nan,) * 4


def _as_int(v: Any) -> int:
    if type(v) is int and -(2**63) < v < 2**63:
        return v
    return int(_NO_ID)


def _short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _read_json(path: Path, hook: Callable[[dict], Any]) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
        return json.loads(text, object_hook=hook)
    except FileNotFoundError:
        raise ValueError(f"annotation file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ValueError(f"cannot read annotation file {path}: {e.strerror or e}") from None


def _check_layout(data: Any, src: Path) -> list:
    """The json's ``images`` list, after checking the top-level layout."""
    if not isinstance(data, dict):
        raise ValueError(f"{src}: expected a JSON object with 'images', got {type(data).__name__}")
    images = data.get("images")
    if not isinstance(images, list):
        raise ValueError(f"{src}: 'images' must be a list of image entries")
    if not isinstance(data.get("annotations", []), list):
        raise ValueError(f"{src}: 'annotations' must be a list")
    return images


def _release_memory() -> None:
    """Give the freed json objects back to the OS so forked workers do not inherit them."""
    gc.collect()
    try:  # glibc only; harmless elsewhere
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------- parsing steps


class _IndexBuilder:
    """The parsing steps of :func:`read_coco_index`; collects the counts and the problems found."""

    def __init__(self, src: Path, keep_empty: bool, min_box_size: float) -> None:
        self.src = src
        self.keep_empty = keep_empty
        self.min_box_size = min_box_size
        self.problems: list[Problem] = []
        self.counts: dict[str, int] = {}
        self.category_ids: list[int] = []
        self.class_names: list[str] = []

    def set_categories(self, categories: Any, category_ids: Sequence[int] | None) -> None:
        src = self.src
        names: dict[int, str] = {}
        if categories is not None:
            if not isinstance(categories, list):
                raise ValueError(f"{src}: 'categories' must be a list of {{'id', 'name'}} entries")
            for k, c in enumerate(categories):
                cid = c.get("id") if isinstance(c, dict) else None
                if type(cid) is not int:
                    raise ValueError(f"{src}: categories[{k}] has no integer 'id': {_short(c)}")
                if cid in names:
                    raise ValueError(f"{src}: category id {cid} appears twice in 'categories'")
                names[cid] = str(c.get("name", f"class_{cid}"))
        if category_ids is None:
            if not names:
                raise ValueError(f"{src}: no 'categories' in the json; pass category_ids to name the classes")
            ids = sorted(names)
        else:
            ids = [int(c) for c in category_ids]
            if len(set(ids)) != len(ids) or not ids:
                raise ValueError(f"category_ids must be distinct and non-empty, got {ids}")
        self.category_ids = ids
        self.class_names = [names.get(c, f"class_{c}") for c in ids]

    def parse_images(self, images: list) -> dict[str, Any]:
        """Validate the image entries; returns their ids, sizes and file names (json order)."""
        ids: list[int] = []
        sizes: list[tuple[int, int]] = []
        names: list[str] = []
        seen: set[int] = set()
        for k, e in enumerate(images):
            iid = e.get("id") if isinstance(e, dict) else None
            name = e.get("file_name") if isinstance(e, dict) else None
            if type(iid) is not int or not isinstance(name, str) or not name:
                self._problem("invalid_images", None, iid if type(iid) is int else None, name if isinstance(name, str) else None,
                              f"images[{k}] needs an integer 'id' and a 'file_name': {_short(e)}")
                continue
            if iid in seen:
                self._problem("duplicate_image_ids", None, iid, name, f"images[{k}] repeats image id {iid}; the first entry is used")
                continue
            seen.add(iid)
            h, w = e.get("height"), e.get("width")
            if not (type(h) is int and type(w) is int and h > 0 and w > 0):
                what = "no width/height" if w is None and h is None else f"width/height {_short(w)} x {_short(h)} invalid"
                self._problem("missing_image_size", None, iid, name, f"{what}; boxes are clamped to the decoded size")
                h = w = 0
            ids.append(iid)
            sizes.append((h, w))
            names.append(name)
        self.counts["images"] = len(images)
        return {
            "ids": np.asarray(ids, dtype=np.int64),
            "sizes": np.asarray(sizes, dtype=np.int32).reshape(-1, 2),
            "names": names,
        }

    def build_index(self, img: dict[str, Any], col: _AnnotationCollector) -> CocoIndex:
        """Check every annotation, then store the kept boxes grouped per image (see :meth:`_store`)."""
        n_ann = len(col)
        self.counts["annotations"] = n_ann
        rows = np.frombuffer(col.ids, dtype=np.int64).reshape(-1, 4) if n_ann else np.zeros((0, 4), np.int64)
        xywh = np.frombuffer(col.xywh, dtype=np.float64).reshape(-1, 4) if n_ann else np.zeros((0, 4))
        ann = {"id": rows[:, 0], "image_id": rows[:, 1], "category_id": rows[:, 2], "crowd": (rows[:, 3] & 1).astype(bool),
               "attributes": (rows[:, 3] >> 1).astype(np.uint8), "xywh": xywh}
        ann["image_index"] = _lookup(img["ids"], ann["image_id"])
        ann["label"] = _lookup(np.asarray(self.category_ids, dtype=np.int64), ann["category_id"])
        keep, xyxy = self._check_annotations(ann, img, dict(col.invalid))
        return self._store(img, ann, keep, xyxy)

    def _check_annotations(self, ann: dict[str, np.ndarray], img: dict[str, Any], bad_reason: dict[int, str]
                           ) -> tuple[np.ndarray, np.ndarray]:
        """Drop (and name) annotations of unknown images or categories, invalid or degenerate
        boxes, each under its first fault; clamp boxes to the json image size.

        Returns the keep mask and the ``(M, 4)`` xyxy boxes (clamped where the size is known).
        """
        image_index, xywh = ann["image_index"], ann["xywh"]

        def report(kind: str, mask: np.ndarray, detail: Callable[[int], str]) -> None:
            for i in np.flatnonzero(mask).tolist():
                k = image_index[i]
                self._problem(kind, _id_or_none(ann["id"][i]), _id_or_none(ann["image_id"][i]),
                              img["names"][k] if k >= 0 else None, detail(i))

        keep = np.ones(len(xywh), dtype=bool)
        bad = ~np.isfinite(xywh).all(axis=1)
        bad[list(bad_reason)] = True
        checks = [
            ("unknown_image", image_index < 0, lambda i: f"image_id {_fmt_id(ann['image_id'][i])} is not in 'images'"),
            ("unknown_category", ann["label"] < 0, lambda i: f"category_id {_fmt_id(ann['category_id'][i])} is not a known category"),
            ("invalid_boxes", bad, lambda i: bad_reason.get(i, f"bbox {xywh[i].tolist()} is not finite")),
        ]
        for kind, fault, detail in checks:
            report(kind, keep & fault, lambda i, d=detail: d(i) + "; annotation skipped")
            keep &= ~fault

        # xywh -> xyxy, clamped to the json image size (unknown size: clamped at load time)
        hw = img["sizes"][image_index.clip(0)].astype(np.float64) if len(img["sizes"]) else np.zeros((len(xywh), 2))
        xyxy, outside = _clamped_xyxy(xywh, hw)
        small = (xyxy[:, 2] - xyxy[:, 0] <= self.min_box_size) | (xyxy[:, 3] - xyxy[:, 1] <= self.min_box_size)
        report("degenerate_boxes", keep & small, lambda i: f"bbox {xywh[i].tolist()} has width or height <= "
               f"{self.min_box_size:g} px inside the {_fmt_size(hw[i])} image; dropped")
        keep &= ~small
        report("clamped_boxes", keep & (outside > _CLAMP_TOLERANCE), lambda i: f"bbox {xywh[i].tolist()} extends "
               f"{outside[i]:.1f} px outside the {_fmt_size(hw[i])} image; clamped")
        return keep, xyxy

    def _store(self, img: dict[str, Any], ann: dict[str, np.ndarray], keep: np.ndarray, xyxy: np.ndarray) -> CocoIndex:
        """Keep the images (all, or those with boxes) and their boxes as flat arrays + offsets."""
        n_img = len(img["ids"])
        k_idx = np.flatnonzero(keep)
        k_img = ann["image_index"][k_idx]
        per_image = np.bincount(k_img, minlength=n_img)
        kept_images = np.ones(n_img, dtype=bool) if self.keep_empty else per_image > 0
        new_index = np.cumsum(kept_images) - 1
        sel = kept_images[k_img]
        k_idx, k_img = k_idx[sel], new_index[k_img[sel]]
        srt = np.argsort(k_img, kind="stable")  # group by image, json order within an image
        k_idx, k_img = k_idx[srt], k_img[srt]

        crowd = ann["crowd"][k_idx]
        n_boxes = np.bincount(k_img, minlength=int(kept_images.sum()))  # per kept image
        encoded = [n.encode("utf-8") for n, k in zip(img["names"], kept_images.tolist()) if k]
        c = self.counts
        c["images_kept"] = int(kept_images.sum())
        c["images_empty"] = int((n_boxes == 0).sum())
        c["images_dropped_empty"] = int(n_img - kept_images.sum())
        c["boxes"] = int(len(k_idx))
        c["crowd_boxes"] = int(crowd.sum())
        return CocoIndex(
            category_ids=self.category_ids,
            class_names=self.class_names,
            image_ids=img["ids"][kept_images],
            sizes=img["sizes"][kept_images],
            name_blob=np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
            name_offsets=np.concatenate([[0], np.cumsum([len(b) for b in encoded], dtype=np.int64)]).astype(np.int64),
            boxes=xyxy[k_idx].astype(np.float32),
            labels=ann["label"][k_idx].astype(np.int64),
            crowd=crowd,
            box_offsets=np.concatenate([[0], np.cumsum(n_boxes)]).astype(np.int64),
            counts=c,
            problems=self.problems,
            attributes=ann["attributes"][k_idx],
            source=str(self.src),
        )

    def _problem(self, kind: str, ann_id: int | None, image_id: int | None, file: str | None, detail: str) -> None:
        self.problems.append(Problem(kind, ann_id, image_id, file, detail))


# ----------------------------------------------------------------------------- helpers


def _clamped_xyxy(xywh: np.ndarray, hw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(M, 4)`` xywh -> xyxy clamped to each box's json image size ``hw`` ``(M, 2)`` (h, w),
    and how far (px) each box extends outside it. Unknown sizes (0) are not clamped here but at
    load time; non-finite values count as 0."""
    x1, y1, w, h = np.where(np.isfinite(xywh), xywh, 0.0).T
    x2, y2 = x1 + w, y1 + h
    W = np.where(hw[:, 1] > 0, hw[:, 1], np.inf)
    H = np.where(hw[:, 0] > 0, hw[:, 0], np.inf)
    xyxy = np.stack([np.clip(x1, 0, W), np.clip(y1, 0, H), np.clip(x2, 0, W), np.clip(y2, 0, H)], axis=1)
    outside = np.maximum.reduce([-x1, -y1, x2 - W, y2 - H])
    return xyxy, outside


def _lookup(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each of ``values`` in ``keys`` (unique int64), -1 where absent."""
    if len(keys) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    pos = np.searchsorted(keys[order], values).clip(0, len(keys) - 1)
    return np.where(keys[order][pos] == values, order[pos], -1)


def _id_or_none(v: Any) -> int | None:
    v = int(v)
    return None if v == _NO_ID else v


def _fmt_id(v: Any) -> str:
    v = int(v)
    return "missing or not an integer" if v == _NO_ID else str(v)


def _fmt_size(hw: np.ndarray) -> str:
    h, w = hw
    return "unknown-size" if not (h > 0 and w > 0) else f"{int(w)}x{int(h)}"
