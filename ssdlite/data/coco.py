"""COCO-format detection dataset with compact, fork-friendly storage and counted data faults.

:class:`CocoDetection` parses an instances json once and keeps what training needs in a
handful of numpy arrays (one concatenated ``(M, 4)`` box array with per-image offsets, label
and crowd arrays, and the file names as one utf-8 blob with offsets), then drops the parsed
json. Forked DataLoader workers therefore never touch millions of Python objects, which is
what makes them copy the parent's memory page by page (pytorch/pytorch#13246).

Every fault found on the way is repaired or skipped, counted in :attr:`CocoDetection.stats`
and named in :attr:`CocoDetection.problems` (one :class:`Problem` per annotation or file), so
that a report can list each one and a training log can repeat the counts:

========================  =============================================================
``invalid_images``        image entry without an integer ``id`` or a ``file_name`` (dropped)
``duplicate_image_ids``   a later image entry reusing an id (dropped; the first one wins)
``missing_image_size``    ``width``/``height`` absent or not positive (boxes clamped at load)
``unknown_image``         annotation whose ``image_id`` is not an image (dropped)
``unknown_category``      annotation whose ``category_id`` is not a category (dropped)
``invalid_boxes``         ``bbox`` missing, not 4 numbers, NaN or infinite (dropped)
``clamped_boxes``         box more than 1 px outside the image (clamped, kept)
``degenerate_boxes``      width or height <= 1 px after clamping (dropped)
``missing_images``        image file absent (sample skipped, found at load time)
``unreadable_images``     file not decodable: truncated, not an image, ... (skipped at load)
``size_mismatch``         decoded size differs from the json (decoded wins, boxes re-clamped)
``exif_orientation``      the json size is the file's size *before* its EXIF rotation: the
                          boxes were drawn on the stored pixels, so the rotation is ignored
========================  =============================================================

The last four are found while loading samples; the flags live in shared memory so the
counts seen by the main process include what every DataLoader worker found.
"""

from __future__ import annotations

import array
import gc
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["CocoDetection", "Problem", "load_image", "PARSE_PROBLEMS", "LOAD_PROBLEMS"]

log = logging.getLogger("ssdlite.data")

# Problem kinds found while parsing the json (counted once) and while loading files.
PARSE_PROBLEMS = (
    "invalid_images",
    "duplicate_image_ids",
    "missing_image_size",
    "unknown_image",
    "unknown_category",
    "invalid_boxes",
    "clamped_boxes",
    "degenerate_boxes",
)
LOAD_PROBLEMS = ("missing_images", "unreadable_images", "size_mismatch", "exif_orientation")
_LOAD_BITS = {"missing_images": 1, "unreadable_images": 2, "size_mismatch": 4, "exif_orientation": 8}
_LOAD_DETAIL = {
    "missing_images": "image file not found (sample skipped)",
    "unreadable_images": "image file cannot be decoded (sample skipped)",
    "size_mismatch": "decoded size differs from the json width/height (decoded size used)",
    "exif_orientation": "the json width/height are the file's before its EXIF rotation (rotation ignored, boxes kept)",
}

_NO_ID = np.iinfo(np.int64).min  # stands for an id that is missing or not an integer
_CLAMP_TOLERANCE = 1.0  # px outside the image before a clamp is reported


class Problem(NamedTuple):
    """One data fault: its kind (a key of ``stats``), where it is and what was done."""

    kind: str
    annotation_id: int | None
    image_id: int | None
    file: str | None
    detail: str

    def __str__(self) -> str:
        where = []
        if self.annotation_id is not None:
            where.append(f"annotation {self.annotation_id}")
        if self.image_id is not None:
            where.append(f"image {self.image_id}")
        if self.file:
            where.append(self.file)
        return f"{self.kind}: {', '.join(where) or '?'}: {self.detail}"


# ----------------------------------------------------------------------------- decoding

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
    stored pixels and the rotation is not applied (as :class:`CocoDetection` does for training).
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


# ----------------------------------------------------------------------------- json parsing


class _AnnotationCollector:
    """``json.load`` object hook that turns each annotation dict into array rows on the fly.

    The hook runs as each JSON object is completed, so segmentation polygons and RLEs are
    freed as soon as their annotation is parsed: peak memory stays far below the size of a
    fully parsed COCO json. Non-annotation objects (images, categories, ...) pass through.
    """

    def __init__(self) -> None:
        self.ids = array.array("q")  # per annotation: id, image_id, category_id, iscrowd
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
        crowd = d.get("iscrowd", 0)
        n_ids, n_xywh = len(self.ids), len(self.xywh)
        try:
            self.ids.extend((*ids, 1 if crowd == 1 else 0))
            if type(box) is list and len(box) == 4:
                x, y, w, h = box
                if type(x) in _NUMBER and type(y) in _NUMBER and type(w) in _NUMBER and type(h) in _NUMBER:
                    self.xywh.extend(box)
                    return None
        except OverflowError:  # an integer beyond int64 / float range: undo the partial row
            del self.ids[n_ids:], self.xywh[n_xywh:]
            self.ids.extend((*(_as_int(v) for v in ids), 1 if crowd == 1 else 0))
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


def _release_memory() -> None:
    """Give the freed json objects back to the OS so forked workers do not inherit them."""
    gc.collect()
    try:  # glibc only; harmless elsewhere
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------- dataset


class CocoDetection(Dataset):
    """Detection samples from a COCO-format ``annotation_json`` and the images in ``image_dir``.

    Args:
        image_dir: folder the json ``file_name`` entries are relative to.
        annotation_json: COCO instances json (``images``, ``annotations``, ``categories``).
        transform: ``transform(image, boxes, labels, iscrowd) -> (image (3, H, W) float32,
            boxes (G, 4), labels (G,), iscrowd (G,))`` with image ``(h, w, 3)`` uint8 RGB and
            boxes xyxy absolute pixels of the file (see :func:`ssdlite.data.build_transforms`).
            None: the image is returned as ``(3, h, w)`` float32 in [0, 1] and boxes unchanged.
        keep_empty: keep images without boxes as negatives (else drop them).
        category_ids: the dataset category ids in label order (e.g. from a checkpoint);
            default: the json's category ids sorted ascending. Label ``k`` is
            ``category_ids[k]``; annotations of other ids count as ``unknown_category``.
        min_box_size: boxes whose width or height is <= this (px, after clamping) are dropped.
        on_unreadable: a missing or unreadable file gives ``None`` (``"skip"``: the batch is
            smaller; right for evaluation) or the next readable sample (``"substitute"``: batches
            keep their size, which BatchNorm on 1x1 maps and DDP prefer; for training; a
            ``ValueError`` when no file at all is readable). Either way the file is warned about
            once and counted.

    ``dataset[i]`` is ``(image, target)`` with ``target`` = ``{"boxes": (G, 4) float32 xyxy
    in the network input frame, "labels": (G,) int64 in 0..C-1, "iscrowd": (G,) bool (crowd
    boxes are ignore regions), "image_id": int, "orig_size": (h, w) of the decoded file}``, or
    ``None`` when the file is missing or unreadable (warned once per file, counted in
    :attr:`stats`; :func:`ssdlite.data.collate` drops it).
    """

    def __init__(
        self,
        image_dir: str | os.PathLike,
        annotation_json: str | os.PathLike,
        transform: Callable[..., tuple] | None = None,
        keep_empty: bool = True,
        category_ids: Sequence[int] | None = None,
        min_box_size: float = 1.0,
        on_unreadable: str = "skip",
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_json = Path(annotation_json)
        self.transform = transform
        self.keep_empty = keep_empty
        self.min_box_size = float(min_box_size)
        if on_unreadable not in ("skip", "substitute"):
            raise ValueError(f"on_unreadable={on_unreadable!r} is not one of ['skip', 'substitute']")
        self.on_unreadable = on_unreadable
        self._problems: list[Problem] = []
        self._counts: dict[str, int] = {}

        collector = _AnnotationCollector()
        data = _read_json(self.annotation_json, collector)
        if not isinstance(data, dict):
            raise ValueError(f"{self.annotation_json}: expected a JSON object with 'images', got {type(data).__name__}")
        images = data.get("images")
        if not isinstance(images, list):
            raise ValueError(f"{self.annotation_json}: 'images' must be a list of image entries")
        if not isinstance(data.get("annotations", []), list):
            raise ValueError(f"{self.annotation_json}: 'annotations' must be a list")
        self._set_categories(data.get("categories"), category_ids)
        img = self._parse_images(images)
        del data, images
        self._build_index(img, collector)
        del collector, img
        _release_memory()

        # Flags of faults found while loading files, shared with DataLoader workers.
        self._load_flags = torch.zeros(len(self), dtype=torch.uint8).share_memory_()
        self._load_details: dict[tuple[int, str], str] = {}
        self._log_summary()

    # --------------------------------------------------------------------- parsing steps

    def _set_categories(self, categories: Any, category_ids: Sequence[int] | None) -> None:
        src = self.annotation_json
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
        self.category_ids: list[int] = ids
        self.class_names: list[str] = [names.get(c, f"class_{c}") for c in ids]
        self.category_to_label: dict[int, int] = {c: k for k, c in enumerate(ids)}

    def _parse_images(self, images: list) -> dict[str, Any]:
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
        self._counts["images"] = len(images)
        return {
            "ids": np.asarray(ids, dtype=np.int64),
            "sizes": np.asarray(sizes, dtype=np.int32).reshape(-1, 2),
            "names": names,
        }

    def _build_index(self, img: dict[str, Any], col: _AnnotationCollector) -> None:
        """Check every annotation, then store the kept boxes grouped per image (see :meth:`_store`)."""
        n_ann = len(col)
        self._counts["annotations"] = n_ann
        rows = np.frombuffer(col.ids, dtype=np.int64).reshape(-1, 4) if n_ann else np.zeros((0, 4), np.int64)
        xywh = np.frombuffer(col.xywh, dtype=np.float64).reshape(-1, 4) if n_ann else np.zeros((0, 4))
        ann = {"id": rows[:, 0], "image_id": rows[:, 1], "category_id": rows[:, 2], "crowd": rows[:, 3].astype(bool), "xywh": xywh}
        ann["image_index"] = _lookup(img["ids"], ann["image_id"])
        ann["label"] = _lookup(np.asarray(self.category_ids, dtype=np.int64), ann["category_id"])
        keep, xyxy = self._check_annotations(ann, img, dict(col.invalid))
        self._store(img, ann, keep, xyxy)

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
        x1, y1, w, h = np.where(np.isfinite(xywh), xywh, 0.0).T
        x2, y2 = x1 + w, y1 + h
        hw = img["sizes"][image_index.clip(0)].astype(np.float64) if len(img["sizes"]) else np.zeros((len(xywh), 2))
        W = np.where(hw[:, 1] > 0, hw[:, 1], np.inf)
        H = np.where(hw[:, 0] > 0, hw[:, 0], np.inf)
        xyxy = np.stack([np.clip(x1, 0, W), np.clip(y1, 0, H), np.clip(x2, 0, W), np.clip(y2, 0, H)], axis=1)
        small = (xyxy[:, 2] - xyxy[:, 0] <= self.min_box_size) | (xyxy[:, 3] - xyxy[:, 1] <= self.min_box_size)
        report("degenerate_boxes", keep & small, lambda i: f"bbox {xywh[i].tolist()} has width or height <= "
               f"{self.min_box_size:g} px inside the {_fmt_size(hw[i])} image; dropped")
        keep &= ~small
        outside = np.maximum.reduce([-x1, -y1, x2 - W, y2 - H])
        report("clamped_boxes", keep & (outside > _CLAMP_TOLERANCE), lambda i: f"bbox {xywh[i].tolist()} extends "
               f"{outside[i]:.1f} px outside the {_fmt_size(hw[i])} image; clamped")
        return keep, xyxy

    def _store(self, img: dict[str, Any], ann: dict[str, np.ndarray], keep: np.ndarray, xyxy: np.ndarray) -> None:
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

        self._boxes = xyxy[k_idx].astype(np.float32)
        self._labels = ann["label"][k_idx].astype(np.int64)
        self._crowd = ann["crowd"][k_idx]
        counts = np.bincount(k_img, minlength=int(kept_images.sum()))
        self._box_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._image_ids = img["ids"][kept_images]
        self._sizes = img["sizes"][kept_images]
        encoded = [n.encode("utf-8") for n, k in zip(img["names"], kept_images.tolist()) if k]
        self._name_blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        self._name_offsets = np.concatenate([[0], np.cumsum([len(b) for b in encoded], dtype=np.int64)]).astype(np.int64)

        c = self._counts
        c["images_kept"] = int(kept_images.sum())
        c["images_empty"] = int((counts == 0).sum())
        c["images_dropped_empty"] = int(n_img - kept_images.sum())
        c["boxes"] = int(len(k_idx))
        c["crowd_boxes"] = int(self._crowd.sum())

    def _problem(self, kind: str, ann_id: int | None, image_id: int | None, file: str | None, detail: str) -> None:
        self._problems.append(Problem(kind, ann_id, image_id, file, detail))

    def _log_summary(self) -> None:
        parse = {k: v for k, v in self.stats.items() if k in PARSE_PROBLEMS and v}
        if parse:
            log.warning("%s: %s (see CocoDetection.problems or `ssdlite check-data`)", self.annotation_json,
                        ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in parse.items()))

    # --------------------------------------------------------------------- public API

    def __len__(self) -> int:
        return len(self._image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @property
    def image_ids(self) -> np.ndarray:
        """(N,) int64 json image ids in dataset order."""
        return self._image_ids

    def file_name(self, i: int) -> str:
        """The json ``file_name`` of sample ``i``."""
        a, b = self._name_offsets[i], self._name_offsets[i + 1]
        return self._name_blob[a:b].tobytes().decode("utf-8")

    def image_path(self, i: int) -> Path:
        return self.image_dir / self.file_name(i)

    def image_size(self, i: int) -> tuple[int, int]:
        """(h, w) from the json; (0, 0) when the json has none."""
        h, w = self._sizes[i]
        return int(h), int(w)

    def get_annotations(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes ``(G, 4)`` float32 xyxy pixels of the file (json size), labels ``(G,)`` int64, iscrowd ``(G,)`` bool.

        No image is read; these are copies, safe to modify.
        """
        a, b = self._box_offsets[i], self._box_offsets[i + 1]
        return self._boxes[a:b].copy(), self._labels[a:b].copy(), self._crowd[a:b].copy()

    def get_target(self, i: int) -> dict[str, Any]:
        """The target of sample ``i`` in the file's own frame, without reading the image."""
        boxes, labels, crowd = self.get_annotations(i)
        return {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(labels),
            "iscrowd": torch.from_numpy(crowd),
            "image_id": int(self._image_ids[i]),
            "orig_size": self.image_size(i),
        }

    def load_image(self, i: int) -> np.ndarray | None:
        """Decoded ``(h, w, 3)`` uint8 RGB of sample ``i``, or None (warned once, counted) if unusable.

        When the json size is the file's size before its EXIF rotation (and not after), the
        annotations were made on the stored pixels: the rotation is ignored (``exif_orientation``).
        """
        path = self.image_path(i)
        try:
            buf = np.fromfile(path, dtype=np.uint8)
        except FileNotFoundError:
            self._flag(i, "missing_images", "image file not found (sample skipped)")
            return None
        except OSError as e:
            self._flag(i, "unreadable_images", f"cannot read the file: {e.strerror or e} (sample skipped)")
            return None
        img = _decode_bytes(buf)
        if img is None:
            self._flag(i, "unreadable_images", "cannot decode the file: empty, truncated or not an image (sample skipped)")
            return None
        jh, jw = self.image_size(i)
        raw = _stored_orientation(buf, img, (jh, jw))
        if raw is not None:
            self._flag(i, "exif_orientation", f"the json size {jw}x{jh} (w x h) is the file's before its EXIF rotation: "
                       "the boxes fit the stored pixels, so the rotation is ignored for this file")
            return raw
        return img

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]] | None:
        image = self.load_image(i)
        if image is None:
            if self.on_unreadable == "substitute":
                # the next readable sample; files known to be bad (flags shared with the workers)
                # are passed over without decoding, so each bad file is decoded once per process
                bad = _LOAD_BITS["missing_images"] | _LOAD_BITS["unreadable_images"]
                for j in range(i + 1, i + len(self)):
                    j %= len(self)
                    if not int(self._load_flags[j]) & bad:
                        image = self.load_image(j)
                        if image is not None:
                            return self._sample(j, image)
                st = self.stats
                raise ValueError(
                    f"no readable image in {self.image_dir}: all {len(self)} files of {self.annotation_json} are missing "
                    f"({st['missing_images']}) or unreadable ({st['unreadable_images']}); check the image folder "
                    f"(`ssdlite check-data --images {self.image_dir} --annotations {self.annotation_json}`)"
                )
            return None
        return self._sample(i, image)

    def _sample(self, i: int, image: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        h, w = image.shape[:2]
        boxes, labels, crowd = self.get_annotations(i)
        jh, jw = self.image_size(i)
        if (jh, jw) != (h, w):
            if jh > 0:
                self._flag(i, "size_mismatch", _size_detail(h, w, jh, jw))
            boxes, labels, crowd = _clamp(boxes, labels, crowd, h, w, self.min_box_size)
        if self.transform is not None:
            tensor, boxes, labels, crowd = self.transform(image, boxes, labels, crowd)
        else:
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        target = {
            "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64),
            "iscrowd": torch.as_tensor(crowd, dtype=torch.bool),
            "image_id": int(self._image_ids[i]),
            "orig_size": (h, w),
        }
        return tensor, target

    # --------------------------------------------------------------------- faults

    def _flag(self, i: int, kind: str, detail: str) -> None:
        """Count a load fault of sample ``i`` once (shared with workers) and warn about it once."""
        bit = _LOAD_BITS[kind]
        flags = self._load_flags
        if int(flags[i]) & bit:
            return
        flags[i] = int(flags[i]) | bit
        self._load_details[(i, kind)] = detail  # this process only; other processes' faults get the generic text
        log.warning("%s: %s", self.image_path(i), detail)

    def check_images(self, progress: Callable[[int, int], None] | None = None, decode: bool = True) -> list[Problem]:
        """Check every image file once (no transform) and return the load problems found.

        ``decode=True`` decodes each file as training would (finds every load problem);
        ``decode=False`` only opens each file and checks that it starts like an image OpenCV
        reads (finds missing, empty and non-image files; not truncated ones or size
        mismatches). For a data check before training; the faults also enter :attr:`stats`.
        """
        for i in range(len(self)):
            if decode:
                img = self.load_image(i)
                if img is not None:
                    jh, jw = self.image_size(i)
                    if jh > 0 and (jh, jw) != img.shape[:2]:
                        self._flag(i, "size_mismatch", _size_detail(img.shape[0], img.shape[1], jh, jw))
            else:
                path = self.image_path(i)
                try:
                    if not _looks_decodable(path):
                        self._flag(i, "unreadable_images", "empty or not an image format OpenCV reads (sample skipped)")
                except FileNotFoundError:
                    self._flag(i, "missing_images", "image file not found (sample skipped)")
                except OSError as e:
                    self._flag(i, "unreadable_images", f"cannot read the file: {e.strerror or e} (sample skipped)")
            if progress is not None:
                progress(i + 1, len(self))
        return self._load_problems()

    def _load_problems(self) -> list[Problem]:
        out = []
        flags = self._load_flags.numpy()
        for i in np.flatnonzero(flags).tolist():
            for kind, bit in _LOAD_BITS.items():
                if flags[i] & bit:
                    detail = self._load_details.get((i, kind), _LOAD_DETAIL[kind])
                    out.append(Problem(kind, None, int(self._image_ids[i]), str(self.image_path(i)), detail))
        return out

    @property
    def problems(self) -> list[Problem]:
        """Every fault found so far: the json's (at construction) then the files' (as loaded)."""
        return list(self._problems) + self._load_problems()

    @property
    def stats(self) -> dict[str, int]:
        """Counts: images, annotations, boxes kept, crowd boxes and every fault kind (see module doc)."""
        c = self._counts
        out = {k: c[k] for k in ("images", "images_kept", "images_empty", "images_dropped_empty",
                                  "annotations", "boxes", "crowd_boxes")}
        for kind in PARSE_PROBLEMS:
            out[kind] = 0
        for p in self._problems:
            out[p.kind] += 1
        flags = self._load_flags.numpy()
        for kind, bit in _LOAD_BITS.items():
            out[kind] = int(np.count_nonzero(flags & bit))
        return out

    def __repr__(self) -> str:
        return (f"CocoDetection({len(self)} images, {self._counts['boxes']} boxes, {self.num_classes} classes, "
                f"json={self.annotation_json})")


def _clamp(boxes: np.ndarray, labels: np.ndarray, crowd: np.ndarray, h: int, w: int, min_size: float):
    boxes = boxes.copy()
    np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
    ok = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)
    return boxes[ok], labels[ok], crowd[ok]


def _size_detail(h: int, w: int, jh: int, jw: int) -> str:
    return f"decoded size {w}x{h} (w x h) differs from the json's {jw}x{jh}; boxes are clamped to the decoded size"


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
