"""A cache of the compact index of a VOC or YOLO split (as Ultralytics' ``labels.cache``, but outside the dataset).

Reading one annotation file per image costs a file open each (about 20 us on a shared 2-core
machine: 0.4 s for 20,000 images before any parsing), where a COCO json is one file. The first
read of a split therefore stores its :class:`~ssdlite.data.coco_index.CocoIndex` (arrays, counts
and problems) in :func:`cache_dir` (``$SSDLITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ssdlite/index``,
else ``~/.cache/ssdlite/index``; never in the dataset, which may be read-only or shared), one file
per split; later reads load it when the key still matches: the reader's version and settings and
the path, size and modification time of every annotation file (one ``stat`` each, no open). When
the cache cannot be written the split is simply read each time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ssdlite.data.coco_index import CocoIndex
from ssdlite.data.problems import Problem
from ssdlite.files import atomic_write

__all__ = ["cached_index", "cache_dir", "cache_file"]

log = logging.getLogger("ssdlite.data")

CACHE_ENV = "SSDLITE_CACHE_DIR"
_VERSION = "1"  # bump when a reader's output changes
_ARRAYS = ("image_ids", "sizes", "name_blob", "name_offsets", "boxes", "labels", "crowd", "box_offsets", "attributes")


def cache_dir() -> Path:
    """Where split indexes are cached (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ssdlite" / "index"


def cache_file(*what: object) -> Path:
    """The cache file of one split, named by what identifies it (format, resolved location, split)."""
    name = hashlib.blake2b("\0".join(map(str, what)).encode(), digest_size=12).hexdigest()
    return cache_dir() / f"{what[0]}-{name}.npz"


def cached_index(path: Path, files: Iterable[str], settings: str, build: Callable[[], CocoIndex],
                 use: bool = True) -> CocoIndex:
    """The index ``build()`` makes, from the cache file ``path`` when its key (``settings`` and every
    one of ``files``' path, size and mtime) still matches; a fresh build is stored there (best effort)."""
    if not use:
        return build()
    key = _key(files, settings)
    index = _load(path, key)
    if index is not None:
        return index
    index = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(_dump(index, key)))
    except OSError as e:  # no writable cache folder: read each time
        log.debug("cannot write the index cache %s: %s", path, e)
    return index


def _key(files: Iterable[str], settings: str) -> str:
    h = hashlib.blake2b(f"{_VERSION}\n{settings}\n".encode(), digest_size=16)
    for path in files:
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}\0missing\n".encode())
    return h.hexdigest()


def _dump(index: CocoIndex, key: str) -> bytes:
    meta = {"key": key, "category_ids": index.category_ids, "class_names": index.class_names, "counts": index.counts,
            "problems": [list(p) for p in index.problems], "normalized": index.normalized, "source": index.source}
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
             **{k: getattr(index, k) for k in _ARRAYS if getattr(index, k) is not None})
    return buf.getvalue()


def _load(cache_file: Path, key: str) -> CocoIndex | None:
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            if meta.get("key") != key:
                return None
            arrays = {k: z[k] for k in _ARRAYS if k in z.files}
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    return CocoIndex(category_ids=meta["category_ids"], class_names=meta["class_names"], counts=meta["counts"],
                     problems=[Problem(*p) for p in meta["problems"]], normalized=meta["normalized"],
                     source=meta["source"], **arrays)
