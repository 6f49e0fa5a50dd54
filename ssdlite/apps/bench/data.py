"""Data pipeline throughput vs torchvision's reference, and COCO-scale index memory.

``python tools/benchmark.py data`` times one pass over ``../shared/data/coco_tiny80``
(train2017 + val2017, 160 real COCO images) of

* ours: :class:`ssdlite.data.CocoDetection` (OpenCV decode) + the ``ssdlite`` preset
  (albumentations: :class:`~ssdlite.data.transforms.RandomIoUCrop` + flip) + resize to 320x320
  + normalize + :func:`ssdlite.data.collate`;
* torchvision's detection reference: ``torchvision.datasets.CocoDetection`` (PIL decode)
  wrapped for transforms v2, ``RandomIoUCrop`` + ``RandomHorizontalFlip`` + ``Resize`` +
  ``ToImage`` + ``ToDtype``/``Normalize`` + ``SanitizeBoundingBoxes`` on ``tv_tensors``, and
  a stacking collate;

in one process with one thread each (the cost per DataLoader worker), alternating over the
repeats, and prints the median images/s and the ratio (target: ours >= 1.5x).

``--coco-scale`` instead runs the COCO-scale index memory benchmark
(:mod:`ssdlite.apps.bench.data_memory`): load time and peak memory of the main process and its
DataLoader workers with a train2017-sized json, ours beside pycocotools' ``COCO`` object.
``--formats`` times reading the same boxes as COCO json, VOC xml and YOLO labels
(:mod:`ssdlite.apps.bench.data_formats`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

from ssdlite.apps.bench import data_formats, data_memory
from ssdlite.apps.bench.machine import cpu_description

TARGET_RATIO = 1.5
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="COCO folder with train2017/ val2017/ annotations/ (default: ../shared/data/coco_tiny80)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per pipeline, alternating (default: 5)")
    parser.add_argument("--batch-size", type=int, default=8, help="collate batch size (default: 8)")
    parser.add_argument("--size", type=int, default=320, help="network input side (default: 320)")
    parser.add_argument("--json-out", default=None, help="write the numbers as JSON here")
    data_memory.add_arguments(parser)
    data_formats.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.coco_scale:
        return data_memory.run_coco_scale(args)
    if args.formats:
        return data_formats.run_formats(args)
    return _run_throughput(args)


# ============================================================================ throughput


def _tiny80(path: str | None) -> Path:
    if path:
        return Path(path)
    from ssdlite._paths import shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / "coco_tiny80").is_dir():
        raise ValueError("../shared/data/coco_tiny80 not found; pass --data DIR (a COCO folder with train2017/, val2017/, annotations/)")
    return root / "coco_tiny80"


def _splits(root: Path) -> list[tuple[Path, Path]]:
    out = []
    for split in ("train2017", "val2017"):
        ann = root / "annotations" / f"instances_{split}.json"
        if ann.is_file():
            out.append((root / split, ann))
    if not out:
        raise ValueError(f"{root}: no annotations/instances_{{train,val}}2017.json")
    return out


def _ours(root: Path, size: int) -> Any:
    from torch.utils.data import ConcatDataset

    from ssdlite.config import from_dict
    from ssdlite.data import CocoDetection, build_transforms

    cfg = from_dict({"data": {"augment": "ssdlite"}, "model": {"input_size": [size, size]},
                     "preprocess": {"mean": list(_MEAN), "std": list(_STD)}})
    return ConcatDataset([CocoDetection(d, a, transform=build_transforms(cfg, train=True)) for d, a in _splits(root)])


def _torchvision(root: Path, size: int) -> Any:
    import torch
    from torch.utils.data import ConcatDataset
    from torchvision import datasets
    from torchvision.transforms import v2 as T

    tf = T.Compose([
        T.RandomIoUCrop(),
        T.RandomHorizontalFlip(p=0.5),
        T.Resize((size, size)),
        T.ToImage(),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(_MEAN, _STD),
        T.SanitizeBoundingBoxes(),
    ])
    parts = []
    for d, a in _splits(root):
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            ds = datasets.CocoDetection(str(d), str(a), transforms=tf)
        parts.append(datasets.wrap_dataset_for_transforms_v2(ds, target_keys={"boxes", "labels", "image_id"}))
    return ConcatDataset(parts)


def _tv_collate(batch: list) -> tuple:
    import torch

    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


def _one_pass(dataset: Any, collate_fn: Any, batch_size: int) -> float:
    """Seconds for decode + transform + collate of every sample, in this process."""
    t0 = time.perf_counter()
    n = len(dataset)
    for start in range(0, n, batch_size):
        collate_fn([dataset[i] for i in range(start, min(start + batch_size, n))])
    return time.perf_counter() - t0


def _run_throughput(args: argparse.Namespace) -> int:
    import cv2
    import torch

    from ssdlite.data import collate

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    root = _tiny80(args.data)
    pipelines = {"ours": (_ours(root, args.size), collate), "torchvision": (_torchvision(root, args.size), _tv_collate)}
    n = len(pipelines["ours"][0])
    if len(pipelines["torchvision"][0]) != n:
        raise RuntimeError("the two pipelines see different image counts")
    for ds, fn in pipelines.values():  # warm-up: file cache, lazy imports
        _one_pass(ds, fn, args.batch_size)
    times: dict[str, list[float]] = {k: [] for k in pipelines}
    for r in range(args.repeats):
        order = list(pipelines) if r % 2 == 0 else list(pipelines)[::-1]
        for name in order:
            times[name].append(_one_pass(*pipelines[name], args.batch_size))
    ips = {k: [n / t for t in v] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in ips.items()}
    ratio = med["ours"] / med["torchvision"]
    print(f"data pipeline on {root} ({n} images), decode + ssdlite augmentation + resize {args.size}x{args.size} + normalize"
          f" + collate (batch {args.batch_size}); one process, one thread; {args.repeats} alternating passes, medians")
    print(f"CPU: {cpu_description()}")
    print(f"{'pipeline':<44} {'images/s':>9} {'ms/image':>9}   all runs (images/s)")
    labels = {"ours": "ours (OpenCV + albumentations)", "torchvision": "torchvision reference (PIL + transforms v2)"}
    for k in pipelines:
        runs = " ".join(f"{v:.0f}" for v in ips[k])
        print(f"{labels[k]:<44} {med[k]:>9.1f} {1000 / med[k]:>9.2f}   {runs}")
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"ratio ours / torchvision: {ratio:.2f}x ({verdict} the >= {TARGET_RATIO}x target)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "images": n, "batch_size": args.batch_size, "input_size": args.size, "repeats": args.repeats,
            "images_per_s": {k: med[k] for k in med}, "runs_images_per_s": ips, "ratio": ratio, "target_ratio": TARGET_RATIO,
        }, indent=2))
    return 0

