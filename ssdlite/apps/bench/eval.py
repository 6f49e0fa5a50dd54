"""COCO evaluation time: faster-coco-eval vs pycocotools on a generated val-sized set.

``python tools/benchmark.py eval`` writes a ground truth of 5,000 images (a few boxes each
over COCO's 80 categories, ~1% crowd regions, a few empty images) and 300 detections per
image (jittered copies of the objects, confusions and background boxes, with tied scores)
to a temporary folder, then times :func:`ssdlite.eval.coco.evaluate_coco` end to end
(read both json files, load, evaluate, accumulate, summarize) with each evaluator,
alternating the order over the repeats. It prints the medians, the ratio (target: faster at
most 0.25x pycocotools' time) and checks that the 12 stats agree to 1e-9.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ssdlite.apps.bench.machine import cpu_description

TARGET_RATIO = 0.25
_SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (640, 360), (500, 375), (640, 640))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=5000, help="generated images (default: 5000)")
    parser.add_argument("--dets", type=int, default=300, help="detections per image (default: 300)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per evaluator (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--json-out", default=None, help="write the timings and stats as JSON here")


def _category_weights(n: int, rng: np.random.Generator) -> np.ndarray:
    """COCO-like long tail: a few categories (e.g. person) dominate."""
    w = 1.0 / np.arange(1, n + 1) ** 0.9
    rng.shuffle(w[1:])
    return w / w.sum()


def _random_boxes(rng: np.random.Generator, n: int, w: int, h: int, min_side: float = 4.0) -> np.ndarray:
    """(n, 4) xywh inside a w x h image; log-uniform area, log-normal aspect ratio."""
    area = np.exp(rng.uniform(np.log(min_side**2 * 2), np.log(0.7 * w * h), n))
    aspect = np.exp(rng.normal(0.0, 0.6, n))
    bw = np.clip(np.sqrt(area * aspect), min_side, w - 1)
    bh = np.clip(np.sqrt(area / aspect), min_side, h - 1)
    x = rng.uniform(0, w - bw)
    y = rng.uniform(0, h - bh)
    return np.stack([x, y, bw, bh], axis=1)


def _jitter(rng: np.random.Generator, boxes: np.ndarray, scale: np.ndarray, w: int, h: int) -> np.ndarray:
    """Shift and resize xywh boxes by ``scale`` (relative, per box); kept inside the image."""
    x, y, bw, bh = boxes.T
    dx = rng.normal(0, 1, len(boxes)) * scale * bw
    dy = rng.normal(0, 1, len(boxes)) * scale * bh
    nw = np.clip(bw * np.exp(rng.normal(0, 1, len(boxes)) * scale), 2.0, w)
    nh = np.clip(bh * np.exp(rng.normal(0, 1, len(boxes)) * scale), 2.0, h)
    nx = np.clip(x + dx, 0, w - nw)
    ny = np.clip(y + dy, 0, h - nh)
    return np.stack([nx, ny, nw, nh], axis=1)


def generate(n_images: int, dets_per_image: int, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO ground-truth dict and a results list, deterministic by ``seed``.

    Ground truth: Poisson(5) objects per image (2% forced empty), categories from a long-tailed
    distribution over COCO's 80 ids with 1-3 dominant ones per image, ``area`` 50-95% of
    the box (segments are smaller than boxes), ~1% crowd regions. Detections: exactly
    ``dets_per_image`` per image: 1-6 jittered copies of each object (10% with a confused
    category), the rest background boxes on the image's and a few other categories;
    boxes rounded to 0.01 px, scores to 1e-4 (ties happen, as in real files).
    """
    from ssdlite.data.names import COCO80_IDS, COCO80_NAMES

    rng = np.random.default_rng(seed)
    cat_ids = np.asarray(COCO80_IDS)
    weights = _category_weights(len(cat_ids), rng)
    image_ids = np.sort(rng.choice(np.arange(1, 20 * n_images + 1), size=n_images, replace=False))
    images, annotations, results = [], [], []
    ann_id = 1
    for image_id in image_ids.tolist():
        w, h = _SIZES[rng.integers(len(_SIZES))]
        images.append({"id": image_id, "width": w, "height": h, "file_name": f"{image_id:012d}.jpg"})
        n_gt = 0 if rng.random() < 0.02 else int(rng.poisson(5))
        own = rng.choice(cat_ids, size=int(rng.integers(1, 4)), p=weights)
        gt_boxes = _random_boxes(rng, n_gt, w, h)
        gt_cats = rng.choice(own, size=n_gt)
        crowd = rng.random(n_gt) < 0.01
        fill = rng.uniform(0.5, 0.95, n_gt)
        for box, cat, is_crowd, f in zip(gt_boxes.tolist(), gt_cats.tolist(), crowd.tolist(), fill.tolist()):
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": cat, "bbox": [round(v, 2) for v in box],
                "area": round(box[2] * box[3] * f, 2), "iscrowd": int(is_crowd),
            })
            ann_id += 1
        # detections: copies of the objects first, background fills the rest
        copies = rng.integers(1, 7, n_gt) if n_gt else np.zeros(0, dtype=int)
        src = np.repeat(np.arange(n_gt), copies)[:dets_per_image]
        quality = rng.uniform(0.02, 0.5, len(src))  # jitter scale: small = tight box = high score
        tp_boxes = _jitter(rng, gt_boxes[src], quality, w, h) if len(src) else np.zeros((0, 4))
        tp_cats = gt_cats[src]
        confused = rng.random(len(src)) < 0.1
        tp_cats = np.where(confused, rng.choice(cat_ids, size=len(src), p=weights), tp_cats)
        tp_scores = np.clip(1.0 - quality * 1.6 + rng.normal(0, 0.1, len(src)), 0.001, 1.0)
        n_bg = dets_per_image - len(src)
        pool = np.concatenate([own, rng.choice(cat_ids, size=8, p=weights)])
        bg_boxes = _random_boxes(rng, n_bg, w, h)
        bg_cats = rng.choice(pool, size=n_bg)
        bg_scores = np.clip(rng.beta(1.0, 8.0, n_bg), 0.001, 1.0)
        boxes = np.round(np.concatenate([tp_boxes, bg_boxes]), 2).tolist()
        cats = np.concatenate([tp_cats, bg_cats]).tolist()
        scores = np.round(np.concatenate([tp_scores, bg_scores]), 4).tolist()
        results.extend(
            {"image_id": image_id, "category_id": c, "bbox": b, "score": s} for c, b, s in zip(cats, boxes, scores)
        )
    categories = [{"id": int(i), "name": n, "supercategory": "thing"} for i, n in zip(COCO80_IDS, COCO80_NAMES)]
    gt = {"info": {"description": "ssdlite generated benchmark set", "seed": seed},
          "images": images, "annotations": annotations, "categories": categories}
    return gt, results


def _time_one(evaluator: str, gt_path: Path, dt_path: Path):
    from ssdlite.eval.coco import evaluate_coco

    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    result = evaluate_coco(gt_path, dt_path, evaluator=evaluator)
    return time.perf_counter() - t0, time.process_time() - c0, result


def run(args: argparse.Namespace) -> int:
    if args.images < 1 or args.dets < 0 or args.repeats < 1:
        raise ValueError("--images and --repeats must be >= 1 and --dets >= 0")
    t0 = time.perf_counter()
    gt, results = generate(args.images, args.dets, args.seed)
    n_ann, n_crowd = len(gt["annotations"]), sum(a["iscrowd"] for a in gt["annotations"])
    print(f"generated {args.images} images, {n_ann} gt boxes ({n_crowd} crowd), "
          f"{len(results)} detections in {time.perf_counter() - t0:.1f} s")
    times: dict[str, list[float]] = {"pycocotools": [], "faster": []}
    cpu: dict[str, list[float]] = {"pycocotools": [], "faster": []}
    stats: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="ssdlite_bench_eval_") as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "results.json"
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(results))
        size_mb = (gt_path.stat().st_size + dt_path.stat().st_size) / 1e6
        del gt, results
        print(f"wrote {size_mb:.0f} MB of json; timing {args.repeats} repeat(s) per evaluator, alternating")
        for r in range(args.repeats):
            order = ("pycocotools", "faster") if r % 2 == 0 else ("faster", "pycocotools")
            for name in order:
                elapsed, cpu_s, res = _time_one(name, gt_path, dt_path)
                times[name].append(elapsed)
                cpu[name].append(cpu_s)
                stats.setdefault(name, res.stats)
                if res.stats != stats[name]:
                    raise RuntimeError(f"{name} gave different stats on repeat {r + 1}")
                print(f"  repeat {r + 1}: {name:<11} {elapsed:8.2f} s wall {cpu_s:8.2f} s cpu   AP={res.stats[0]:.4f}")
                del res
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratio = med["faster"] / med["pycocotools"]
    ratio_cpu = med_cpu["faster"] / med_cpu["pycocotools"]
    max_diff = max(abs(a - b) for a, b in zip(stats["faster"], stats["pycocotools"]))
    same = max_diff <= 1e-9
    print()
    print(f"CPU: {cpu_description()}")
    print(f"{'evaluator':<12} {'median s':>9} {'min s':>8} {'ratio':>7}   {'cpu s':>8} {'ratio':>7}")
    for name in ("pycocotools", "faster"):
        print(f"{name:<12} {med[name]:9.2f} {min(times[name]):8.2f} {med[name] / med['pycocotools']:7.3f}x"
              f"   {med_cpu[name]:8.2f} {med_cpu[name] / med_cpu['pycocotools']:7.3f}x")
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"faster / pycocotools = {ratio:.3f}x wall, {ratio_cpu:.3f}x cpu (target <= {TARGET_RATIO}x: {verdict})")
    print(f"12 stats identical to 1e-9: {'yes' if same else 'NO'} (max |diff| = {max_diff:.3g}; "
          f"bit-identical: {'yes' if max_diff == 0 else 'no'})")
    if args.json_out:
        out = {
            "images": args.images, "dets_per_image": args.dets, "repeats": args.repeats, "seed": args.seed,
            "times_s": times, "median_s": med, "ratio": ratio, "target_ratio": TARGET_RATIO,
            "cpu_s": cpu, "median_cpu_s": med_cpu, "ratio_cpu": ratio_cpu,
            "stats": stats, "max_abs_stat_diff": max_diff, "stats_identical": same,
        }
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=2))
    return 0 if same else 1
