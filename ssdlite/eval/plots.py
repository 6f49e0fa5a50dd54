"""Precision-recall curves of a COCO evaluation as a PNG (matplotlib, imported when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ssdlite.eval.coco import EvalResult, mean_valid
from ssdlite.eval.loading import PathLike

__all__ = ["plot_pr_curves"]


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


def _plot_means(ax: Any, result: EvalResult) -> None:
    """The mean over classes at IoU 0.50, 0.75 and averaged over 0.50:0.95 (area all, maxDets 100)."""
    p, rec, iou = result.precision, result.recall_thresholds, result.iou_thresholds
    for thr, style in ((0.5, "-"), (0.75, "--")):
        t = int(np.argmin(np.abs(iou - thr)))
        curve = _mean_curve(p[t, :, :, 0, -1])
        if curve is not None:
            ax.plot(rec, curve, style, label=f"IoU={thr:.2f} (AP={mean_valid(p[t, :, :, 0, -1]):.3f})")
    curve_all = _mean_over_ious(p[:, :, :, 0, -1])
    if curve_all is not None:
        ax.plot(rec, curve_all, ":", label=f"IoU=0.50:0.95 (AP={result.stats[0]:.3f})")


def _plot_classes(ax: Any, result: EvalResult) -> None:
    """One curve per class with ground truth at IoU 0.50, labelled when there are at most 12 classes."""
    p, rec = result.precision, result.recall_thresholds
    t50 = int(np.argmin(np.abs(result.iou_thresholds - 0.5)))
    names = result.category_names
    for k, name in enumerate(names):
        ck = p[t50, :, k, 0, -1]
        if (ck > -1).all():
            show_label = len(names) <= 12
            ax.plot(rec, ck, lw=1.0 if show_label else 0.6, alpha=0.9 if show_label else 0.5,
                    label=f"{name} ({result.per_class_ap50.get(name, -1):.2f})" if show_label else None)


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
    fig = Figure(figsize=(12, 5), dpi=100)
    ax_mean, ax_cls = fig.subplots(1, 2)
    if result.precision.size:
        _plot_means(ax_mean, result)
        _plot_classes(ax_cls, result)
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
