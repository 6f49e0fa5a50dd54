"""Converting datasets between COCO, VOC and YOLO, and a split's in-memory COCO ground truth.

>>> result = convert_dataset("VOCdevkit/VOC2012", "yolo", "data/voc_yolo")      # the format is detected
>>> result.splits, result.counts, result.problems

Every source split is read by its format's reader (:mod:`ssdlite.data.formats`) into the common
index and written by the target's writer (:mod:`ssdlite.data.writers`): the same images (linked,
or copied with ``copy=True``), the same classes in the same order and the same boxes up to each
format's precision (YOLO: 7 decimals of the image size; VOC: integer pixels, 1-based). What a
reader skips (its problems, each named) is not written; the result lists it. Ignore regions (VOC
``difficult``, COCO ``iscrowd``) become the other's; YOLO has none and leaves them out.

:func:`split_ground_truth` is the same conversion to COCO in memory, for evaluating on a VOC or
YOLO val split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ssdlite.data.coco_index import CocoIndex
from ssdlite.data.formats import detect_format, get_format, open_split, read_split
from ssdlite.data.problems import Problem
from ssdlite.data.voc import read_voc_index
from ssdlite.data.writers import coco_dict, write_data_yaml
from ssdlite.data.yolo import read_data_yaml

__all__ = ["ConvertResult", "convert_dataset", "source_splits", "split_ground_truth"]

_YOLO_SPLITS = ("train", "val", "test")


@dataclass
class ConvertResult:
    """What :func:`convert_dataset` wrote: ``splits`` {target split: what it holds}, the source's problems."""

    source_format: str
    target_format: str
    output: Path
    splits: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # images and boxes written
    problems: list[Problem] = field(default_factory=list)


def source_splits(src: str | os.PathLike, fmt: str | None = None, images: str | None = None, split: str | None = None
                  ) -> tuple[str, list[tuple[str, Path, CocoIndex]]]:
    """The format of ``src`` and its splits as ``(name, image folder, index)``, with one class list.

    COCO: the json is one split (named by its stem without ``instances_``); its images are
    ``images`` or, in the layout this module writes, ``<root>/<split>/``. VOC: ``split``, else
    each of ImageSets/Main/{train,val,test}.txt that exists, else every xml (split ``all``); the
    classes are those of ``classes.txt``, else every name found in them, sorted. YOLO: ``split``, else every split of the yaml.
    """
    fmt, location = (fmt, Path(src)) if fmt else detect_format(src)
    if fmt == "coco":
        name = location.stem.removeprefix("instances_")
        img = images or str(location.parent.parent / name)
        return fmt, [(name, *read_split("coco", location, img))]
    if fmt == "voc":
        names = [split] if split else [s for s in _YOLO_SPLITS if (location / "ImageSets" / "Main" / f"{s}.txt").is_file()]
        out = [(s or "all", *read_voc_index(location, s)) for s in (names or [None])]
        classes = sorted({c for _, _, ix in out for c in ix.class_names})
        if any(ix.class_names != out[0][2].class_names for _, _, ix in out):  # one class list for every split
            out = [(n, *read_voc_index(location, None if n == "all" else n, classes)) for n, _, _ in out]
        return fmt, out
    get_format(fmt)
    names = [split] if split else [s for s in _YOLO_SPLITS if s in read_data_yaml(location)]
    return fmt, [(s, *read_split(fmt, location, split=s)) for s in names]


def convert_dataset(src: str | os.PathLike, to: str, output: str | os.PathLike, source_format: str | None = None,
                    images: str | None = None, split: str | None = None, copy: bool = False) -> ConvertResult:
    """Convert the dataset at ``src`` (format detected, or ``source_format``) to ``to`` in ``output``.

    ``output`` must be empty or absent. Raises ``ValueError`` naming the problem when the source
    cannot be read, has no image at all, or two of its images would get one name in the target.
    """
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output {out} exists and is not an empty folder; choose a new one")
    writer = get_format(to).write
    fmt, splits = source_splits(src, source_format, images, split)
    if not splits or not sum(len(ix.image_ids) for _, _, ix in splits):
        raise ValueError(f"{src}: no image to convert")
    result = ConvertResult(fmt, to, out, counts={"images": 0, "boxes": 0, "ignore_regions": 0})
    targets = [_yolo_split(n) if to == "yolo" else n for n, _, _ in splits]
    if len(set(targets)) != len(targets):
        raise ValueError(f"source splits {[n for n, _, _ in splits]} map onto the same YOLO split; convert them one at a time (--split)")
    out.mkdir(parents=True, exist_ok=True)
    for target, (name, image_dir, index) in zip(targets, splits):
        where = writer(index, image_dir, out, target, copy)
        result.splits[target] = f"{name}: {len(index.image_ids)} images, {len(index.boxes)} boxes -> {where}"
        result.counts["images"] += len(index.image_ids)
        result.counts["boxes"] += len(index.boxes)
        result.counts["ignore_regions"] += int(index.crowd.sum())
        result.problems += index.problems
    if to == "yolo":
        write_data_yaml(out, list(splits[0][2].class_names), targets)
    return result


def _yolo_split(name: str) -> str:
    """A source split's YOLO key: itself when train / val / test, else the first of them its name contains."""
    for key in ("val", "test", "train"):
        if name == key or key in name:
            return key
    return "train"


def split_ground_truth(split: Any, class_names: Sequence[str] | None = None, skipped: list[str] | None = None
                       ) -> tuple[str | Path, Any]:
    """``(image folder, ground truth)`` of a config split for the COCO evaluation: the json path for
    COCO, the split converted to an in-memory COCO dict for VOC and YOLO (category ids ``1..C`` in
    ``class_names`` order: a trained model's). Images whose size cannot be read go to ``skipped``."""
    if split.format == "coco":
        if not split.images or not split.annotations:
            raise ValueError("the coco split needs images and annotations")
        return split.images, split.annotations
    image_dir, index = open_split(split, keep_empty=True, class_names=class_names, default_split="val")
    if class_names and list(index.class_names) != list(class_names):
        raise ValueError(f"{index.source} has the classes {index.class_names}, the model {list(class_names)}")
    unknown = [p for p in index.problems if p.kind == "unknown_category"]
    if class_names and unknown and not index.counts.get("boxes", 0):  # nothing could be scored: an error, not AP -1
        shown = ", ".join(list(class_names)[:4]) + (", ..." if len(class_names) > 4 else "")
        raise ValueError(f"{index.source}: none of its objects is of the model's classes ({shown}): {unknown[0]}; "
                         "score a model trained on this dataset's classes")
    return image_dir, coco_dict(index, image_dir, skipped if skipped is not None else [])
