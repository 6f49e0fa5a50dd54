"""Pascal VOC box metrics: per-class AP at IoU 0.5 and their mean, as the VOC devkit computes them.

Two metrics (:data:`VOC_METRICS`), both from one matching of detections to objects:

- ``"voc07"``: 11-point interpolated AP, the VOC2007 devkit: the mean over recall thresholds
  t = 0, 0.1, ..., 1.0 of the highest precision at a recall >= t (0 when recall never reaches t);
- ``"voc"``: the area under the interpolated precision-recall curve, the VOC2010+ devkit
  (``VOCap.m``): precision made non-increasing from the right (its envelope), summed over the
  steps where recall changes.

The input is a COCO-format ground truth and COCO results (as for :mod:`ssdlite.eval.coco`), so
every dataset format is scored the same way once read as COCO. Conventions, from the MATLAB
devkit's ``VOCevaldet.m`` (where the common NumPy ports differ, it is said):

1. The detections of a class are ranked by descending score over all images; equal scores keep
   their order in the results (a stable sort, as MATLAB's ``sort``; py-faster-rcnn's
   ``np.argsort`` is not stable).
2. A detection is compared with every object of its class in its image, difficult and already
   matched ones included, and takes the one of highest IoU (the first in annotation order on a
   tie). It matches when that IoU >= ``iou_threshold`` (the devkit's ``ovmax>=minoverlap``;
   py-faster-rcnn and detectron2 use ``>``, which differs when an IoU is exactly 0.5).
3. Matched to a difficult object (``"difficult"`` or ``"ignore"`` true): neither TP nor FP.
   Matched to another object: TP if that object is not taken yet, else FP (a duplicate, even
   if a second object would also have matched). Unmatched: FP, unless it lies in a crowd region
   (``iscrowd``, COCO's way: intersection over the detection's area >= ``iou_threshold``;
   VOC data has none), then neither. Difficult and crowd objects are not positives. An object
   flagged both ``difficult`` and ``iscrowd`` (a VOC split read as COCO ground truth: an ignore
   region for the COCO metrics) is difficult here, as the devkit scores it.
4. Boxes are COCO's continuous pixel coordinates ``[x, y, w, h]``: IoU = intersection / union
   without the devkit's ``+1`` (which counts the pixels of integer, inclusive corners). The two
   agree exactly when VOC corners are read as ``x = xmin - 1, w = xmax - xmin + 1`` (the
   torchvision / detectron2 reading of VOC's 1-based pixels). A box of negative width or height
   is empty; an IoU whose union is 0 is 0.
5. recall = TP / positives, precision = TP / (TP + FP), taken as 0 while both are 0 (only
   ignored detections so far; as the NumPy ports). All detections count: no per-image cap
   (COCO keeps 100 per image).
6. The 11 thresholds are exactly k / 10 (the nearest doubles): ``np.arange(0, 1.1, 0.1)`` of the
   NumPy ports holds 0.30000000000000004, 0.6000000000000001 and 0.7000000000000001, which
   drop a recall of exactly 3/10, 6/10 or 7/10.
7. A class without positives has no AP: ``-1`` in ``per_class`` (``-`` in the report), left out
   of the mean (as COCO; the devkit would divide by 0). Its detections count nowhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ssdlite.eval.loading import (
    PathLike, check_image_ids, check_results, check_scores, load_ground_truth, load_results, unique_category_names,
)

__all__ = ["VOC_METRICS", "VocResult", "evaluate_voc", "voc_metrics", "voc_ap"]

VOC_METRICS: tuple[str, ...] = ("voc07", "voc")
METRIC_TITLES: dict[str, str] = {
    "voc07": "11-point interpolated AP (VOC2007)",
    "voc": "area under the interpolated curve (VOC2010+)",
}
TP, IGNORED, FP = 1, 0, -1
_REGULAR, _DIFFICULT, _CROWD = 0, 1, 2


@dataclass
class VocResult:
    """The outcome of one VOC evaluation.

    Attributes:
        metric: ``"voc07"`` or ``"voc"``.
        iou_threshold: a detection matches an object at IoU >= this (0.5 in VOC).
        category_ids: dataset category ids, sorted (as :class:`~ssdlite.eval.coco.EvalResult`).
        category_names: their names, same order.
        per_class: name -> AP; -1 when the class has no positive (non-difficult, non-crowd) object.
        num_positives: name -> number of positive objects.
        mAP: mean of the defined per-class APs; -1 when none is defined.
    """

    metric: str
    iou_threshold: float
    category_ids: list[int]
    category_names: list[str]
    per_class: dict[str, float] = field(default_factory=dict)
    num_positives: dict[str, int] = field(default_factory=dict)
    mAP: float = -1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "iou_threshold": float(self.iou_threshold),
            "mAP": float(self.mAP),
            "per_class": {k: float(v) for k, v in self.per_class.items()},
            "num_positives": {k: int(v) for k, v in self.num_positives.items()},
        }


# ----------------------------------------------------------------------------- AP of one curve


def voc_ap(recall: np.ndarray, precision: np.ndarray, metric: str) -> float:
    """AP of one class from its cumulative (recall, precision) points, in rank order.

    ``recall`` must be non-decreasing (it is TP / positives after each detection).
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if metric == "voc07":
        envelope = np.maximum.accumulate(prec[::-1])[::-1]  # envelope[i] = max(prec[i:])
        first = np.searchsorted(rec, np.arange(11) / 10, side="left")  # first point with recall >= t
        reached = first < rec.size
        return float(np.sum(envelope[first[reached]]) / 11)
    if metric == "voc":
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.maximum.accumulate(np.concatenate(([0.0], prec, [0.0]))[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    raise ValueError(f"metric={metric!r} is not one of {list(VOC_METRICS)}")


# ----------------------------------------------------------------------------- COCO dicts -> arrays


class _Boxes(NamedTuple):
    group: np.ndarray  # (N,) int64: category index * images + image index
    category: np.ndarray  # (N,) int64 category index
    xyxy: np.ndarray  # (N, 4) float64, absolute pixels


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    x, y = xywh[:, 0], xywh[:, 1]
    w, h = np.maximum(xywh[:, 2], 0.0), np.maximum(xywh[:, 3], 0.0)
    return np.stack([x, y, x + w, y + h], axis=1)


def _as_xywh(bboxes: list[Any], what: str) -> np.ndarray:
    """(N, 4) float64 of a list of [x, y, w, h]; a ValueError naming ``what`` when one is malformed."""
    if not bboxes:
        return np.zeros((0, 4))
    try:
        arr = np.asarray(bboxes, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros((0, 0))
    if arr.shape != (len(bboxes), 4) or np.isnan(arr).any():
        bad = next((i for i, b in enumerate(bboxes) if not (
            isinstance(b, (list, tuple)) and len(b) == 4
            and all(isinstance(v, (int, float)) and not math.isnan(v) for v in b))), 0)
        raise ValueError(f"{what} #{bad}: bbox must be 4 numbers [x, y, w, h], got {bboxes[bad]!r:.100}")
    return arr


def _index_maps(gt: Mapping[str, Any]) -> tuple[dict[Any, int], dict[Any, int], list[int]]:
    images = {im["id"]: i for i, im in enumerate(gt["images"])}
    cat_ids = sorted({c["id"] for c in gt["categories"]})
    return images, {c: k for k, c in enumerate(cat_ids)}, cat_ids


def _objects(gt: Mapping[str, Any], images: dict, cats: dict) -> tuple[_Boxes, np.ndarray]:
    """The objects on listed images of listed categories, and their kind (regular, difficult, crowd)."""
    anns = [a for a in gt["annotations"] if a["image_id"] in images and a["category_id"] in cats]
    xywh = _as_xywh([a["bbox"] for a in anns], "ground-truth annotation")
    img = np.array([images[a["image_id"]] for a in anns], dtype=np.int64)
    cat = np.array([cats[a["category_id"]] for a in anns], dtype=np.int64)
    # VOC's "difficult" wins over iscrowd (a VOC split's difficult objects are COCO ignore regions too);
    # "ignore" only without iscrowd (pycocotools writes ignore = iscrowd into the dicts it scores)
    kind = np.array([_DIFFICULT if a.get("difficult") else _CROWD if a.get("iscrowd") else _DIFFICULT if a.get("ignore")
                     else _REGULAR for a in anns], dtype=np.int8)
    return _Boxes(cat * len(images) + img, cat, _xyxy(xywh)), kind


def _detections(dets: list[dict[str, Any]], images: dict, cats: dict) -> tuple[_Boxes, np.ndarray]:
    """Detections of listed categories (others are left out, as COCO does) and their scores."""
    try:
        dets = [d for d in dets if d["category_id"] in cats]
        img = np.array([images.get(d["image_id"], -1) for d in dets], dtype=np.int64)
        score = np.array([d["score"] for d in dets], dtype=np.float64)
        xywh = _as_xywh([d["bbox"] for d in dets], "result")
    except (KeyError, TypeError, ValueError):
        check_results(dets)  # names the first malformed result
        raise
    if (img < 0).any():
        stray = dets[int(np.argmax(img < 0))]["image_id"]
        raise ValueError(f"results on image id {stray!r} (maybe others too), which is not in the ground truth")
    if np.isnan(score).any():
        check_scores(dets)
    cat = np.array([cats[d["category_id"]] for d in dets], dtype=np.int64)
    return _Boxes(cat * len(images) + img, cat, _xyxy(xywh)), score


# ----------------------------------------------------------------------------- matching


def _pairs(det_group: np.ndarray, obj_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection, object) of the same image and category, grouped by detection, objects
    in annotation order: two (P,) index arrays."""
    order = np.argsort(obj_group, kind="stable")
    sorted_groups = obj_group[order]
    start = np.searchsorted(sorted_groups, det_group, side="left")
    counts = np.searchsorted(sorted_groups, det_group, side="right") - start
    det = np.repeat(np.arange(len(det_group)), counts)
    offset = np.arange(len(det)) - np.repeat(np.cumsum(counts) - counts, counts)
    return det, order[start[det] + offset]


def _overlap(d: np.ndarray, g: np.ndarray, crowd: bool) -> np.ndarray:
    """IoU of paired (P, 4) xyxy boxes; with ``crowd``, intersection over the detection's area (COCO)."""
    iw = np.maximum(np.minimum(d[:, 2], g[:, 2]) - np.maximum(d[:, 0], g[:, 0]), 0.0)
    ih = np.maximum(np.minimum(d[:, 3], g[:, 3]) - np.maximum(d[:, 1], g[:, 1]), 0.0)
    inter = iw * ih
    area_d = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    union = area_d if crowd else area_d + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _best(dets: _Boxes, objs: _Boxes, among: np.ndarray, crowd: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: the highest overlap with an object (of the indices ``among``) of its image
    and category (0 if none) and that object's index (the first on a tie; -1 if none)."""
    best, which = np.zeros(len(dets.group)), np.full(len(dets.group), -1, dtype=np.int64)
    det, obj = _pairs(dets.group, objs.group[among])
    if det.size == 0:
        return best, which
    obj = among[obj]
    ov = _overlap(dets.xyxy[det], objs.xyxy[obj], crowd)
    starts = np.flatnonzero(np.r_[True, det[1:] != det[:-1]])
    best[det[starts]] = np.maximum.reduceat(ov, starts)
    at_best = np.flatnonzero(ov == best[det])
    first = at_best[np.unique(det[at_best], return_index=True)[1]]
    which[det[first]] = obj[first]
    return best, which


def _outcomes(dets: _Boxes, score: np.ndarray, objs: _Boxes, kind: np.ndarray,
              iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Detections ranked by (category, descending score, results order), and each one's outcome
    (TP 1, ignored 0, FP -1) by the devkit's greedy matching (module docstring, 2-3)."""
    rank = np.lexsort((-score, dets.category))
    ov, which = _best(dets, objs, np.flatnonzero(kind != _CROWD), crowd=False)
    crowd_ov, _ = _best(dets, objs, np.flatnonzero(kind == _CROWD), crowd=True)
    ov, which, crowd_ov = ov[rank], which[rank], crowd_ov[rank]
    matched = ov >= iou_threshold  # implies which >= 0: the threshold is > 0
    which_kind = np.full(len(which), -1, dtype=np.int8)
    which_kind[matched] = kind[which[matched]]
    out = np.where(matched | (crowd_ov < iou_threshold), FP, IGNORED).astype(np.int8)
    out[which_kind == _DIFFICULT] = IGNORED
    regular = np.flatnonzero(which_kind == _REGULAR)
    first = regular[np.unique(which[regular], return_index=True)[1]]  # earliest in rank order
    out[first] = TP
    return rank, out


# ----------------------------------------------------------------------------- evaluation


def voc_metrics(
    gt: Mapping[str, Any],
    dets: list[dict[str, Any]],
    metrics: Sequence[str] = VOC_METRICS,
    iou_threshold: float = 0.5,
) -> dict[str, VocResult]:
    """VOC metrics of loaded COCO results on a loaded COCO ground truth (neither is modified).

    ``gt`` as :func:`~ssdlite.eval.loading.load_ground_truth` returns it, ``dets`` as
    :func:`~ssdlite.eval.loading.load_results`. One matching serves every metric. Raises a
    ValueError for an unknown metric, a malformed result or box, or a result on an unknown image.
    """
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    bad = [m for m in metrics if m not in VOC_METRICS]
    if bad or not metrics:
        raise ValueError(f"VOC metrics must be among {list(VOC_METRICS)}, got {list(metrics)}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    images, cats, cat_ids = _index_maps(gt)
    objs, kind = _objects(gt, images, cats)
    det_boxes, score = _detections(dets, images, cats)
    rank, outcome = _outcomes(det_boxes, score, objs, kind, iou_threshold)
    ranked_cat = det_boxes.category[rank]
    positives = np.bincount(objs.category[kind == _REGULAR], minlength=len(cat_ids))
    cats_by_id = {c["id"]: c for c in gt["categories"]}
    names = unique_category_names([cats_by_id[c] for c in cat_ids])
    results = {m: VocResult(m, iou_threshold, list(cat_ids), names) for m in metrics}
    for k, name in enumerate(names):
        lo, hi = np.searchsorted(ranked_cat, [k, k + 1])
        npos = int(positives[k])
        tp = np.cumsum(outcome[lo:hi] == TP, dtype=np.float64)
        fp = np.cumsum(outcome[lo:hi] == FP, dtype=np.float64)
        prec = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
        for r in results.values():
            r.num_positives[name] = npos
            r.per_class[name] = voc_ap(tp / npos, prec, r.metric) if npos else -1.0
    for r in results.values():
        defined = [v for v in r.per_class.values() if v >= 0]
        r.mAP = math.fsum(defined) / len(defined) if defined else -1.0
    return results


def evaluate_voc(
    gt: PathLike | Mapping[str, Any],
    results: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    metric: str = "voc",
    iou_threshold: float = 0.5,
) -> VocResult:
    """VOC box evaluation (``metric`` ``"voc07"`` or ``"voc"``) of ``results`` against ``gt``.

    Args:
        gt: path to a COCO instances json, or the loaded dict (not modified); objects may carry
            ``"difficult"`` / ``"ignore"`` (VOC) and ``"iscrowd"`` (COCO).
        results: path to a COCO results json, a list of result dicts
            ``{image_id, category_id, bbox [x, y, w, h] px, score}``, or a COCO-style dict
            whose ``annotations`` are the results. May be empty.
        metric: ``"voc07"`` (11-point) or ``"voc"`` (area, VOC2010+).
        iou_threshold: 0.5 in VOC.

    Raises:
        ValueError: unknown metric, malformed files, or results on images not in ``gt``.
    """
    gt_data = load_ground_truth(gt)
    dets = load_results(results)
    check_image_ids(dets, gt_data)
    return voc_metrics(gt_data, dets, (metric,), iou_threshold)[metric]
