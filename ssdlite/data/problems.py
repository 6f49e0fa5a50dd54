"""The data faults that :class:`ssdlite.data.coco.CocoDetection` repairs or skips, counts and names.

Every fault found on the way is repaired or skipped, counted in
:attr:`ssdlite.data.coco.CocoDetection.stats` and named in
:attr:`ssdlite.data.coco.CocoDetection.problems` (one :class:`Problem` per annotation or file),
so that a report (:mod:`ssdlite.data.check`) can list each one and a training log can repeat
the counts:

========================  =============================================================
``invalid_images``        image entry without an integer ``id`` or a ``file_name`` (dropped)
``duplicate_image_ids``   a later image entry reusing an id (dropped; the first one wins)
``missing_image_size``    ``width``/``height`` absent or not positive (boxes clamped at load)
``unknown_image``         annotation whose ``image_id`` is not an image (dropped)
``unknown_category``      annotation whose ``category_id`` is not a category (dropped)
``invalid_boxes``         ``bbox`` missing, not 4 numbers, NaN or infinite (dropped)
``clamped_boxes``         box more than 1 px outside the image (clamped, kept)
``degenerate_boxes``      width or height <= 1 px after clamping (dropped)
``malformed_annotations`` a VOC xml that does not parse or lacks its fields, a YOLO label line
                          without 5 numbers (the file's image, or the line, dropped)
``orphan_labels``         a YOLO label file with no image of its name (ignored)
``duplicate_file_names``  a second image of the same file name in another folder (dropped:
                          converted datasets name images by file name)
``missing_images``        image file absent (sample skipped, found at load time)
``unreadable_images``     file not decodable: truncated, not an image, ... (skipped at load)
``size_mismatch``         decoded size differs from the json (decoded wins, boxes re-clamped)
``exif_orientation``      the json size is the file's size *before* its EXIF rotation: the
                          boxes were drawn on the stored pixels, so the rotation is ignored
========================  =============================================================

The first eleven (:data:`PARSE_PROBLEMS`) are found while the annotations are parsed
(:mod:`ssdlite.data.coco_index`, :mod:`ssdlite.data.voc`, :mod:`ssdlite.data.yolo`). The last four (:data:`LOAD_PROBLEMS`) are found while loading
samples (:mod:`ssdlite.data.coco`); the flags live in shared memory so the counts seen by the
main process include what every DataLoader worker found.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Problem", "PARSE_PROBLEMS", "LOAD_PROBLEMS"]

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
    "malformed_annotations",
    "orphan_labels",
    "duplicate_file_names",
)
LOAD_PROBLEMS = ("missing_images", "unreadable_images", "size_mismatch", "exif_orientation")


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
