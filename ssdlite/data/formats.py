"""The dataset formats: one row each (name, how to recognize it, its reader, its writer).

Every reader returns ``(image folder, CocoIndex)``: the same compact index, problem kinds and
counts whatever the format, so :class:`ssdlite.data.coco.CocoDetection`, ``check-data``, training,
evaluation and conversion take all three. Adding a format is adding a row.

==========  =========================================  ===========================================
format      location                                    split
==========  =========================================  ===========================================
``coco``    the instances json (+ the image folder)     -- (one json is one split)
``voc``     the folder of Annotations/, JPEGImages/     ``ImageSets/Main/<split>.txt`` or a list file;
                                                        none: every xml
``yolo``    the Ultralytics ``data.yaml``               ``train``, ``val`` or ``test``
==========  =========================================  ===========================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from ssdlite.data.coco_index import CocoIndex, read_coco_index
from ssdlite.data.voc import looks_like_voc, read_voc_index
from ssdlite.data.writers import write_coco, write_voc, write_yolo
from ssdlite.data.yolo import read_yolo_index

__all__ = ["DatasetFormat", "FORMATS", "FORMAT_NAMES", "get_format", "detect_format", "read_split", "open_split",
           "split_given", "describe_split"]


class DatasetFormat(NamedTuple):
    name: str
    description: str
    detect: Callable[[Path], bool]  # does this path look like the format's location
    # read(location, images, split, class_names, keep_empty, min_box_size) -> (image folder, index)
    read: Callable[..., tuple[Path, CocoIndex]]
    write: Callable[..., Path]  # write(index, image folder, dst, split, copy)


def _read_coco(location: Path, images: str | None, split: str | None, class_names: Sequence[str] | None,
               keep_empty: bool, min_box_size: float, category_ids: Sequence[int] | None = None) -> tuple[Path, CocoIndex]:
    if not images:
        raise ValueError(f"a COCO dataset needs its image folder beside the json {location} (images / --images)")
    if not Path(images).is_dir():
        raise ValueError(f"image folder {images} does not exist" if not Path(images).exists() else f"{images} is not a folder")
    return Path(images), read_coco_index(location, category_ids, keep_empty, min_box_size)


def _read_voc(location: Path, images: str | None, split: str | None, class_names: Sequence[str] | None,
              keep_empty: bool, min_box_size: float, category_ids: Sequence[int] | None = None) -> tuple[Path, CocoIndex]:
    return read_voc_index(location, split, class_names, keep_empty, min_box_size)


def _read_yolo(location: Path, images: str | None, split: str | None, class_names: Sequence[str] | None,
               keep_empty: bool, min_box_size: float, category_ids: Sequence[int] | None = None) -> tuple[Path, CocoIndex]:
    return read_yolo_index(location, split or "train", keep_empty, min_box_size)


FORMATS: tuple[DatasetFormat, ...] = (
    DatasetFormat("coco", "COCO instances json + image folder", lambda p: p.suffix.lower() == ".json", _read_coco, write_coco),
    DatasetFormat("voc", "Pascal VOC folder (Annotations/, JPEGImages/, ImageSets/Main/)", looks_like_voc, _read_voc, write_voc),
    DatasetFormat("yolo", "Ultralytics data.yaml + images/ and labels/ folders",
                  lambda p: p.suffix.lower() in (".yaml", ".yml") or (p / "data.yaml").is_file(), _read_yolo, write_yolo),
)
FORMAT_NAMES: tuple[str, ...] = tuple(f.name for f in FORMATS)


def get_format(name: str) -> DatasetFormat:
    for f in FORMATS:
        if f.name == name:
            return f
    raise ValueError(f"dataset format {name!r} is not one of {list(FORMAT_NAMES)}")


def detect_format(path: str | os.PathLike) -> tuple[str, Path]:
    """The format of ``path`` and its location (a folder holding ``data.yaml`` gives the yaml)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"dataset {p} does not exist")
    for f in FORMATS:
        if f.detect(p):
            return f.name, (p / "data.yaml" if f.name == "yolo" and p.is_dir() else p)
    raise ValueError(f"cannot tell the format of {p}: not a COCO .json, a VOC folder (with Annotations/) or a YOLO "
                     "data.yaml; give the format")


def read_split(fmt: str, location: str | os.PathLike, images: str | None = None, split: str | None = None,
               class_names: Sequence[str] | None = None, keep_empty: bool = True, min_box_size: float = 1.0,
               category_ids: Sequence[int] | None = None) -> tuple[Path, CocoIndex]:
    """Read one split of any format into ``(image folder, CocoIndex)`` (see the module table).

    ``class_names`` fixes the VOC classes (a trained model's); ``category_ids`` the COCO ones.
    """
    return get_format(fmt).read(Path(location), images, split, class_names, keep_empty, min_box_size, category_ids)


def split_given(split: Any) -> bool:
    """Whether a ``data.train`` / ``data.val`` config section names a dataset."""
    return bool(split.annotations if split.format == "coco" else split.root)


def describe_split(split: Any) -> str:
    """A config split in a message: the json, or the root and split."""
    if split.format == "coco":
        return str(split.annotations)
    return f"{split.root}" + (f" (split {split.split})" if split.split else "") + f" [{split.format}]"


def open_split(split: Any, keep_empty: bool = True, class_names: Sequence[str] | None = None,
               category_ids: Sequence[int] | None = None, min_box_size: float = 1.0, default_split: str = "train"
               ) -> tuple[Path, CocoIndex]:
    """Read the dataset of a config split (``data.train`` / ``data.val``: format, images, annotations,
    root, split, classes). ``class_names`` (a model's) wins over ``split.classes``; a YOLO split
    without ``split`` reads ``default_split`` (``train`` for data.train, ``val`` for data.val)."""
    if not split_given(split):
        key = f"data.{default_split}"
        need = f"{key}.images and {key}.annotations" if split.format == "coco" else f"{key}.root"
        raise ValueError(f"{need} must be set for {key}.format={split.format} (in the config or with --set)")
    location = split.annotations if split.format == "coco" else split.root
    names = class_names or (list(split.classes) if split.classes else None)
    which = split.split or (default_split if split.format == "yolo" else None)
    return read_split(split.format, location, split.images, which, names, keep_empty, min_box_size, category_ids)
