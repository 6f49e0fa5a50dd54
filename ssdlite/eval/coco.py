"""COCO box metrics: the 12 pycocotools stats, per-class AP and precision-recall curves.

:func:`evaluate_coco` loads and checks the ground truth and the results
(:mod:`ssdlite.eval.loading`), runs one of the two back ends, faster-coco-eval or
pycocotools (:mod:`ssdlite.eval.backends`, identical numbers), and returns an
:class:`EvalResult`; asked for them (``metrics``), the VOC metrics of the same inputs
(:mod:`ssdlite.eval.voc`) come beside the COCO stats, or instead of them.
:func:`detections_to_coco_results` turns a detector's outputs into results. The text report
is in :mod:`ssdlite.eval.report`, the plots in :mod:`ssdlite.eval.plots`.

Results follow the COCO results format: a list of
``{"image_id": int, "category_id": int, "bbox": [x, y, w, h] (absolute pixels), "score": float}``.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ssdlite.eval.backends import EVALUATORS, run_evaluator
from ssdlite.eval.loading import (
    PathLike, check_image_ids, check_results, load_ground_truth, load_results, unique_category_names,
)
from ssdlite.eval.voc import VOC_METRICS, VocResult, voc_metrics

__all__ = [
    "STAT_NAMES",
    "METRICS",
    "EvalResult",
    "evaluate_coco",
    "detections_to_coco_results",
]

# pycocotools' COCOeval.stats order for iouType="bbox".
STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
# What evaluate_coco can compute: the COCO stats, and the VOC APs of ssdlite.eval.voc.
METRICS: tuple[str, ...] = ("coco", *VOC_METRICS)


@dataclass
class EvalResult:
    """The outcome of one box evaluation: the COCO stats and / or the VOC APs.

    Attributes:
        stats: the 12 pycocotools stats in :data:`STAT_NAMES` order (-1 where undefined,
            e.g. no ground truth of that size); empty when the COCO metric was not asked for
            (and so are ``per_class``, ``per_class_ap50``, ``precision`` and ``recall``).
        category_ids: dataset category ids, sorted (the K axis of ``precision``).
        category_names: their names, same order (made unique with `` (id)`` if repeated).
        per_class: name -> AP@[.5:.95] (area all, maxDets 100); -1 when the class has no gt.
        per_class_ap50: name -> AP@.5, same conventions.
        precision: (T, R, K, A, M) float64, pycocotools' ``eval["precision"]``: IoU
            thresholds x 101 recall points x classes x areas (all, small, medium, large) x
            maxDets (1, 10, 100); -1 where undefined.
        recall: (T, K, A, M) float64, pycocotools' ``eval["recall"]``.
        iou_thresholds: (T,) float64, 0.50 ... 0.95.
        recall_thresholds: (R,) float64, 0.00 ... 1.00.
        evaluator: "faster" or "pycocotools".
        num_images: ground-truth images evaluated.
        num_detections: detections read from the results.
        voc: metric name (``"voc07"``, ``"voc"``) -> its :class:`~ssdlite.eval.voc.VocResult`,
            for those asked for.
    """

    stats: list[float]
    category_ids: list[int]
    category_names: list[str]
    per_class: dict[str, float] = field(default_factory=dict)
    per_class_ap50: dict[str, float] = field(default_factory=dict)
    precision: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0, 0, 0)))
    recall: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0, 0)))
    iou_thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recall_thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    evaluator: str = "faster"
    num_images: int = 0
    num_detections: int = 0
    voc: dict[str, VocResult] = field(default_factory=dict)

    @property
    def stats_dict(self) -> dict[str, float]:
        """``{"AP": ..., "AP50": ..., ..., "ARl": ...}``."""
        return dict(zip(STAT_NAMES, self.stats))

    def to_json(self) -> dict[str, Any]:
        """Plain dict for ``--json-out``: the 12 stats as a list and by name, and per-class APs
        (when COCO was computed); each VOC metric's result under its name."""
        out: dict[str, Any] = {}
        if self.stats:
            out["stats"] = [float(s) for s in self.stats]
            out.update({k: float(v) for k, v in self.stats_dict.items()})
            out["per_class"] = {k: float(v) for k, v in self.per_class.items()}
            out["per_class_AP50"] = {k: float(v) for k, v in self.per_class_ap50.items()}
            out["evaluator"] = self.evaluator
        out.update({name: r.to_json() for name, r in self.voc.items()})
        out["num_images"] = int(self.num_images)
        out["num_detections"] = int(self.num_detections)
        return out


def mean_valid(x: np.ndarray) -> float:
    """Mean of the defined entries (> -1) of a pycocotools precision / recall array; -1 when none."""
    valid = x[x > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def evaluate_coco(
    gt: PathLike | Mapping[str, Any],
    results: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    evaluator: str = "faster",
    per_class: bool = True,
    metrics: Sequence[str] = ("coco",),
) -> EvalResult:
    """COCO (and / or VOC) box evaluation of ``results`` against ``gt`` on every ground-truth image.

    Args:
        gt: path to a COCO instances json, or the loaded dict (not modified).
        results: path to a COCO results json, a list of result dicts
            ``{image_id, category_id, bbox [x, y, w, h] px, score}`` (not modified), or a
            COCO-style dict whose ``annotations`` are the results. May be empty (all stats 0).
        evaluator: ``"faster"`` (faster-coco-eval) or ``"pycocotools"`` (the reference).
        per_class: also fill ``per_class`` / ``per_class_ap50``.
        metrics: some of :data:`METRICS`: ``"coco"`` (the 12 stats), ``"voc07"`` and ``"voc"``
            (VOC APs at IoU 0.5, in ``voc``; :mod:`ssdlite.eval.voc`).

    Raises:
        ValueError: unknown evaluator or metric, malformed files, or results on images not in ``gt``.
    """
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator={evaluator!r} is not one of {list(EVALUATORS)}")
    metrics = list(dict.fromkeys([metrics] if isinstance(metrics, str) else metrics))
    if not metrics or any(m not in METRICS for m in metrics):
        raise ValueError(f"metrics must be some of {list(METRICS)}, got {metrics}")
    # Millions of small dicts: the cyclic GC would rescan them over and over while they are
    # built (json, indexes); they hold no cycles, so pause it (same for both evaluators).
    with _gc_paused():
        return _evaluate(gt, results, evaluator, per_class, metrics)


@contextlib.contextmanager
def _gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _evaluate(gt: Any, results: Any, evaluator: str, per_class: bool, metrics: list[str]) -> EvalResult:
    gt_data = load_ground_truth(gt)
    dets = load_results(results)
    check_image_ids(dets, gt_data)
    # VOC first: the COCO evaluators write into these dicts (pycocotools sets each object's "ignore")
    voc_names = [m for m in metrics if m in VOC_METRICS]
    voc = voc_metrics(gt_data, dets, voc_names) if voc_names else {}
    if "coco" not in metrics:
        cats_by_id = {c["id"]: c for c in gt_data["categories"]}
        cat_ids = sorted(cats_by_id)
        return EvalResult(stats=[], category_ids=cat_ids,
                          category_names=unique_category_names([cats_by_id[c] for c in cat_ids]),
                          evaluator=evaluator, num_images=len(gt_data["images"]), num_detections=len(dets), voc=voc)
    result = _coco(gt_data, dets, evaluator, per_class, str(results) if isinstance(results, (str, Path)) else "results")
    result.voc = voc
    return result


def _coco(gt_data: dict[str, Any], dets: list[dict[str, Any]], evaluator: str, per_class: bool,
          source: str) -> EvalResult:
    num_images = len(gt_data["images"])
    try:
        ev = run_evaluator(evaluator, gt_data, dets)
    except Exception:
        # the libraries' errors on malformed results are cryptic: name the bad result
        check_results(dets, source)
        raise

    p = ev.params
    cat_ids = [int(c) for c in p.catIds]
    cats_by_id = {c["id"]: c for c in gt_data["categories"]}
    names = unique_category_names([cats_by_id[c] for c in cat_ids])
    precision = np.asarray(ev.eval["precision"], dtype=np.float64)
    recall = np.asarray(ev.eval["recall"], dtype=np.float64)
    result = EvalResult(
        stats=[float(s) for s in np.asarray(ev.stats)[: len(STAT_NAMES)]],
        category_ids=cat_ids,
        category_names=names,
        precision=precision,
        recall=recall,
        iou_thresholds=np.asarray(p.iouThrs, dtype=np.float64),
        recall_thresholds=np.asarray(p.recThrs, dtype=np.float64),
        evaluator=evaluator,
        num_images=num_images,
        num_detections=len(dets),
    )
    if per_class:
        i50 = int(np.argmin(np.abs(result.iou_thresholds - 0.5)))
        for k, name in enumerate(names):
            pk = precision[:, :, k, 0, -1]  # area "all", maxDets 100
            result.per_class[name] = mean_valid(pk)
            result.per_class_ap50[name] = mean_valid(pk[i50])
    return result


# ----------------------------------------------------------------------------- model outputs -> results


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def detections_to_coco_results(
    image_id: int,
    boxes: Any,
    scores: Any,
    labels: Any,
    label_to_category_id: Sequence[int] | Mapping[int, int],
) -> list[dict[str, Any]]:
    """COCO results of one image.

    Args:
        image_id: the image's id in the ground truth.
        boxes: (K, 4) xyxy, absolute pixels of the original image (tensor or array).
        scores: (K,) confidences.
        labels: (K,) 0-based contiguous labels.
        label_to_category_id: dataset category id of each label (list indexed by label, or dict).

    Returns:
        K dicts ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, full float precision.
    """
    b = _as_numpy(boxes).astype(np.float64, copy=False)
    s = _as_numpy(scores).astype(np.float64, copy=False).reshape(-1)
    lab = _as_numpy(labels).reshape(-1)
    if b.size == 0 and s.size == 0 and lab.size == 0:
        return []
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (K, 4) xyxy, got shape {tuple(b.shape)}")
    if not (len(b) == len(s) == len(lab)):
        raise ValueError(f"boxes, scores and labels differ in length: {len(b)}, {len(s)}, {len(lab)}")
    lab_list = [int(k) for k in lab.tolist()]
    if isinstance(label_to_category_id, Mapping):
        bad = sorted({k for k in lab_list if k not in label_to_category_id})
    else:
        bad = sorted({k for k in lab_list if not 0 <= k < len(label_to_category_id)})
    if bad:
        raise ValueError(f"labels {bad[:5]} have no category id ({len(label_to_category_id)} labels known)")
    cat_ids = [int(label_to_category_id[k]) for k in lab_list]
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1).tolist()
    img = int(image_id)
    return [
        {"image_id": img, "category_id": c, "bbox": box, "score": float(sc)}
        for c, box, sc in zip(cat_ids, xywh, s.tolist())
    ]
