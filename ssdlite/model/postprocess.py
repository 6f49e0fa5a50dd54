"""Raw network outputs -> detections (scores, per-class top-k, decode, clip, batched NMS).

Gives the result of torchvision's ``SSD.postprocess_detections`` (same boxes, scores, labels
and order) without its Python loop over classes: the (A, C) score matrix is thresholded at
once, then the first ``topk_candidates`` of each class are taken in (class ascending, score
descending) order, either by sorting the survivors (few of them: the real-time case) or by
one ``topk`` over the masked (C, A) matrix (many: evaluation at 0.001). That is the
candidate list torchvision concatenates class by class (``topk`` returns scores in
descending order), so ``torchvision.ops.batched_nms`` sees identical inputs (labels are passed
as logit columns, as torchvision does, so even its coordinate offsets are the same). Only
candidates are decoded. Ties in score inside one class may be ordered differently from
torchvision (``topk``'s tie order is unspecified).

Real-time thresholds (``score_thresh >= PREFILTER_MIN_THRESH``) take a NumPy path whose cost
does not grow with the number of anchors times classes beyond one max per anchor: a softmax
score can pass ``t`` only where ``l_c - l_0 > logit(t)`` (``softmax_c <= sigmoid(l_c - l_0)``),
so only those anchors get a softmax; few candidates then go through a NumPy replica of
``batched_nms`` (same coordinate offsets, same float32 arithmetic, same stable order). Too
many candidates fall back to the torch path. Both paths give the same detections.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from ssdlite.model.box_coder import DEFAULT_WEIGHTS, decode
from ssdlite.config import PostprocessConfig

__all__ = ["postprocess", "class_scores", "select_candidates", "batched_nms_np"]

ArrayLike = Tensor | np.ndarray


def _as_tensor(x: ArrayLike, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x)
        x = torch.from_numpy(x if x.flags.writeable else x.copy())  # torch warns on read-only arrays
    if not isinstance(x, Tensor):
        raise TypeError(f"postprocess: {name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    return x.float() if x.dtype != torch.float32 else x


def class_scores(cls_logits: Tensor, classification: str = "softmax") -> Tensor:
    """(N, A, C + 1) logits -> (N, A, C) foreground scores (softmax over C + 1, or sigmoid for focal)."""
    if classification == "softmax":
        return F.softmax(cls_logits, dim=-1)[..., 1:]
    if classification == "focal":
        return torch.sigmoid(cls_logits[..., 1:])
    raise ValueError(f"classification={classification!r} is not allowed; choose 'softmax' or 'focal'")


#: From this score threshold on, anchors without any passing class are dropped before the per-class
#: pass (same result; ~35% less postprocess time at 0.3, slower at evaluation's 0.001).
PREFILTER_MIN_THRESH = 0.05

#: Above this many anchors passing the logit bound (flat logits, e.g. an untrained model) the NumPy
#: path scores every anchor; above this many candidates it hands NMS to ``batched_nms``.
SPARSE_MAX_ROWS = 512
SPARSE_MAX_NMS = 64

#: Logit slack of the anchor bound: the bound is exact in real numbers, the slack covers rounding.
_BOUND_SLACK = 1e-3

#: Above this many thresholded scores in one image, top-k per class is cheaper than sorting them all.
SORT_PATH_MAX_CANDIDATES = 10_000


def select_candidates(scores: Tensor, score_thresh: float, topk: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class score threshold and top-k of one image, vectorized over classes.

    Args:
        scores: (A, C) foreground scores (>= 0).
        score_thresh: keep scores strictly greater than this.
        topk: at most this many candidates per class.

    Returns:
        anchor_idx (M,) int64, labels (M,) int64 0-based, scores (M,), ordered by class
        ascending then score descending (torchvision's per-class concatenation order).

    Few survivors of the threshold (the real-time case) are sorted directly; many (evaluation at
    0.001) go through one ``topk`` over the (C, A) matrix. Both give the same result.
    """
    passed = scores.t() > score_thresh  # (C, A)
    if int(passed.sum()) <= SORT_PATH_MAX_CANDIDATES:
        return _select_by_sort(scores, passed, topk)
    return _select_by_topk(scores, passed, topk)


def _select_by_sort(scores: Tensor, passed: Tensor, topk: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sort the thresholded (class, anchor) pairs by (class asc, score desc), keep rank < topk in each class."""
    cls_idx, anchor_idx = passed.nonzero(as_tuple=True)  # class-major
    cand_scores = scores[anchor_idx, cls_idx]
    # Stable sorts: by score descending, then by class -> class asc, score desc inside a class.
    order = torch.sort(cand_scores, descending=True, stable=True)[1]
    order = order[torch.sort(cls_idx[order], stable=True)[1]]
    cls_idx, anchor_idx, cand_scores = cls_idx[order], anchor_idx[order], cand_scores[order]
    counts = torch.bincount(cls_idx, minlength=scores.shape[1])
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(cls_idx.numel(), device=scores.device) - starts[cls_idx]
    keep = rank < topk
    return anchor_idx[keep], cls_idx[keep], cand_scores[keep]


def _select_by_topk(scores: Tensor, passed: Tensor, topk: int) -> tuple[Tensor, Tensor, Tensor]:
    """One ``topk`` per class row of the (C, A) scores with failed entries masked to -1."""
    k = min(topk, int(passed.sum(1).max()))
    values, anchor_idx = scores.t().masked_fill(~passed, -1.0).topk(k, dim=1)  # (C, k), descending
    keep = passed.gather(1, anchor_idx)
    cls_idx = torch.arange(scores.shape[1], device=scores.device)[:, None].expand_as(anchor_idx)
    return anchor_idx[keep], cls_idx[keep], values[keep]


@torch.no_grad()
def postprocess(
    cls_logits: ArrayLike,
    box_deltas: ArrayLike,
    anchors: ArrayLike,
    image_size: tuple[int, int],
    cfg: PostprocessConfig,
    classification: str = "softmax",
    box_weights: Sequence[float] = DEFAULT_WEIGHTS,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Detections of a batch, in pixels of the network input.

    Args:
        cls_logits: (N, A, C + 1) raw logits, column 0 = background (tensor or numpy array).
        box_deltas: (N, A, 4) raw box deltas.
        anchors: (A, 4) xyxy pixels of the network input.
        image_size: (H, W) of the network input; boxes are clipped to it.
        cfg: score_thresh, topk_candidates (per class), nms_thresh, detections_per_img.
        classification: "softmax" or "focal" (sigmoid scores), as the model was trained.
        box_weights: the box coder's (wx, wy, ww, wh).

    Returns:
        Per image ``(boxes (K, 4) float32 xyxy input pixels, scores (K,) float32, labels (K,)
        int64 0-based)``, sorted by score descending, ``K <= detections_per_img``.
    """
    cls_logits = _as_tensor(cls_logits, "cls_logits")
    box_deltas = _as_tensor(box_deltas, "box_deltas")
    anchors = _as_tensor(anchors, "anchors").to(box_deltas.device)
    if cls_logits.dim() != 3 or box_deltas.shape != (*cls_logits.shape[:2], 4) or anchors.shape != (cls_logits.shape[1], 4):
        raise ValueError(
            f"postprocess expects cls_logits (N, A, C+1), box_deltas (N, A, 4) and anchors (A, 4); got "
            f"{tuple(cls_logits.shape)}, {tuple(box_deltas.shape)} and {tuple(anchors.shape)}"
        )
    h, w = int(image_size[0]), int(image_size[1])
    if cfg.score_thresh >= PREFILTER_MIN_THRESH and cls_logits.device.type == "cpu":
        return [_sparse_image(lg, dl, anchors, (h, w), cfg, classification, box_weights)
                for lg, dl in zip(cls_logits.numpy(), box_deltas.numpy())]
    return _postprocess_dense(cls_logits, box_deltas, anchors, (h, w), cfg, classification, box_weights)


def _postprocess_dense(
    cls_logits: Tensor,
    box_deltas: Tensor,
    anchors: Tensor,
    image_size: tuple[int, int],
    cfg: PostprocessConfig,
    classification: str,
    box_weights: Sequence[float],
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """The torch path: every score of the batch (evaluation thresholds, GPU tensors)."""
    h, w = image_size
    scores = class_scores(cls_logits, classification)
    results = []
    prefilter = cfg.score_thresh >= PREFILTER_MIN_THRESH
    for img_scores, img_deltas in zip(scores, box_deltas):
        if prefilter:  # real-time thresholds: only anchors with some passing class enter the per-class pass
            rows = (img_scores.amax(dim=1) > cfg.score_thresh).nonzero().squeeze(1)
            sub_idx, labels, cand_scores = select_candidates(img_scores[rows], cfg.score_thresh, cfg.topk_candidates)
            anchor_idx = rows[sub_idx]
        else:
            anchor_idx, labels, cand_scores = select_candidates(img_scores, cfg.score_thresh, cfg.topk_candidates)
        boxes = decode(img_deltas[anchor_idx], anchors[anchor_idx], box_weights)
        boxes = clip_boxes_to_image(boxes, (h, w))
        # Logit columns (label + 1) as NMS groups: the same offsets as torchvision's batched_nms call.
        keep = batched_nms(boxes, cand_scores, labels + 1, cfg.nms_thresh)[: cfg.detections_per_img]
        results.append((boxes[keep], cand_scores[keep], labels[keep]))
    return results


# ----------------------------------------------------------------------------- NumPy real-time path


def _sparse_image(
    logits: np.ndarray,
    deltas: np.ndarray,
    anchors: Tensor,
    image_size: tuple[int, int],
    cfg: PostprocessConfig,
    classification: str,
    box_weights: Sequence[float],
) -> tuple[Tensor, Tensor, Tensor]:
    """One image at a real-time threshold, the small work in NumPy.

    ``logits`` (A, C + 1), ``deltas`` (A, 4) float32. Same selection, order, scores and NMS as the
    torch path (boxes can differ in the last float32 bit: NumPy's ``exp``).
    """
    t = float(cfg.score_thresh)
    bound = math.log(t / (1.0 - t)) - _BOUND_SLACK if t < 1.0 else math.inf
    fg_max = torch.from_numpy(logits)[:, 1:].amax(dim=1).numpy()  # torch's row max is faster than NumPy's here
    # softmax_c <= sigmoid(l_c - l_0): no class of an anchor can pass t unless l_c - l_0 > logit(t)
    rows = np.flatnonzero((fg_max - logits[:, 0] if classification == "softmax" else fg_max) > bound)
    if rows.size > SPARSE_MAX_ROWS:  # flat logits (e.g. an untrained model): exact scores of every anchor
        all_probs = class_scores(torch.from_numpy(logits), classification)
        rows = (all_probs.amax(dim=1) > t).nonzero().squeeze(1).numpy()
        probs = all_probs.numpy()[rows]
    else:  # the same torch kernels as the torch path, on the few rows: the same scores, bit for bit
        probs = class_scores(torch.from_numpy(logits[rows]), classification).numpy()
    r, c = np.nonzero(probs > t)  # anchor-major: within a class, anchors ascending (the torch path's tie order)
    s = probs[r, c]
    order = np.lexsort((-s, c))  # class ascending, score descending, stable
    c_sorted = c[order]
    counts = np.bincount(c_sorted, minlength=probs.shape[1])
    rank = np.arange(order.size) - (np.cumsum(counts) - counts)[c_sorted]
    sel = order[rank < cfg.topk_candidates]
    anchor_idx, labels, scores = rows[r[sel]], c[sel].astype(np.int64), s[sel].astype(np.float32, copy=False)
    boxes = _decode_np(deltas[anchor_idx], anchors.numpy()[anchor_idx], box_weights)
    h, w = image_size
    np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])  # torchvision clip_boxes_to_image
    np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
    if labels.size > SPARSE_MAX_NMS:
        keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels + 1), cfg.nms_thresh).numpy()
    else:
        keep = batched_nms_np(boxes, scores, labels + 1, cfg.nms_thresh)
    keep = keep[: cfg.detections_per_img]
    return torch.from_numpy(boxes[keep]), torch.from_numpy(scores[keep]), torch.from_numpy(labels[keep])


def _decode_np(deltas: np.ndarray, anchors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """:func:`ssdlite.model.box_coder.decode` in float32 NumPy, operation for operation; (K, 4) xyxy pixels."""
    from ssdlite.model.box_coder import BBOX_XFORM_CLIP

    wx, wy, ww, wh = (float(v) for v in weights)
    deltas = deltas.astype(np.float32, copy=False)
    anchors = anchors.astype(np.float32, copy=False)
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + np.float32(0.5) * widths
    ctr_y = anchors[:, 1] + np.float32(0.5) * heights
    dw = np.minimum(deltas[:, 2] / np.float32(ww), np.float32(BBOX_XFORM_CLIP))
    dh = np.minimum(deltas[:, 3] / np.float32(wh), np.float32(BBOX_XFORM_CLIP))
    pred_ctr_x = deltas[:, 0] / np.float32(wx) * widths + ctr_x
    pred_ctr_y = deltas[:, 1] / np.float32(wy) * heights + ctr_y
    half_w = np.float32(0.5) * (np.exp(dw) * widths)
    half_h = np.float32(0.5) * (np.exp(dh) * heights)
    return np.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), axis=1)


def batched_nms_np(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``torchvision.ops.batched_nms`` for few boxes, in NumPy: the same kept indices, same order.

    Args:
        boxes: (K, 4) float32 xyxy. scores: (K,) float32. groups: (K,) int, NMS within a group only.

    Returns:
        (M,) int64 indices into the inputs, by score descending (ties: input order).

    Replicates torchvision's small-input path exactly: boxes offset by ``group * (max + 1)`` in
    float32, a stable descending sort, IoU ``inter / (area_i + area_j - inter)`` in float32
    compared with the threshold in float64 (C++ promotes), greedy suppression. O(K^2) memory:
    meant for the few dozen boxes of a real-time frame.
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = boxes + (groups.astype(np.float32) * (boxes.max() + np.float32(1.0)))[:, None]
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[order].T
    areas = (x2 - x1) * (y2 - y1)
    w = np.maximum(np.float32(0.0), np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]))
    h = np.maximum(np.float32(0.0), np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]))
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 for empty boxes: NaN, never suppresses
        over = (inter / (areas[:, None] + areas[None, :] - inter)).astype(np.float64) > iou_threshold
    suppressed = np.zeros(order.size, dtype=bool)
    keep = []
    for i in range(order.size):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= over[i]
    return order[np.asarray(keep, dtype=np.int64)]
