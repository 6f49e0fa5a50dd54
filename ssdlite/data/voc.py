"""Pascal VOC folders -> the compact :class:`~ssdlite.data.coco_index.CocoIndex` the COCO reader makes.

A VOC folder (``VOCdevkit/VOC2012`` or one laid out the same) holds ``Annotations/<id>.xml``,
``JPEGImages/<id>.jpg`` and ``ImageSets/Main/<split>.txt`` (one id per line). The image of ``<id>``
is the xml's ``<filename>`` when its stem is ``<id>`` (so ``.png`` images work), else
``<id>.jpg`` as the devkit reads it.

Coordinates: VOC's ``xmin, ymin, xmax, ymax`` are integer pixels, 1-based and inclusive (the
devkit's convention: the top-left pixel is (1, 1) and a box covers pixels ``xmin..xmax``). In the
index, whose boxes are continuous 0-based xyxy pixels, that box is ``[xmin - 1, ymin - 1, xmax,
ymax]`` (as detectron2 reads VOC); :mod:`ssdlite.data.convert` writes the inverse, so VOC -> index
-> VOC is exact.

``difficult`` objects are kept as ignore regions (``crowd``): the matcher neither trains them as
positives nor as negatives, and the COCO evaluation ignores detections on them (``iscrowd``), as
the VOC devkit ignores difficult objects. ``truncated`` and ``occluded`` are kept in
``CocoIndex.attributes`` (bits :data:`~ssdlite.data.index_rows.TRUNCATED`, ``OCCLUDED``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

from ssdlite.data.coco_index import CocoIndex
from ssdlite.data.index_cache import cache_file, cached_index
from ssdlite.data.index_rows import OCCLUDED, TRUNCATED, IndexRows

__all__ = ["read_voc_index", "voc_ids", "looks_like_voc", "CLASS_FILE"]

CLASS_FILE = "classes.txt"  # optional: the class names in label order, one per line (VOC itself has no list)

_TRUE = frozenset(("1", "true", "True"))


def looks_like_voc(path: Path) -> bool:
    """A folder with ``Annotations/`` (and so a VOC dataset)."""
    return path.is_dir() and (path / "Annotations").is_dir()


def voc_ids(root: Path, split: str | None) -> tuple[list[str], str]:
    """The image ids of ``split`` and where they came from.

    ``split``: a name (``ImageSets/Main/<split>.txt``), a list file (relative to ``root`` or
    absolute), or None: every ``Annotations/*.xml``, sorted.
    """
    if split is None:
        ids = sorted(e.name[:-4] for e in os.scandir(root / "Annotations") if e.name.endswith(".xml"))
        return ids, f"{root} (every Annotations/*.xml)"
    candidates = [root / "ImageSets" / "Main" / f"{split}.txt", root / split, Path(split)]
    for c in candidates:
        if c.is_file():
            text = c.read_text(encoding="utf-8-sig")
            return [line.split()[0] for line in text.splitlines() if line.strip()], f"{root} split {c}"
    raise ValueError(f"VOC split {split!r} not found: none of {', '.join(str(c) for c in candidates[:2])} is a file")


def read_voc_index(
    root: str | os.PathLike,
    split: str | None = None,
    class_names: Sequence[str] | None = None,
    keep_empty: bool = True,
    min_box_size: float = 1.0,
    cache: bool = True,
) -> tuple[Path, CocoIndex]:
    """Read a VOC folder's split into ``(image folder, CocoIndex)``.

    Args:
        root: the folder holding ``Annotations/`` and ``JPEGImages/``.
        split: see :func:`voc_ids`.
        class_names: the classes in label order (objects of other names are ``unknown_category``);
            None: the names of ``root/classes.txt`` when it exists (convert-data writes it, so that a
            class order and classes without objects survive), else every name found, sorted (VOC's
            own 20 classes come out in the devkit's order).
        keep_empty, min_box_size: as for :class:`ssdlite.data.coco.CocoDetection`.
        cache: keep the index in the cache folder and read it from there while no xml, list file
            or setting changed (:mod:`ssdlite.data.index_cache`).

    Faults of one file or object are named and skipped (``malformed_annotations``: an xml that
    does not parse or an object without name / numeric box; ``invalid_boxes``, ``clamped_boxes``,
    ``degenerate_boxes``, ``unknown_category``); a missing folder raises ``ValueError`` naming it.
    """
    root = Path(root)
    for sub in ("", "Annotations", "JPEGImages"):
        if not (root / sub).is_dir():
            raise ValueError(f"VOC folder {root / sub} does not exist (expected Annotations/ and JPEGImages/ in {root})")
    ids, source = voc_ids(root, split)
    where = cache_file("voc", root.resolve(), split)
    folder = os.path.join(root, "Annotations")
    files = [str(root / CLASS_FILE), *(os.path.join(folder, f"{i}.xml") for i in ids)]
    settings = f"{root.resolve()}|{split}|{class_names}|{keep_empty}|{min_box_size}"
    index = cached_index(where, files, settings, lambda: _read(root, ids, source, class_names, keep_empty, min_box_size), cache)
    return root / "JPEGImages", index


def _read(root: Path, ids: list[str], source: str, class_names: Sequence[str] | None, keep_empty: bool,
          min_box_size: float) -> CocoIndex:
    """Parse the xml of each id (see :func:`read_voc_index`)."""
    rows = IndexRows(source, keep_empty, min_box_size)
    folder = os.path.join(root, "Annotations")
    parsed = [(i, _parse_xml(os.path.join(folder, f"{i}.xml"), f"Annotations/{i}.xml", rows)) for i in ids]
    names = list(class_names) if class_names is not None else _class_file(root) or sorted(
        {o[1] for _, p in parsed if p for o in p[1]})
    label_of = {n: k for k, n in enumerate(names)}
    for id_, p in parsed:
        if p is None:
            continue
        (filename, h, w), objects = p
        shown = f"Annotations/{id_}.xml"
        image = rows.add_image(filename if filename and os.path.splitext(filename)[0] == id_ else f"{id_}.jpg", h, w, shown)
        if not h:
            rows.problem("missing_image_size", shown, "no <size> width/height; boxes are clamped to the decoded size", image)
        for k, name, box, difficult, attrs in objects:
            label = label_of.get(name, -1)
            if label < 0:
                rows.counts["annotations"] += 1
                rows.problem("unknown_category", f"{shown} object {k}", f"class {name!r} is not one of the {len(names)} "
                             "classes; object dropped", image)
            else:
                rows.add_box(image, box, label, k, crowd=difficult, attrs=attrs)
    del parsed
    return rows.finish(names)


def _class_file(root: Path) -> list[str]:
    """The names of ``root/classes.txt`` (one per line, in label order; what convert-data writes), if any."""
    path = root / CLASS_FILE
    return [n.strip() for n in path.read_text(encoding="utf-8-sig").splitlines() if n.strip()] if path.is_file() else []


def _parse_xml(path: str, where: str, rows: IndexRows) -> tuple[tuple[str, int, int], list[tuple]] | None:
    """``((filename, h, w), [(object number, name, xyxy 0-based, difficult, attribute bits), ...])`` of
    one xml, or None (named in ``rows`` as ``where``) when it is missing or malformed."""
    try:
        with open(path, "rb") as f:
            top = ET.fromstring(f.read())
    except FileNotFoundError:
        rows.problem("malformed_annotations", where, "annotation file not found; image dropped")
        return None
    except (ET.ParseError, OSError) as e:
        rows.problem("malformed_annotations", where, f"not a readable xml ({e}); image dropped")
        return None
    size = top.find("size")
    h, w = (_int(size.findtext("height")), _int(size.findtext("width"))) if size is not None else (0, 0)
    h, w = (h, w) if h > 0 and w > 0 else (0, 0)
    objects = []
    for k, obj in enumerate(top.iterfind("object"), 1):
        parsed = _parse_object(obj)
        if isinstance(parsed, str):
            rows.counts["annotations"] += 1
            rows.problem("malformed_annotations", f"{where} object {k}", parsed + "; object dropped")
            continue
        objects.append((k, *parsed))
    return ((top.findtext("filename") or "").strip(), h, w), objects


def _parse_object(obj: Any) -> tuple | str:
    """``(name, xyxy 0-based continuous pixels, difficult, attribute bits)``, or what is wrong."""
    texts: dict[str, str | None] = {}
    bb = None
    for c in obj:  # one pass over the children (the boxes of person parts stay inside <part>)
        if c.tag == "bndbox":
            bb = c
        else:
            texts[c.tag] = c.text
    name = (texts.get("name") or "").strip()
    if not name:
        return "no <name>"
    try:
        coords = {c.tag: c.text for c in bb}  # type: ignore[union-attr]
        xmin, ymin, xmax, ymax = float(coords["xmin"]), float(coords["ymin"]), float(coords["xmax"]), float(coords["ymax"])
    except (KeyError, TypeError, ValueError):
        return "no <bndbox> with numeric xmin, ymin, xmax, ymax"
    attrs = (TRUNCATED if _flag(texts.get("truncated")) else 0) | (OCCLUDED if _flag(texts.get("occluded")) else 0)
    return name, (xmin - 1.0, ymin - 1.0, xmax, ymax), _flag(texts.get("difficult")), attrs


def _flag(text: str | None) -> bool:
    return text is not None and (text in _TRUE or text.strip() in _TRUE)


def _int(text: str | None) -> int:
    try:
        return int(float(text or 0))
    except ValueError:
        return 0
