"""YOLO label folders (Ultralytics ``data.yaml``) -> the compact :class:`~ssdlite.data.coco_index.CocoIndex`.

The ``data.yaml`` conventions are Ultralytics':

```yaml
path: ../datasets/mine      # dataset root; relative: to the yaml's folder (default: the yaml's folder)
train: images/train         # relative to path: a folder of images, a .txt list of image paths, or a list of those
val: [images/val, extra/images/val]
names: [person, car]        # or {0: person, 1: car}
```

The label file of ``.../images/<sub>/x.jpg`` is ``.../labels/<sub>/x.txt`` (the last ``images``
folder of the path becomes ``labels``). Each line is ``class cx cy w h`` (class id from 0,
coordinates fractions of the image size in [0, 1]; a line of ``class x1 y1 x2 y2 ...`` polygon points
gives its bounding box, as Ultralytics reads segments). An image without a label file, or with an
empty one, is a background image (kept, as Ultralytics keeps it).

Image sizes are unknown until a file is read, so the index keeps boxes normalized
(``CocoIndex.normalized``): :class:`ssdlite.data.coco.CocoDetection` scales them when it decodes
the image, which keeps reading the labels as fast as reading a COCO json.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from ssdlite.data.coco_index import CocoIndex
from ssdlite.data.index_cache import cache_file, cached_index
from ssdlite.data.index_rows import IndexRows

__all__ = ["read_yolo_index", "read_data_yaml", "label_path", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = frozenset((".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"))  # what OpenCV decodes
_SPLIT_KEYS = ("train", "val", "test")
_YAML_KEYS = frozenset(("path", "train", "val", "test", "names", "nc", "download", "yaml_file", "channels"))
_EPS = 1e-6  # rounding slack of a normalized coordinate written as text


def read_data_yaml(yaml_path: str | os.PathLike) -> dict[str, Any]:
    """The checked ``data.yaml``: ``{"root": Path, "names": [str], splits...}``; ``ValueError`` naming the file and key."""
    import yaml

    yaml_path = Path(yaml_path)
    if yaml_path.is_dir():
        raise ValueError(f"{yaml_path} is a folder: a YOLO dataset is named by its data.yaml")
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"YOLO data.yaml not found: {yaml_path}") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{yaml_path}: not a readable YAML file ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{yaml_path}: expected a mapping with path, train, val, names")
    unknown = sorted(set(map(str, data)) - _YAML_KEYS)
    if unknown:
        raise ValueError(f"{yaml_path}: unknown key(s) {unknown}; a YOLO data.yaml has {sorted(_YAML_KEYS)}")
    names = _names(data.get("names"), yaml_path)
    if "nc" in data and data["nc"] != len(names):
        raise ValueError(f"{yaml_path}: nc={data['nc']!r} but 'names' has {len(names)} entries")
    root = Path(str(data.get("path") or "."))
    root = root if root.is_absolute() else yaml_path.parent / root
    if not root.is_dir():
        raise ValueError(f"{yaml_path}: path {str(data.get('path'))!r} is not a folder ({root})")
    out = {"root": root, "names": names, "yaml": yaml_path}
    out.update({k: data[k] for k in _SPLIT_KEYS if data.get(k)})
    return out


def _names(names: Any, src: Path) -> list[str]:
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"{src}: 'names' keys must be the class ids 0..{len(names) - 1}, got {sorted(names)}")
        return [str(names[k]) for k in range(len(names))]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise ValueError(f"{src}: 'names' must be a non-empty list or a {{id: name}} mapping, got {names!r}")


def label_path(image: str) -> str:
    """Ultralytics' rule: the last ``/images/`` of the path becomes ``/labels/``, the suffix ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return sb.join(image.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"


def read_yolo_index(
    yaml_path: str | os.PathLike, split: str = "train", keep_empty: bool = True, min_box_size: float = 1.0,
    cache: bool = True,
) -> tuple[Path, CocoIndex]:
    """Read split ``split`` (a key of the yaml: train, val or test) into ``(image folder, CocoIndex)``.

    The image folder is the one that holds all the split's images (``images/val`` for one folder);
    image names in the index are relative to it; boxes are
    normalized (``min_box_size`` applies in pixels once the image is read). Faults of one line or
    file are named and skipped: ``malformed_annotations`` (a line without 5 numbers),
    ``invalid_boxes`` (a coordinate outside [0, 1]), ``unknown_category`` (a class id out of range),
    ``clamped_boxes``, ``degenerate_boxes``, ``orphan_labels`` (a label file without its image),
    ``duplicate_file_names`` (an image name seen in another folder of the split). ``cache``: keep
    the index in the cache folder while no label file, image name or setting changed
    (:mod:`ssdlite.data.index_cache`).
    """
    data = read_data_yaml(yaml_path)
    if split not in _SPLIT_KEYS:
        raise ValueError(f"YOLO split {split!r} is not one of {list(_SPLIT_KEYS)}")
    if split not in data:
        raise ValueError(f"{yaml_path}: no {split!r} entry")
    root, names = data["root"], data["names"]
    images, label_dirs = _split_images(root, data[split], Path(yaml_path))
    # names relative to the folder all the split's images are in (images/val/x.jpg -> x.jpg, as COCO names them)
    base = Path(os.path.commonpath([os.path.dirname(p) for p in images])) if images else root
    labels_found = _existing_labels(label_dirs)
    where = cache_file("yolo", Path(yaml_path).resolve(), split)
    files = [str(yaml_path), *sorted(labels_found)]  # + the labels of list-file images, found while reading
    settings = f"{names}|{keep_empty}|{min_box_size}|{base}|" + "\n".join(images)
    index = cached_index(where, files, settings, lambda: _read(
        f"{yaml_path} split {split}", images, base, root, label_dirs, labels_found, len(names), keep_empty, min_box_size
    ).finish(names), cache and not _outside(images, label_dirs))
    return base, index


def _outside(images: list[str], label_dirs: list[str]) -> bool:
    """Whether some images' labels are outside the listed label folders (then not cached: not all stat-ed)."""
    return not label_dirs or any(not any(label_path(p).startswith(d + os.sep) for d in label_dirs) for p in images)


def _read(source: str, images: list[str], base: Path, root: Path, label_dirs: list[str], labels_found: set[str],
          num_classes: int, keep_empty: bool, min_box_size: float) -> IndexRows:
    """Every image of the split and the boxes of its label file (see :func:`read_yolo_index`)."""
    rows = IndexRows(source, keep_empty, min_box_size, normalized=True, unit="line")
    used: set[str] = set()
    seen: dict[str, str] = {}
    for path in images:
        file_name = os.path.basename(path)
        if file_name in seen:
            rows.problem("duplicate_file_names", _rel(path, root), f"an image named {file_name} was already read from "
                         f"{seen[file_name]}; this one is dropped (converted datasets name images by file name)")
            continue
        seen[file_name] = path
        lab = label_path(path)
        image = rows.add_image(_rel(path, base), shown=_rel(lab, root))
        if lab in labels_found or (not any(lab.startswith(d + os.sep) for d in label_dirs) and os.path.isfile(lab)):
            used.add(lab)
            _read_label_file(lab, _rel(lab, root), image, rows, num_classes)
    for lab in sorted(labels_found - used) if label_dirs else ():
        rows.problem("orphan_labels", _rel(lab, root), "label file without an image of the same name; ignored")
    return rows


def _rel(path: str, root: Path) -> str:
    """``path`` relative to ``root`` when it is under it (as the index names images), else as is."""
    prefix = os.path.join(str(root), "")
    return path[len(prefix):] if path.startswith(prefix) else path


def _split_images(root: Path, entry: Any, src: Path) -> tuple[list[str], list[str]]:
    """Image paths of a split entry (folders, list files or a list of them), and the label folders
    of its folder entries (whose label files are checked for orphans)."""
    entries = entry if isinstance(entry, list) else [entry]
    images: list[str] = []
    label_dirs: list[str] = []
    for e in entries:
        p = Path(str(e))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images += _walk(str(p))
            lab = label_path(os.path.join(str(p), "x.jpg"))
            if os.path.isdir(os.path.dirname(lab)):
                label_dirs.append(os.path.dirname(lab))
        elif p.is_file():
            lines = p.read_text(encoding="utf-8-sig").splitlines()
            images += [x if os.path.isabs(x) else os.path.normpath(os.path.join(p.parent, x))
                       for x in (line.strip() for line in lines) if x]
        else:
            raise ValueError(f"{src}: split entry {str(e)!r} is neither a folder nor a list file ({p} does not exist)")
    return images, label_dirs


def _walk(folder: str) -> list[str]:
    """Image files under ``folder``, recursively, in sorted order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
    return out


def _existing_labels(label_dirs: Iterable[str]) -> set[str]:
    """Every ``.txt`` under the label folders (one listing instead of a failed open per background image)."""
    found: set[str] = set()
    for d in label_dirs:
        for dirpath, _, filenames in os.walk(d):
            found.update(os.path.join(dirpath, f) for f in filenames if f.endswith(".txt") and f != "classes.txt")
    return found


def _read_label_file(path: str, shown: str, image: int, rows: IndexRows, num_classes: int) -> None:
    """Add the boxes of one label file to ``rows``; a line that is not ``class cx cy w h`` with a known
    class and coordinates in [0, 1] goes to :func:`_read_line`, which names what is wrong."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        rows.problem("malformed_annotations", shown, f"cannot read the label file ({e}); image kept without boxes", image)
        return
    for n, line in enumerate(data.splitlines(), 1):
        values = line.split()
        if len(values) == 5:
            try:
                c, cx, cy, w, h = map(float, values)
            except ValueError:
                c = -1.0
            if 0 <= c < num_classes and c == int(c) and 0 <= cx <= 1 and 0 <= cy <= 1 and 0 <= w <= 1 and 0 <= h <= 1:
                rows.add_box(image, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), int(c), n)
                continue
        if values:
            _read_line([v.decode("utf-8", "replace") for v in values], f"{shown} line {n}", n, image, rows, num_classes)


def _read_line(values: list[str], where: str, n: int, image: int, rows: IndexRows, num_classes: int) -> None:
    """A line off the fast path: a polygon, a bad class id, bad coordinates or a malformed line."""
    try:
        cls_f = float(values[0])
        coords = [float(v) for v in values[1:]]
    except ValueError:
        coords, cls_f = [], -1.0
        values = []
    if len(values) != 5 and (len(values) < 7 or len(values) % 2 == 0):
        rows.counts["annotations"] += 1
        rows.problem("malformed_annotations", where, f"{len(values) or 'non-numeric'} values, expected 5 numbers "
                     "(class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...); line dropped", image)
        return
    if not all(-_EPS <= v <= 1 + _EPS for v in coords):
        rows.counts["annotations"] += 1
        rows.problem("invalid_boxes", where, f"coordinates {' '.join(values[1:])} are not all in [0, 1] (YOLO "
                     "labels are fractions of the image size); line dropped", image)
        return
    if not (cls_f == int(cls_f) and 0 <= cls_f < num_classes):
        rows.counts["annotations"] += 1
        rows.problem("unknown_category", where, f"class id {values[0]} is not in 0..{num_classes - 1} "
                     f"({num_classes} names in data.yaml); line dropped", image)
        return
    if len(values) == 5:
        cx, cy, w, h = coords
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    else:
        xs, ys = coords[0::2], coords[1::2]
        box = (min(xs), min(ys), max(xs), max(ys))
    rows.add_box(image, box, int(cls_f), n)
