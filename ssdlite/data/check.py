"""Check a COCO, VOC or YOLO dataset before training: every problem once, with where it is and what training does.

>>> report = check_dataset("data/train", "data/annotations/instances_train.json")
>>> print(report.format_report())            # one line per problem, then the counts
>>> report.counts["unreadable_images"], report.ok

The checks are :class:`ssdlite.data.CocoDetection`'s own (the json while it is parsed, then
every image file), so the report names exactly what training will skip, drop, clamp or
repair, and its counts are the ones the training log prints (``CocoDetection.stats``).
Problem kinds: see :mod:`ssdlite.data.problems`; on top of them the report flags a dataset with
no images (``no_images``) or no usable box at all (``no_boxes``): training would have nothing
to learn from.

A json that cannot be parsed (invalid JSON: the error gives line and column; not UTF-8;
``images`` not a list) or a missing image folder is not a list of problems but a
``ValueError`` naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from ssdlite.data.coco import CocoDetection
from ssdlite.data.formats import read_split
from ssdlite.data.problems import LOAD_PROBLEMS, PARSE_PROBLEMS, Problem

__all__ = ["Report", "check_dataset", "PROBLEM_KINDS", "DATASET_PROBLEMS"]

DATASET_PROBLEMS = ("no_images", "no_boxes")
PROBLEM_KINDS = PARSE_PROBLEMS + LOAD_PROBLEMS + DATASET_PROBLEMS

# what each kind means for training (for the report's summary lines)
_ACTION = {
    "invalid_images": "image entries dropped",
    "duplicate_image_ids": "later entries dropped, first kept",
    "missing_image_size": "sizes taken from the files",
    "unknown_image": "annotations dropped",
    "unknown_category": "annotations dropped",
    "invalid_boxes": "annotations dropped",
    "clamped_boxes": "boxes clamped to the image",
    "degenerate_boxes": "boxes dropped",
    "malformed_annotations": "files or lines dropped",
    "orphan_labels": "label files ignored",
    "duplicate_file_names": "later images dropped",
    "missing_images": "samples skipped",
    "unreadable_images": "samples skipped",
    "size_mismatch": "decoded size used, boxes clamped",
    "exif_orientation": "EXIF rotation ignored",
    "no_images": "nothing to train on",
    "no_boxes": "nothing to learn",
}


@dataclass
class Report:
    """What :func:`check_dataset` found.

    problems: each fault once (kind, annotation id, image id, file, detail), json faults first.
    counts: ``CocoDetection.stats`` (images, images_kept, annotations, boxes, crowd_boxes and
        every problem kind of :mod:`ssdlite.data.problems`) plus ``no_images`` / ``no_boxes``.
    decoded: whether every image file was decoded (else only opened and its header checked).
    """

    images: str
    annotations: str
    problems: list[Problem]
    counts: dict[str, int]
    decoded: bool
    class_names: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problem_counts(self) -> dict[str, int]:
        """``{kind: count}`` of the kinds found, in :data:`PROBLEM_KINDS` order."""
        return {k: self.counts[k] for k in PROBLEM_KINDS if self.counts.get(k)}

    def summary(self) -> str:
        c = self.counts
        unusable = c["missing_images"] + c["unreadable_images"]
        head = (
            f"{c['images']} images ({c['images_kept']} entries kept, {unusable} files unusable), {c['annotations']} "
            f"annotations ({c['boxes']} boxes kept, {c['crowd_boxes']} crowd), {len(self.class_names)} categories"
        )
        found = self.problem_counts
        if not found:
            return f"{head}; no problems found"
        parts = [f"{n} {k} ({_ACTION[k]})" for k, n in found.items()]
        return f"{head}; {len(self.problems)} problems: " + ", ".join(parts)

    def format_report(self) -> str:
        """One line per problem (``kind: where: detail``), then a summary line with the counts."""
        lines = [f"check-data: {self.annotations} (images in {self.images})"]
        lines += [str(p) for p in self.problems]
        if not self.decoded:
            lines.append(
                "note: image files were opened, not decoded (truncated JPEG / PNG files were found by their end "
                "marker): sizes that disagree with the json and EXIF orientation were not checked (--decode)"
            )
        lines.append("summary: " + self.summary())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "annotations": self.annotations,
            "decoded": self.decoded,
            "ok": self.ok,
            "counts": dict(self.counts),
            "problem_counts": self.problem_counts,
            "problems": [p._asdict() for p in self.problems],
        }


@contextlib.contextmanager
def _quiet(name: str = "ssdlite.data") -> Iterator[None]:
    """Silence the dataset's per-file warnings: the report lists every problem itself."""
    logger = logging.getLogger(name)
    old = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = old


def check_dataset(
    images: str | os.PathLike | None,
    annotations: str | os.PathLike,
    decode: bool = True,
    progress: Callable[[int, int], None] | None = None,
    fmt: str = "coco",
    split: str | None = None,
    classes: Sequence[str] | None = None,
) -> Report:
    """Every problem of a COCO, VOC or YOLO dataset, as training (``CocoDetection``) sees it.

    Args:
        images: COCO: the folder the json's ``file_name`` entries are relative to (else unused).
        annotations: the COCO instances json, the VOC folder or the YOLO data.yaml.
        fmt, split, classes: the format and, for VOC / YOLO, the split and the VOC class list
            (see :func:`ssdlite.data.formats.read_split`).
        decode: decode every image (finds truncated files and size mismatches; as slow as one
            epoch of data loading) or only check that each file exists and starts like an image.
        progress: ``progress(done, total)`` after each image file.

    Raises:
        ValueError: the json cannot be parsed (the message gives line and column), or the image
            folder does not exist.
    """
    with _quiet():
        images, index = read_split(fmt, annotations, None if images is None else str(images), split, classes)
        ds = CocoDetection(images, index, transform=None, keep_empty=True)
        ds.check_images(progress=progress, decode=decode)
    annotations = index.source
    problems = ds.problems
    counts = ds.stats
    counts["no_images"] = counts["no_boxes"] = 0
    if len(ds) == 0:
        problems.append(Problem("no_images", None, None, str(annotations),
                                f"no usable image entry among the json's {counts['images']} (training cannot start)"))
        counts["no_images"] = 1
    elif counts["missing_images"] + counts["unreadable_images"] == len(ds):
        problems.append(Problem("no_images", None, None, str(images),
                                f"none of the {len(ds)} image files is readable: wrong image folder? (training cannot start)"))
        counts["no_images"] = 1
    elif counts["boxes"] == 0:
        why = "the json has no annotations" if counts["annotations"] == 0 else f"all {counts['annotations']} annotations were dropped"
        problems.append(Problem("no_boxes", None, None, str(annotations),
                                f"{why}: every image is a negative, a detector has nothing to learn"))
        counts["no_boxes"] = 1
    return Report(str(images), str(annotations), problems, counts, decode, list(ds.class_names))
