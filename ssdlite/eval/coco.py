"""COCO box metrics: the 12 pycocotools stats, per-class AP and precision-recall curves.

Two interchangeable back ends compute the numbers:

- ``"faster"``: faster-coco-eval's ``COCOeval_faster`` (C++ matching and accumulation), the default;
- ``"pycocotools"``: the official ``COCOeval``, the reference.

Both see the same inputs (ground truth and results loaded once, by us) and give identical
numbers (checked to 1e-9 in tests/test_coco_eval.py). Every ground-truth image is
evaluated, also those without detections, so missed objects count against recall.
The libraries' progress prints go to this module's logger at DEBUG level.

Speed: the faster path hands ``COCOeval_faster`` the same data with less Python work
(:func:`_results_as_coco`, :func:`_box_evaluator_class`); on 5,000 images with 300
detections each (``python tools/benchmark.py eval``) it takes about 0.22x pycocotools' time.

Results follow the COCO results format: a list of
``{"image_id": int, "category_id": int, "bbox": [x, y, w, h] (absolute pixels), "score": float}``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

__all__ = [
    "STAT_NAMES",
    "EVALUATORS",
    "EvalResult",
    "evaluate_coco",
    "load_ground_truth",
    "load_results",
    "detections_to_coco_results",
    "format_summary",
    "format_per_class",
    "plot_pr_curves",
]

log = logging.getLogger(__name__)

# pycocotools' COCOeval.stats order for iouType="bbox".
STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
EVALUATORS: tuple[str, ...] = ("faster", "pycocotools")

# (title, iou label, area, maxDets) of each stat, as pycocotools prints them.
_STAT_LINES: tuple[tuple[str, str, str, int], ...] = (
    ("Average Precision  (AP)", "0.50:0.95", "all", 100),
    ("Average Precision  (AP)", "0.50", "all", 100),
    ("Average Precision  (AP)", "0.75", "all", 100),
    ("Average Precision  (AP)", "0.50:0.95", "small", 100),
    ("Average Precision  (AP)", "0.50:0.95", "medium", 100),
    ("Average Precision  (AP)", "0.50:0.95", "large", 100),
    ("Average Recall     (AR)", "0.50:0.95", "all", 1),
    ("Average Recall     (AR)", "0.50:0.95", "all", 10),
    ("Average Recall     (AR)", "0.50:0.95", "all", 100),
    ("Average Recall     (AR)", "0.50:0.95", "small", 100),
    ("Average Recall     (AR)", "0.50:0.95", "medium", 100),
    ("Average Recall     (AR)", "0.50:0.95", "large", 100),
)

PathLike = Union[str, Path]
_RESULT_KEYS = frozenset(("image_id", "category_id", "bbox", "score"))
_NEG_INF = -math.inf


@dataclass
class EvalResult:
    """The outcome of one COCO box evaluation.

    Attributes:
        stats: the 12 pycocotools stats in :data:`STAT_NAMES` order (-1 where undefined,
            e.g. no ground truth of that size).
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

    @property
    def stats_dict(self) -> dict[str, float]:
        """``{"AP": ..., "AP50": ..., ..., "ARl": ...}``."""
        return dict(zip(STAT_NAMES, self.stats))

    def to_json(self) -> dict[str, Any]:
        """Plain dict for ``--json-out``: the 12 stats as a list and by name, and per-class APs."""
        out: dict[str, Any] = {"stats": [float(s) for s in self.stats]}
        out.update({k: float(v) for k, v in self.stats_dict.items()})
        out["per_class"] = {k: float(v) for k, v in self.per_class.items()}
        out["per_class_AP50"] = {k: float(v) for k, v in self.per_class_ap50.items()}
        out["evaluator"] = self.evaluator
        out["num_images"] = int(self.num_images)
        out["num_detections"] = int(self.num_detections)
        return out


# ----------------------------------------------------------------------------- loading


def _read_json(path: PathLike, what: str) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise OSError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None


def load_ground_truth(gt: PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A COCO instances dict from a path or a dict, checked, that the evaluators may modify.

    A dict is copied (its annotation dicts too: both evaluators write keys into them).
    Raises ValueError when ``images``, ``annotations`` or ``categories`` is missing.
    """
    source = str(gt) if isinstance(gt, (str, Path)) else "ground-truth dict"
    if isinstance(gt, (str, Path)):
        data = _read_json(gt, "ground-truth file")
    elif isinstance(gt, Mapping):
        data = dict(gt)
        data["annotations"] = [dict(a) for a in gt.get("annotations", ())]
    else:
        raise ValueError(f"ground truth must be a path or a COCO dict, got {type(gt).__name__}")
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a COCO instances file is a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{source}: missing or invalid {key!r} list (not a COCO instances file?)")
    ids = set()
    for ann in data["annotations"]:
        if "area" not in ann or "bbox" not in ann or "image_id" not in ann or "category_id" not in ann:
            # both evaluators bin objects by the annotation's "area" (the segment area in COCO)
            raise ValueError(
                f"{source}: annotation id={ann.get('id')} lacks one of 'image_id', 'category_id', 'bbox', 'area'"
            )
        ids.add(ann.get("id"))
    if len(ids) != len(data["annotations"]) or 0 in ids or None in ids:
        # Both evaluators look annotations up by id and use id 0 to mean "unmatched": a
        # repeated, missing or zero id silently drops or mis-scores objects. Renumber our copy.
        log.warning("%s: annotation ids are missing, repeated or 0; renumbering them 1..%d for evaluation",
                    source, len(data["annotations"]))
        for i, ann in enumerate(data["annotations"], 1):
            ann["id"] = i
    return data


def load_results(results: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[dict[str, Any]]:
    """COCO box results as a fresh list of dicts (safe to hand to an evaluator, which writes into them).

    Accepts a path to a results json, a list of dicts, or a COCO-style dict whose
    ``annotations`` are the results. Each result needs ``image_id``, ``category_id``,
    ``bbox`` ([x, y, w, h] pixels) and ``score``.
    """
    source = str(results) if isinstance(results, (str, Path)) else "results"
    if isinstance(results, (str, Path)):
        data = _read_json(results, "results file")
        copy_items = False
    else:
        data = results
        copy_items = True
    if isinstance(data, Mapping):
        if not isinstance(data.get("annotations"), list):
            raise ValueError(f"{source}: expected a list of results or a dict with an 'annotations' list")
        data = data["annotations"]
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{source}: expected a list of results, got {type(data).__name__}")
    return [dict(d) for d in data] if copy_items else list(data)


def _check_results(dets: list[Any], source: str = "results") -> None:
    """Raise a ValueError naming the first malformed result (one pass; run when an evaluator fails)."""
    bad = [i for i, d in enumerate(dets)
           if not (type(d) is dict and d.keys() >= _RESULT_KEYS
                   and isinstance(d["bbox"], (list, tuple)) and len(d["bbox"]) == 4
                   and all(isinstance(v, (int, float)) for v in d["bbox"])
                   and isinstance(d["score"], (int, float)) and d["score"] == d["score"])]
    if bad:
        d = dets[bad[0]]
        raise ValueError(
            f"{source}: {len(bad)} result(s) malformed, e.g. #{bad[0]}: each must be a dict with "
            f"{sorted(_RESULT_KEYS)}, bbox [x, y, w, h] numbers and a numeric, non-NaN score, got {d!r:.200}"
        )


def _check_scores(dets: list[dict[str, Any]]) -> None:
    """A missing, non-numeric or NaN score raises (COCO ranks by score; NaN would rank arbitrarily)."""
    bad = [i for i, d in enumerate(dets) if not d["score"] > _NEG_INF]
    if bad:
        raise ValueError(f"{len(bad)} result(s) have a NaN or -inf score, e.g. #{bad[0]}: {dets[bad[0]]!r:.200}")


def _check_image_ids(dets: list[dict[str, Any]], gt: dict[str, Any]) -> None:
    """Every result's image must be a ground-truth image (pycocotools asserts the same)."""
    try:
        dt_img_ids = {d["image_id"] for d in dets}
        dt_cat_ids = {d["category_id"] for d in dets}
    except (KeyError, TypeError):
        _check_results(dets)
        raise
    gt_ids = {img["id"] for img in gt["images"]}
    unknown = dt_img_ids - gt_ids
    if unknown:
        some = sorted(unknown)[:5]
        raise ValueError(
            f"{len(unknown)} image id(s) of the results are not in the ground truth (e.g. {some}); "
            "results and annotations must come from the same dataset"
        )
    gt_cats = {c["id"] for c in gt["categories"]}
    stray = dt_cat_ids - gt_cats
    if stray:
        log.warning("results use %d category id(s) absent from the ground truth (ignored): %s",
                    len(stray), sorted(stray)[:10])


# ----------------------------------------------------------------------------- the two back ends


def _results_as_coco(
    coco_cls: type, gt: dict[str, Any], dets: list[dict[str, Any]], index: bool = True, **kwargs: Any
):
    """``coco_gt.loadRes(dets)`` for boxes, minus the work a box evaluation never uses.

    Sets exactly the fields loadRes sets for box results (``area = w * h``, ``id`` from 1,
    ``iscrowd = 0``) but not the "segmentation" polygon it builds per box, which only a
    mask evaluation reads. ``index=False`` also skips ``createIndex`` (the id and image
    look-up tables), which :func:`_box_evaluator_class`'s ``_prepare`` does not need;
    on 1.5M results the two save several seconds. Checked against loadRes in
    tests/test_coco_eval.py.
    """
    for i, d in enumerate(dets, 1):
        bb = d["bbox"]
        d["area"] = bb[2] * bb[3]
        d["id"] = i
        d["iscrowd"] = 0
        if not d["score"] > _NEG_INF:  # KeyError / TypeError / NaN: named by _check_results
            raise ValueError(f"result #{i - 1} has score {d['score']!r}")
    res = coco_cls(**kwargs)
    res.dataset = {
        "info": copy.deepcopy(gt.get("info", {})),
        "images": list(gt["images"]),
        "annotations": dets,
        "categories": copy.deepcopy(gt["categories"]),
    }
    if index:
        res.createIndex()
    return res


@functools.lru_cache(maxsize=None)
def _box_evaluator_class() -> type:
    """``COCOeval_faster`` with a leaner ``_prepare`` for box evaluation.

    The stock ``_prepare`` gathers annotations through ``getAnnIds``/``loadAnns`` (an id
    list, a type check per id, a dict lookup per id) before handing each one to the C++
    dataset; this one, about twice as fast on 1.5M results (~1 s saved), hands them over
    in one pass in file order, which keeps the per-(image, category) order the stock
    version produces (``imgToAnns`` is in file order too), so ties between equal scores
    are broken the same way. It reads the results from ``cocoDt.dataset`` (no index
    needed) and relies on unique annotation ids, which :func:`load_ground_truth`
    guarantees and results get from :func:`_results_as_coco`. Other iou types,
    ``useCats=0`` and LVIS mode use the stock method. Checked against it in
    tests/test_coco_eval.py.
    """
    from faster_coco_eval import COCOeval_faster

    class BoxEvalFaster(COCOeval_faster):
        def _prepare(self) -> None:
            p = self.params
            if p.iouType != "bbox" or not p.useCats or self.lvis_style:
                if not self.cocoDt.anns and self.cocoDt.dataset.get("annotations"):
                    self.cocoDt.createIndex()  # built with index=False
                return super()._prepare()
            self.gt_dataset.clean()
            self.dt_dataset.clean()
            img_ids, cat_ids = set(p.imgIds), set(p.catIds)
            gt_pairs: set[tuple[int, int]] = set()
            dt_pairs: set[tuple[int, int]] = set()
            add_gt, add_dt = self.gt_dataset.append_ref, self.dt_dataset.append_ref
            for gt in self.cocoGt.dataset["annotations"]:
                key = (gt["image_id"], gt["category_id"])
                if key[0] in img_ids and key[1] in cat_ids:
                    gt["ignore"] = int(gt.get("iscrowd", 0))  # crowd regions are ignore regions
                    add_gt(key[0], key[1], gt)
                    gt_pairs.add(key)
            for dt in self.cocoDt.dataset["annotations"]:
                key = (dt["image_id"], dt["category_id"])
                if key[0] in img_ids and key[1] in cat_ids:
                    add_dt(key[0], key[1], dt)
                    dt_pairs.add(key)
            self._nonempty_iou_pairs = gt_pairs & dt_pairs
            return None

    return BoxEvalFaster


def _run_faster(gt: dict[str, Any], dets: list[dict[str, Any]]):
    from faster_coco_eval import COCO

    quiet = log.debug
    coco_gt = COCO(gt, print_function=quiet)
    coco_dt = _results_as_coco(COCO, gt, dets, index=False, print_function=quiet)
    ev = _box_evaluator_class()(coco_gt, coco_dt, "bbox", print_function=quiet)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def _run_pycocotools(gt: dict[str, Any], dets: list[dict[str, Any]]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if dets:
            _check_scores(dets)  # loadRes does not look at scores (the faster path checks them in passing)
            coco_dt = coco_gt.loadRes(dets)
        else:  # loadRes indexes anns[0]: build the empty result set by hand
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": list(gt["images"]),
                "annotations": [],
                "categories": copy.deepcopy(gt["categories"]),
            }
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    log.debug("pycocotools: %s", chatter.getvalue())
    return ev


def _unique_names(cats: list[dict[str, Any]]) -> list[str]:
    names = [str(c.get("name", c["id"])) for c in cats]
    repeated = {n for n in names if names.count(n) > 1}
    return [f"{n} ({c['id']})" if n in repeated else n for n, c in zip(names, cats)]


def _mean_valid(x: np.ndarray) -> float:
    valid = x[x > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def evaluate_coco(
    gt: PathLike | Mapping[str, Any],
    results: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    evaluator: str = "faster",
    per_class: bool = True,
) -> EvalResult:
    """COCO box evaluation of ``results`` against ``gt`` on every ground-truth image.

    Args:
        gt: path to a COCO instances json, or the loaded dict (not modified).
        results: path to a COCO results json, a list of result dicts
            ``{image_id, category_id, bbox [x, y, w, h] px, score}`` (not modified), or a
            COCO-style dict whose ``annotations`` are the results. May be empty (all stats 0).
        evaluator: ``"faster"`` (faster-coco-eval) or ``"pycocotools"`` (the reference).
        per_class: also fill ``per_class`` / ``per_class_ap50``.

    Raises:
        ValueError: unknown evaluator, malformed files, or results on images not in ``gt``.
    """
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator={evaluator!r} is not one of {list(EVALUATORS)}")
    # Millions of small dicts: the cyclic GC would rescan them over and over while they are
    # built (json, indexes); they hold no cycles, so pause it (same for both evaluators).
    with _gc_paused():
        return _evaluate(gt, results, evaluator, per_class)


@contextlib.contextmanager
def _gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _evaluate(gt: Any, results: Any, evaluator: str, per_class: bool) -> EvalResult:
    gt_data = load_ground_truth(gt)
    dets = load_results(results)
    _check_image_ids(dets, gt_data)
    num_images = len(gt_data["images"])
    run = _run_faster if evaluator == "faster" else _run_pycocotools
    try:
        ev = run(gt_data, dets)
    except Exception:
        # the libraries' errors on malformed results are cryptic: name the bad result
        _check_results(dets, str(results) if isinstance(results, (str, Path)) else "results")
        raise

    p = ev.params
    cat_ids = [int(c) for c in p.catIds]
    cats_by_id = {c["id"]: c for c in gt_data["categories"]}
    names = _unique_names([cats_by_id[c] for c in cat_ids])
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
            result.per_class[name] = _mean_valid(pk)
            result.per_class_ap50[name] = _mean_valid(pk[i50])
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


# ----------------------------------------------------------------------------- reporting


def format_summary(result: EvalResult) -> str:
    """The 12 stats in pycocotools' wording, one per line."""
    lines = []
    for (title, iou, area, max_dets), value in zip(_STAT_LINES, result.stats):
        lines.append(f" {title} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {value:0.3f}")
    return "\n".join(lines)


def format_per_class(result: EvalResult) -> str:
    """A table of per-class AP@[.5:.95] and AP@.5 (``-`` for classes without ground truth)."""
    if not result.per_class:
        return "(no per-class results)"
    width = max(8, *(len(n) for n in result.per_class))
    head = f"{'category':<{width}}  {'id':>5}  {'AP':>6}  {'AP50':>6}"
    rows = [head, "-" * len(head)]

    def cell(v: float) -> str:
        return f"{'-':>6}" if v < 0 or math.isnan(v) else f"{v:6.3f}"

    for cid, name in zip(result.category_ids, result.category_names):
        ap, ap50 = result.per_class.get(name, -1.0), result.per_class_ap50.get(name, -1.0)
        rows.append(f"{name:<{width}}  {cid:>5}  {cell(ap)}  {cell(ap50)}")
    rows.append("-" * len(head))
    rows.append(f"{'mean':<{width}}  {'':>5}  {cell(result.stats[0])}  {cell(result.stats[1])}")
    return "\n".join(rows)


def _mean_curve(pr: np.ndarray) -> np.ndarray | None:
    """Mean over classes of (R, K) precision curves, ignoring classes without gt (-1)."""
    valid = (pr > -1).all(axis=0)
    if not valid.any():
        return None
    return pr[:, valid].mean(axis=1)


def _mean_over_ious(pr: np.ndarray) -> np.ndarray | None:
    """(T, R, K) precision -> (R,) mean over IoUs and over classes with gt."""
    valid = (pr > -1).all(axis=(0, 1))
    if not valid.any():
        return None
    return pr[:, :, valid].mean(axis=(0, 2))


def plot_pr_curves(result: EvalResult, path: PathLike) -> Path:
    """Write a PNG of precision-recall curves (area all, maxDets 100).

    Left: the mean over classes at IoU 0.50, 0.75 and averaged over 0.50:0.95; right: the
    per-class curves at IoU 0.50. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p = result.precision
    rec = result.recall_thresholds
    fig = Figure(figsize=(12, 5), dpi=100)
    ax_mean, ax_cls = fig.subplots(1, 2)
    if p.size:
        iou = result.iou_thresholds
        for thr, style in ((0.5, "-"), (0.75, "--")):
            t = int(np.argmin(np.abs(iou - thr)))
            curve = _mean_curve(p[t, :, :, 0, -1])
            if curve is not None:
                ax_mean.plot(rec, curve, style, label=f"IoU={thr:.2f} (AP={_mean_valid(p[t, :, :, 0, -1]):.3f})")
        curve_all = _mean_over_ious(p[:, :, :, 0, -1])
        if curve_all is not None:
            ax_mean.plot(rec, curve_all, ":", label=f"IoU=0.50:0.95 (AP={result.stats[0]:.3f})")
        t50 = int(np.argmin(np.abs(iou - 0.5)))
        names = result.category_names
        for k, name in enumerate(names):
            ck = p[t50, :, k, 0, -1]
            if (ck > -1).all():
                show_label = len(names) <= 12
                ax_cls.plot(rec, ck, lw=1.0 if show_label else 0.6, alpha=0.9 if show_label else 0.5,
                            label=f"{name} ({result.per_class_ap50.get(name, -1):.2f})" if show_label else None)
    for ax, title in ((ax_mean, "mean over classes"), (ax_cls, "per class, IoU=0.50")):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    if ax_mean.lines:
        ax_mean.legend(loc="lower left")
    if ax_cls.lines and len(result.category_names) <= 12:
        ax_cls.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"COCO precision-recall ({result.evaluator}, {result.num_images} images)")
    fig.tight_layout()
    fig.savefig(path)
    return path
