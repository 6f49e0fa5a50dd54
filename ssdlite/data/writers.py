"""A :class:`~ssdlite.data.coco_index.CocoIndex` -> COCO json, VOC xml or YOLO label files.

One split at a time; :func:`ssdlite.data.convert.convert_dataset` drives them. Each writer puts
the image files in place (a symbolic link to the source, or a copy) and writes the annotations
in its format's convention:

* COCO: ``annotations/instances_<split>.json`` (``bbox`` ``[x, y, w, h]`` pixels, ``iscrowd`` 1 for
  ignore regions, VOC attributes under ``attributes``), images in ``<split>/``;
* VOC: ``classes.txt`` (the class order), ``Annotations/<id>.xml`` (integer 1-based inclusive pixels: ``xmin = round(x1) + 1``,
  ``xmax = round(x2)``; ignore regions are ``difficult``), ``JPEGImages/``, ``ImageSets/Main/<split>.txt``;
* YOLO: ``labels/<split>/<name>.txt`` (``class cx cy w h``, fractions to 7 decimals), ``images/<split>/``;
  :func:`write_data_yaml` writes ``data.yaml``. YOLO has no ignore regions: they are left out.

Pixel boxes need the image size: from the index, else from the image header
(:func:`ssdlite.data.images.read_image_size`), which is also how a YOLO index gets pixel boxes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator
from xml.sax.saxutils import escape

import numpy as np

from ssdlite.data.coco_index import CocoIndex
from ssdlite.data.images import read_image_size
from ssdlite.data.index_rows import OCCLUDED, TRUNCATED
from ssdlite.data.voc import CLASS_FILE
from ssdlite.files import atomic_write

__all__ = ["coco_dict", "write_coco", "write_voc", "write_yolo", "write_data_yaml", "pixel_boxes"]


def _name(index: CocoIndex, i: int) -> str:
    a, b = index.name_offsets[i], index.name_offsets[i + 1]
    return index.name_blob[a:b].tobytes().decode("utf-8")


def pixel_boxes(index: CocoIndex, image_dir: Path, skipped: list[str] | None = None
                ) -> Iterator[tuple[int, str, tuple[int, int], slice, np.ndarray]]:
    """Per image: ``(i, file name, (h, w), its slice of the box arrays, boxes (G, 4) float64 xyxy pixels)``.

    Sizes missing from the index are read from the image headers. An image whose size cannot be
    read raises ``ValueError`` naming it (a conversion would not be faithful), or, when
    ``skipped`` is a list, is appended to it and left out (evaluation, which skips it too).
    """
    for i in range(len(index.image_ids)):
        name = _name(index, i)
        h, w = (int(v) for v in index.sizes[i])
        if not (h > 0 and w > 0):
            try:
                h, w = read_image_size(image_dir / name)
            except ValueError:
                if skipped is None:
                    raise
                skipped.append(str(image_dir / name))
                continue
        sl = slice(int(index.box_offsets[i]), int(index.box_offsets[i + 1]))
        boxes = index.boxes[sl].astype(np.float64)
        if index.normalized:
            boxes = boxes * np.array([w, h, w, h], dtype=np.float64)
        yield i, name, (h, w), sl, boxes


def coco_dict(index: CocoIndex, image_dir: Path, skipped: list[str] | None = None) -> dict[str, Any]:
    """The index as a COCO instances dict (images, annotations, categories): the in-memory ground
    truth of a VOC or YOLO split for the COCO evaluation, and the COCO writer's content.
    ``skipped``: as for :func:`pixel_boxes`."""
    images, annotations = [], []
    attrs = index.attributes
    for i, name, (h, w), sl, boxes in pixel_boxes(index, image_dir, skipped):
        image_id = int(index.image_ids[i])
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for k, (x1, y1, x2, y2) in zip(range(sl.start, sl.stop), boxes.tolist()):
            bw, bh = x2 - x1, y2 - y1
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(index.category_ids[index.labels[k]]),
                   "bbox": [round(x1, 6), round(y1, 6), round(bw, 6), round(bh, 6)], "area": round(bw * bh, 6),
                   "iscrowd": int(index.crowd[k]), "segmentation": []}
            if attrs is not None:
                ann["attributes"] = {"truncated": bool(attrs[k] & TRUNCATED), "occluded": bool(attrs[k] & OCCLUDED)}
                if index.crowd[k]:  # a VOC difficult object: the VOC metrics score it as the devkit does, not as a crowd
                    ann["difficult"] = 1
            annotations.append(ann)
    categories = [{"id": int(c), "name": n} for c, n in zip(index.category_ids, index.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def place_image(src: Path, dst: Path, copy: bool) -> None:
    """Link (symbolic, to the absolute source) or copy one image file; ``ValueError`` when it is missing."""
    if not src.is_file():
        raise ValueError(f"image file not found: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if copy:
        shutil.copy2(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def write_coco(index: CocoIndex, image_dir: Path, dst: Path, split: str, copy: bool = False) -> Path:
    """``dst/annotations/instances_<split>.json`` and ``dst/<split>/`` images; returns the json path."""
    data = coco_dict(index, image_dir)
    for im in data["images"]:
        place_image(image_dir / im["file_name"], dst / split / im["file_name"], copy)
    out = dst / "annotations" / f"instances_{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write(json.dumps(data).encode("utf-8")))
    return out


def write_voc(index: CocoIndex, image_dir: Path, dst: Path, split: str, copy: bool = False) -> Path:
    """``dst/Annotations/<id>.xml``, ``dst/JPEGImages/``, ``dst/ImageSets/Main/<split>.txt``; returns the list file.

    The id of an image is its file name's stem; two images of one stem are an error naming both.
    """
    (dst / "Annotations").mkdir(parents=True, exist_ok=True)
    ids: dict[str, str] = {}
    for i, name, (h, w), sl, boxes in pixel_boxes(index, image_dir):
        base = os.path.basename(name)
        id_ = os.path.splitext(base)[0]
        if id_ in ids:
            raise ValueError(f"VOC names images by file stem: {ids[id_]} and {name} would both be {id_!r}")
        ids[id_] = name
        place_image(image_dir / name, dst / "JPEGImages" / base, copy)
        objects = [_voc_object(index, k, box, h, w) for k, box in zip(range(sl.start, sl.stop), boxes.tolist())]
        xml = (f"<annotation>\n\t<folder>JPEGImages</folder>\n\t<filename>{escape(base)}</filename>\n"
               f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
               f"\t<segmented>0</segmented>\n{''.join(objects)}</annotation>\n")
        (dst / "Annotations" / f"{id_}.xml").write_text(xml, encoding="utf-8")
    out = dst / "ImageSets" / "Main" / f"{split}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    (dst / CLASS_FILE).write_text("".join(f"{n}\n" for n in index.class_names), encoding="utf-8")
    return out


def _voc_object(index: CocoIndex, k: int, box: list[float], h: int, w: int) -> str:
    """One ``<object>``: 0-based continuous xyxy -> VOC's 1-based inclusive integer pixels."""
    x1, y1, x2, y2 = box
    xmin, ymin = min(max(round(x1) + 1, 1), w), min(max(round(y1) + 1, 1), h)
    xmax, ymax = max(min(round(x2), w), xmin), max(min(round(y2), h), ymin)
    a = int(index.attributes[k]) if index.attributes is not None else 0
    name = escape(index.class_names[int(index.labels[k])])
    return (f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>{int(bool(a & TRUNCATED))}</truncated>\n\t\t<occluded>{int(bool(a & OCCLUDED))}</occluded>\n"
            f"\t\t<difficult>{int(index.crowd[k])}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n"
            f"\t\t\t<ymin>{ymin}</ymin>\n\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n\t</object>\n")


def write_yolo(index: CocoIndex, image_dir: Path, dst: Path, split: str, copy: bool = False) -> Path:
    """``dst/images/<split>/`` and ``dst/labels/<split>/<name>.txt``; returns the image folder.
    Ignore regions (COCO crowd, VOC difficult) have no YOLO form and are left out."""
    for i, name, (h, w), sl, boxes in _yolo_boxes(index, image_dir):
        place_image(image_dir / name, dst / "images" / split / name, copy)
        lines = []
        for k, (x1, y1, x2, y2) in zip(range(sl.start, sl.stop), boxes.tolist()):
            if not index.crowd[k]:
                lines.append(f"{int(index.labels[k])} {(x1 + x2) / 2:.7f} {(y1 + y2) / 2:.7f} {x2 - x1:.7f} {y2 - y1:.7f}\n")
        label = dst / "labels" / split / (os.path.splitext(name)[0] + ".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(lines), encoding="utf-8")
    return dst / "images" / split


def _yolo_boxes(index: CocoIndex, image_dir: Path) -> Iterator[tuple[int, str, tuple[int, int], slice, np.ndarray]]:
    """Per image as :func:`pixel_boxes`, boxes as fractions of the image size (no size needed when already so)."""
    if index.normalized:
        for i in range(len(index.image_ids)):
            sl = slice(int(index.box_offsets[i]), int(index.box_offsets[i + 1]))
            yield i, _name(index, i), (0, 0), sl, index.boxes[sl].astype(np.float64)
        return
    for i, name, (h, w), sl, boxes in pixel_boxes(index, image_dir):
        yield i, name, (h, w), sl, boxes / np.array([w, h, w, h], dtype=np.float64)


def write_data_yaml(dst: Path, class_names: list[str], splits: list[str]) -> Path:
    """``dst/data.yaml``: ``path: .``, one ``images/<split>`` entry per split, ``names`` as a list."""
    import yaml

    data: dict[str, Any] = {"path": "."}
    data.update({s: f"images/{s}" for s in splits})
    data["names"] = list(class_names)
    out = dst / "data.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out
