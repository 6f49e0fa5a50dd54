"""The two COCO box evaluators behind :func:`ssdlite.eval.coco.evaluate_coco`.

Two interchangeable back ends compute the numbers:

- ``"faster"``: faster-coco-eval's ``COCOeval_faster`` (C++ matching and accumulation), the default;
- ``"pycocotools"``: the official ``COCOeval``, the reference.

Both see the same inputs (ground truth and results loaded once, by us:
:mod:`ssdlite.eval.loading`) and give identical numbers (checked to 1e-9 in
tests/test_coco_eval.py). Every ground-truth image is evaluated, also those without
detections, so missed objects count against recall. The libraries' progress prints go to
this module's logger at DEBUG level.

Speed: the faster path hands ``COCOeval_faster`` the same data with less Python work
(:func:`_results_as_coco`, :func:`_box_evaluator_class`); on 5,000 images with 300
detections each (``python tools/benchmark.py eval``) it takes about 0.22x pycocotools' time.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import logging
import math
from typing import Any

from ssdlite.eval.loading import check_scores

__all__ = ["EVALUATORS", "run_evaluator"]

log = logging.getLogger(__name__)

EVALUATORS: tuple[str, ...] = ("faster", "pycocotools")

_NEG_INF = -math.inf


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
        if not d["score"] > _NEG_INF:  # KeyError / TypeError / NaN: named by check_results
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
    needed) and relies on unique annotation ids, which
    :func:`~ssdlite.eval.loading.load_ground_truth` guarantees and results get from
    :func:`_results_as_coco`. Other iou types, ``useCats=0`` and LVIS mode use the stock
    method. Checked against it in tests/test_coco_eval.py.
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
            check_scores(dets)  # loadRes does not look at scores (the faster path checks them in passing)
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


def run_evaluator(evaluator: str, gt: dict[str, Any], dets: list[dict[str, Any]]):
    """Evaluate, accumulate and summarize ``dets`` against ``gt`` with one of :data:`EVALUATORS`;
    returns the library's evaluator object (``params``, ``eval``, ``stats``).

    ``gt`` comes from :func:`~ssdlite.eval.loading.load_ground_truth` and ``dets`` from
    :func:`~ssdlite.eval.loading.load_results`: both back ends write into them.
    """
    run = _run_faster if evaluator == "faster" else _run_pycocotools
    return run(gt, dets)
