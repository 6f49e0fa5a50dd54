"""The text report of an evaluation: the 12 COCO stats in pycocotools' wording, a per-class table,
and the VOC mAPs with their per-class table."""

from __future__ import annotations

import math

from ssdlite.eval.coco import EvalResult
from ssdlite.eval.voc import METRIC_TITLES

__all__ = ["format_summary", "format_per_class", "format_voc"]

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


def format_summary(result: EvalResult) -> str:
    """The 12 stats in pycocotools' wording, one per line."""
    lines = []
    for (title, iou, area, max_dets), value in zip(_STAT_LINES, result.stats):
        lines.append(f" {title} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {value:0.3f}")
    return "\n".join(lines)


def _cell(v: float) -> str:
    return f"{'-':>6}" if v < 0 or math.isnan(v) else f"{v:6.3f}"


def format_per_class(result: EvalResult) -> str:
    """A table of per-class AP@[.5:.95] and AP@.5 (``-`` for classes without ground truth)."""
    if not result.per_class:
        return "(no per-class results)"
    width = max(8, *(len(n) for n in result.per_class))
    head = f"{'category':<{width}}  {'id':>5}  {'AP':>6}  {'AP50':>6}"
    rows = [head, "-" * len(head)]
    for cid, name in zip(result.category_ids, result.category_names):
        ap, ap50 = result.per_class.get(name, -1.0), result.per_class_ap50.get(name, -1.0)
        rows.append(f"{name:<{width}}  {cid:>5}  {_cell(ap)}  {_cell(ap50)}")
    rows.append("-" * len(head))
    rows.append(f"{'mean':<{width}}  {'':>5}  {_cell(result.stats[0])}  {_cell(result.stats[1])}")
    return "\n".join(rows)


def format_voc(result: EvalResult, per_class: bool = True) -> str:
    """The VOC mAP of each VOC metric computed, one per line, then (``per_class``) a table of the
    per-class APs beside the number of positive objects (``-`` for classes without any)."""
    if not result.voc:
        return "(no VOC results)"
    title = max(len(METRIC_TITLES[m]) for m in result.voc)
    lines = [f" VOC mAP @[ IoU={r.iou_threshold:.2f} ] {METRIC_TITLES[m]:<{title}s} = {_cell(r.mAP).strip()}"
             for m, r in result.voc.items()]
    if not per_class:
        return "\n".join(lines)
    first = next(iter(result.voc.values()))
    width = max(8, *(len(n) for n in first.category_names))
    head = f"{'category':<{width}}  {'id':>5}  {'objects':>7}" + "".join(f"  {m:>6}" for m in result.voc)
    rows = ["", head, "-" * len(head)]
    for cid, name in zip(first.category_ids, first.category_names):
        aps = "".join(f"  {_cell(r.per_class[name])}" for r in result.voc.values())
        rows.append(f"{name:<{width}}  {cid:>5}  {first.num_positives[name]:>7d}{aps}")
    rows.append("-" * len(head))
    rows.append(f"{'mean':<{width}}  {'':>5}  {'':>7}" + "".join(f"  {_cell(r.mAP)}" for r in result.voc.values()))
    return "\n".join(lines + rows)
