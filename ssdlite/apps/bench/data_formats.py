"""Annotation reading speed by format: the same boxes as COCO json, VOC xml and YOLO labels.

``python tools/benchmark.py data --formats`` writes one generated dataset (default 20,000 images,
7.3 boxes per image on average as in COCO train2017, 20 classes) in all three formats into a
temporary folder, then times reading its annotations into the compact index with each reader,
alternating over the repeats, on a warm file cache: VOC and YOLO once parsing every file and once
from their index cache (:mod:`ssdlite.data.index_cache`, what every read after the first does).
It prints the median seconds, images/s, the ratio to COCO json and the size of each index (the
numpy arrays the training dataset and its DataLoader workers keep: no per-sample dicts).
Image files are empty placeholders: no reader opens them (YOLO lists them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ssdlite.apps.bench.machine import cpu_description
from ssdlite.data.index_cache import CACHE_ENV

_NAMES = [f"class_{k}" for k in range(20)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--formats`` flags, as a group of the ``data`` benchmark's parser."""
    g = parser.add_argument_group("--formats: reading the same annotations as COCO json, VOC xml and YOLO labels")
    g.add_argument("--formats", action="store_true", help="run the annotation-format benchmark instead")
    g.add_argument("--format-images", type=int, default=20_000, help="images in the generated dataset (default: 20000)")
    g.add_argument("--format-repeats", type=int, default=3, help="timed reads per format, alternating (default: 3)")
    g.add_argument("--workdir", default=None, help="folder for the generated files (default: a temporary folder)")


def _generate(root: Path, n: int, seed: int = 0) -> None:
    """``n`` images of 640x480 with the same integer boxes in the three formats."""
    rng = np.random.default_rng(seed)
    w, h = 640, 480
    images, annotations = [], []
    for sub in ("Annotations", "JPEGImages", "images/train", "labels/train"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        stem = f"{i:06d}"
        k = int(rng.poisson(7.3))
        x1 = rng.integers(1, w - 40, k)
        y1 = rng.integers(1, h - 40, k)
        x2 = np.minimum(x1 + rng.integers(8, 300, k), w)
        y2 = np.minimum(y1 + rng.integers(8, 300, k), h)
        cls = rng.integers(0, 20, k)
        images.append({"id": i + 1, "file_name": f"{stem}.jpg", "width": w, "height": h})
        objs, lines = [], []
        for c, a, b, cc, d in zip(cls.tolist(), x1.tolist(), y1.tolist(), x2.tolist(), y2.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1, "iscrowd": 0,
                                "area": float((cc - a + 1) * (d - b + 1)), "segmentation": [],
                                "bbox": [a - 1, b - 1, cc - a + 1, d - b + 1]})
            objs.append(f"<object><name>{_NAMES[c]}</name><pose>Unspecified</pose><truncated>0</truncated>"
                        f"<difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{cc}</xmax>"
                        f"<ymax>{d}</ymax></bndbox></object>")
            lines.append(f"{c} {(a - 1 + cc) / 2 / w:.6f} {(b - 1 + d) / 2 / h:.6f} {(cc - a + 1) / w:.6f} {(d - b + 1) / h:.6f}\n")
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><folder>VOC</folder><filename>{stem}.jpg</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>{''.join(objs)}</annotation>")
        (root / "labels" / "train" / f"{stem}.txt").write_text("".join(lines))
        (root / "images" / "train" / f"{stem}.jpg").touch()
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(_NAMES)]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [" + ", ".join(_NAMES) + "]\n")


def _readers(root: Path) -> dict:
    from ssdlite.data.coco_index import read_coco_index
    from ssdlite.data.voc import read_voc_index
    from ssdlite.data.yolo import read_yolo_index

    return {
        "COCO json": lambda: (None, read_coco_index(root / "instances.json")),
        "VOC xml": lambda: read_voc_index(root, cache=False),
        "YOLO labels": lambda: read_yolo_index(root / "data.yaml", "train", cache=False),
        "VOC cached": lambda: read_voc_index(root),
        "YOLO cached": lambda: read_yolo_index(root / "data.yaml", "train"),
    }


def _index_bytes(index) -> int:
    return sum(v.nbytes for v in index if isinstance(v, np.ndarray))


def run_formats(args: argparse.Namespace) -> int:
    n = args.format_images
    if n < 1 or args.format_repeats < 1:
        raise ValueError("--format-images and --format-repeats must be >= 1")
    root = Path(tempfile.mkdtemp(prefix="ssdlite_formats_", dir=args.workdir))
    old_env = os.environ.get(CACHE_ENV)
    try:
        t0 = time.perf_counter()
        _generate(root / "data", n)
        print(f"generated {n} images in 3 formats in {time.perf_counter() - t0:.1f} s ({root / 'data'})")
        os.environ[CACHE_ENV] = str(root / "cache")  # the benchmark's own cache folder, removed at the end
        readers = _readers(root / "data")
        readers["VOC cached"](), readers["YOLO cached"]()  # the first reads write the caches
        times: dict[str, list[float]] = {k: [] for k in readers}
        info: dict[str, tuple[int, int]] = {}
        for r in range(args.format_repeats):
            for name in (list(readers) if r % 2 == 0 else list(readers)[::-1]):
                t = time.perf_counter()
                _, index = readers[name]()
                times[name].append(time.perf_counter() - t)
                info[name] = (int(index.counts["boxes"]), _index_bytes(index))
                del index
    finally:
        os.environ.pop(CACHE_ENV, None) if old_env is None else os.environ.__setitem__(CACHE_ENV, old_env)
        shutil.rmtree(root, ignore_errors=True)
    boxes = {b for b, _ in info.values()}
    if len(boxes) != 1:
        raise RuntimeError(f"the readers kept different box counts: {info}")
    _print_table(n, boxes.pop(), times, info, args)
    return 0


def _print_table(n: int, boxes: int, times: dict[str, list[float]], info: dict, args: argparse.Namespace) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"reading the annotations of {n} images / {boxes} boxes into the compact index; warm file cache; "
          f"{args.format_repeats} alternating reads, medians")
    print(f"CPU: {cpu_description()}")
    print(f"{'format':<12} {'seconds':>8} {'images/s':>10} {'x COCO json':>12} {'index MB':>9}   all runs (s)")
    for k, t in med.items():
        runs = " ".join(f"{v:.3f}" for v in times[k])
        print(f"{k:<12} {t:>8.3f} {n / t:>10.0f} {t / med['COCO json']:>12.2f} {info[k][1] / 1e6:>9.2f}   {runs}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"images": n, "boxes": boxes, "seconds": med, "runs": times,
                                                   "index_bytes": {k: v[1] for k, v in info.items()}}, indent=2))
