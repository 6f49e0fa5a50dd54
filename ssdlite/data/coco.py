"""The torch ``Dataset`` of COCO-format detection samples: compact, fork-friendly, faults counted.

:class:`CocoDetection` reads its annotation json once with
:func:`ssdlite.data.coco_index.read_coco_index`, which keeps what training needs in a handful
of numpy arrays and drops the parsed json: forked DataLoader workers therefore never touch
millions of Python objects, which is what makes them copy the parent's memory page by page
(pytorch/pytorch#13246). Image files are read with OpenCV (:mod:`ssdlite.data.images`).

Every fault found on the way is repaired or skipped, counted in :attr:`CocoDetection.stats`
and named in :attr:`CocoDetection.problems` (one :class:`ssdlite.data.problems.Problem` per
annotation or file): the json's while it is parsed, the files' (``missing_images``,
``unreadable_images``, ``size_mismatch``, ``exif_orientation``) while samples load. The table
of problem kinds is in :mod:`ssdlite.data.problems`. The load flags live in shared memory so
the counts seen by the main process include what every DataLoader worker found.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ssdlite.data.coco_index import CocoIndex, read_coco_index
from ssdlite.data.images import _TAIL, _decode_bytes, _looks_decodable, _stored_orientation, _truncation, _truncation_of
from ssdlite.data.problems import LOAD_PROBLEMS, PARSE_PROBLEMS, Problem

__all__ = ["CocoDetection"]

log = logging.getLogger("ssdlite.data")

_LOAD_BITS = {kind: 1 << k for k, kind in enumerate(LOAD_PROBLEMS)}  # one bit per load problem kind
_LOAD_DETAIL = {
    "missing_images": "image file not found (sample skipped)",
    "unreadable_images": "image file cannot be decoded (sample skipped)",
    "size_mismatch": "decoded size differs from the json width/height (decoded size used)",
    "exif_orientation": "the json width/height are the file's before its EXIF rotation (rotation ignored, boxes kept)",
}


class CocoDetection(Dataset):
    """Detection samples from a COCO-format ``annotation_json`` and the images in ``image_dir``.

    Args:
        image_dir: folder the json ``file_name`` entries are relative to.
        annotation_json: COCO instances json (``images``, ``annotations``, ``categories``), or an
            index already read from any format (:func:`ssdlite.data.formats.read_split`: VOC, YOLO;
            then ``keep_empty`` and ``category_ids`` were the reader's business).
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
        annotation_json: str | os.PathLike | CocoIndex,
        transform: Callable[..., tuple] | None = None,
        keep_empty: bool = True,
        category_ids: Sequence[int] | None = None,
        min_box_size: float = 1.0,
        on_unreadable: str = "skip",
    ) -> None:
        self.image_dir = Path(image_dir)
        given = annotation_json if isinstance(annotation_json, CocoIndex) else None
        self.annotation_json = Path(given.source if given is not None else annotation_json)  # type: ignore[arg-type]
        self.transform = transform
        self.keep_empty = keep_empty
        self.min_box_size = float(min_box_size)
        if on_unreadable not in ("skip", "substitute"):
            raise ValueError(f"on_unreadable={on_unreadable!r} is not one of ['skip', 'substitute']")
        self.on_unreadable = on_unreadable
        self._adopt(given if given is not None else
                    read_coco_index(self.annotation_json, category_ids, keep_empty, self.min_box_size))

        # Flags of faults found while loading files, shared with DataLoader workers.
        self._load_flags = torch.zeros(len(self), dtype=torch.uint8).share_memory_()
        self._load_details: dict[tuple[int, str], str] = {}
        self._log_summary()

    def _adopt(self, index: CocoIndex) -> None:
        """Keep the parsed index as attributes: numpy arrays, no Python object per image or box."""
        self.category_ids: list[int] = index.category_ids
        self.class_names: list[str] = index.class_names
        self.category_to_label: dict[int, int] = {c: k for k, c in enumerate(index.category_ids)}
        self._image_ids, self._sizes = index.image_ids, index.sizes
        self._name_blob, self._name_offsets = index.name_blob, index.name_offsets
        self._boxes, self._labels, self._crowd = index.boxes, index.labels, index.crowd
        self._box_offsets = index.box_offsets
        self._normalized = index.normalized  # YOLO: boxes are fractions of the size found when the file is read
        self._counts = index.counts
        self._problems = index.problems

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

        No image is read; these are copies, safe to modify. A YOLO index (``normalized``) gives the
        boxes as fractions of the image size until the file is read (see :meth:`__getitem__`).
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
        buf = self._read_file(i)
        if buf is None:
            return None
        cut = _truncation_of(buf[:8].tobytes(), buf[-_TAIL:].tobytes())
        img = _decode_bytes(buf) if cut is None else None
        if img is None:
            self._flag(i, "unreadable_images", f"{cut} (sample skipped)" if cut else
                       "cannot decode the file: empty, truncated or not an image (sample skipped)")
            return None
        jh, jw = self.image_size(i)
        raw = _stored_orientation(buf, img, (jh, jw))
        if raw is not None:
            self._flag(i, "exif_orientation", f"the json size {jw}x{jh} (w x h) is the file's before its EXIF rotation: "
                       "the boxes fit the stored pixels, so the rotation is ignored for this file")
            return raw
        return img

    def _read_file(self, i: int) -> np.ndarray | None:
        """The bytes of sample ``i``'s file, or None (warned once, counted) when it is missing or unreadable."""
        try:
            return np.fromfile(self.image_path(i), dtype=np.uint8)
        except FileNotFoundError:
            self._flag(i, "missing_images", "image file not found (sample skipped)")
        except OSError as e:
            self._flag(i, "unreadable_images", f"cannot read the file: {e.strerror or e} (sample skipped)")
        return None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]] | None:
        image = self.load_image(i)
        if image is not None:
            return self._sample(i, image)
        if self.on_unreadable == "substitute":
            return self._substitute(i)
        return None

    def _substitute(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The first readable sample after the unusable sample ``i`` (wrapping around); ``ValueError`` if none."""
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

    def _sample(self, i: int, image: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        h, w = image.shape[:2]
        boxes, labels, crowd = self.get_annotations(i)
        if self._normalized:
            boxes *= np.array([w, h, w, h], dtype=np.float32)
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
        ``decode=False`` only opens each file, checks that it starts like an image OpenCV
        reads and that a JPEG / PNG ends with its end marker (finds missing, empty, non-image
        and truncated files; not size mismatches). For a data check before training; the faults also enter :attr:`stats`.
        """
        for i in range(len(self)):
            if decode:
                self._check_decoded(i)
            else:
                self._check_header(i)
            if progress is not None:
                progress(i + 1, len(self))
        return self._load_problems()

    def _check_decoded(self, i: int) -> None:
        """Decode sample ``i``'s file as training would; flag every load problem, a size mismatch too."""
        img = self.load_image(i)
        if img is not None:
            jh, jw = self.image_size(i)
            if jh > 0 and (jh, jw) != img.shape[:2]:
                self._flag(i, "size_mismatch", _size_detail(img.shape[0], img.shape[1], jh, jw))

    def _check_header(self, i: int) -> None:
        """Open sample ``i``'s file without decoding; flag it when missing, empty or not an image format."""
        path = self.image_path(i)
        try:
            if not _looks_decodable(path):
                self._flag(i, "unreadable_images", "empty or not an image format OpenCV reads (sample skipped)")
            elif (cut := _truncation(path)) is not None:
                self._flag(i, "unreadable_images", f"{cut} (sample skipped)")
        except FileNotFoundError:
            self._flag(i, "missing_images", "image file not found (sample skipped)")
        except OSError as e:
            self._flag(i, "unreadable_images", f"cannot read the file: {e.strerror or e} (sample skipped)")

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
                f"from={self.annotation_json})")


def _clamp(boxes: np.ndarray, labels: np.ndarray, crowd: np.ndarray, h: int, w: int, min_size: float):
    boxes = boxes.copy()
    np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
    ok = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)
    return boxes[ok], labels[ok], crowd[ok]


def _size_detail(h: int, w: int, jh: int, jw: int) -> str:
    return f"decoded size {w}x{h} (w x h) differs from the json's {jw}x{jh}; boxes are clamped to the decoded size"

