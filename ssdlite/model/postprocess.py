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

Real-time thresholds (``score_thresh >= PREFILTER_MIN_THRESH``) on CPU take a NumPy path: from
one max and one sum per anchor, :func:`candidate_rows` bounds its best score (no exponential),
only anchors that may pass get a softmax (torch's kernel: the same scores, bit for bit), and the
few candidates are decoded and go through a NumPy replica of ``batched_nms`` (same coordinate
offsets, float32 arithmetic and stable order); many fall back to torch kernels. Both paths give
the same detections; :func:`postprocess_numpy` returns them as arrays (``Detector`` does).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from ssdlite.model.box_coder import DEFAULT_WEIGHTS, decode
from ssdlite.config import PostprocessConfig

__all__ = ["postprocess", "postprocess_numpy", "class_scores", "candidate_rows", "select_candidates", "batched_nms_np"]

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


def _check_shapes(cls_logits: ArrayLike, box_deltas: ArrayLike, anchors: ArrayLike) -> None:
    if len(cls_logits.shape) != 3 or tuple(box_deltas.shape) != (*cls_logits.shape[:2], 4) or tuple(anchors.shape) != (cls_logits.shape[1], 4):
        raise ValueError(
            f"postprocess expects cls_logits (N, A, C+1), box_deltas (N, A, 4) and anchors (A, 4); got "
            f"{tuple(cls_logits.shape)}, {tuple(box_deltas.shape)} and {tuple(anchors.shape)}"
        )


def _check_classification(classification: str) -> None:
    if classification not in ("softmax", "focal"):
        raise ValueError(f"classification={classification!r} is not allowed; choose 'softmax' or 'focal'")


def _as_array(x: ArrayLike) -> np.ndarray:
    """A C-contiguous float32 array of a CPU tensor or array (no copy when it already is one)."""
    x = x.numpy() if isinstance(x, Tensor) else x
    if x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    return np.ascontiguousarray(x, dtype=np.float32)


def _sparse_applies(cfg: PostprocessConfig, *arrays: ArrayLike) -> bool:
    return cfg.score_thresh >= PREFILTER_MIN_THRESH and all(
        isinstance(x, np.ndarray) or (isinstance(x, Tensor) and x.device.type == "cpu" and not x.requires_grad) for x in arrays)


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
        :func:`postprocess_numpy` gives the same as NumPy arrays.
    """
    _check_shapes(cls_logits, box_deltas, anchors)
    _check_classification(classification)
    h, w = int(image_size[0]), int(image_size[1])
    if _sparse_applies(cfg, cls_logits, box_deltas, anchors):
        out = _sparse_batch(cls_logits, box_deltas, anchors, (h, w), cfg, classification, box_weights)
        return [tuple(torch.from_numpy(x) for x in r) for r in out]
    cls_logits = _as_tensor(cls_logits, "cls_logits")
    box_deltas = _as_tensor(box_deltas, "box_deltas")
    anchors = _as_tensor(anchors, "anchors").to(box_deltas.device)
    return _postprocess_dense(cls_logits, box_deltas, anchors, (h, w), cfg, classification, box_weights)


def postprocess_numpy(
    cls_logits: ArrayLike,
    box_deltas: ArrayLike,
    anchors: ArrayLike,
    image_size: tuple[int, int],
    cfg: PostprocessConfig,
    classification: str = "softmax",
    box_weights: Sequence[float] = DEFAULT_WEIGHTS,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`postprocess` with NumPy results (what ``Detector`` hands out): the same detections,
    without tensor round trips at real-time thresholds (a few microseconds a frame at batch 1)."""
    _check_shapes(cls_logits, box_deltas, anchors)
    _check_classification(classification)
    h, w = int(image_size[0]), int(image_size[1])
    if _sparse_applies(cfg, cls_logits, box_deltas, anchors):
        return _sparse_batch(cls_logits, box_deltas, anchors, (h, w), cfg, classification, box_weights)
    out = postprocess(cls_logits, box_deltas, anchors, (h, w), cfg, classification, box_weights)
    return [tuple(x.cpu().numpy() for x in r) for r in out]


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


def _sparse_batch(cls_logits, box_deltas, anchors, image_size, cfg, classification, box_weights):
    logits, deltas, anchors = _as_array(cls_logits), _as_array(box_deltas), _as_array(anchors)
    return [_sparse_image(lg, dl, anchors, image_size, cfg, classification, box_weights) for lg, dl in zip(logits, deltas)]


def candidate_rows(logits: np.ndarray, score_thresh: float, classification: str = "softmax") -> np.ndarray:
    """The anchors (rows of ``logits`` (A, C + 1), C-contiguous float32) some class of which may
    score above ``score_thresh``: a superset of those that do, found without any exponential.

    Focal: ``sigmoid(l_c) > t`` exactly when ``l_c > logit(t)``. Softmax: with ``m`` the largest
    foreground logit, every foreground score is at most ``1 / (1 + e^(l_0 - m) + (C - 1) e^(mu - m))``,
    ``mu`` the mean of the other C - 1 foreground logits (Jensen: a mean of exponentials is at
    least the exponential of the mean), so a score above ``t`` needs both ``l_0 - m < log K`` and
    ``log(C - 1) + mu - m < log K``, ``K = 1 / t - 1``. The first prunes a trained detector's
    background anchors, the second (tried when the first leaves many) flat or many-class rows.
    Row sums are taken in float64, the bounds get a slack (``_BOUND_SLACK`` in log space) that
    covers every rounding of the scores, and a row with a non-finite bound is kept.
    """
    t = float(score_thresh)
    n = logits.shape[1]
    m = np.maximum.reduceat(logits.ravel(), _segments(*logits.shape))[::2]  # largest foreground logit of each row
    if classification == "focal":
        bound = math.log(t / (1.0 - t)) - _BOUND_SLACK if t < 1.0 else math.inf
        return np.flatnonzero(~(m <= bound))
    log_k = math.log(math.exp(_BOUND_SLACK + n * 2.0**-20) / t - 1.0)  # + the rounding of n-term softmax sums
    l0 = logits[:, 0]
    # m - l0 > -log K in float32: its rounding is relative to |m - l0|, a speck of the slack near the bound
    keep = ~(m - l0 <= np.float32(-log_k))
    if n > 2 and np.count_nonzero(keep) > SPARSE_MAX_NMS:  # and (C - 1) mu = S - l0 - m < (C - 1)(m + log K -
        # log(C - 1)), i.e. C m + l0 + c > S (float64: S is a sum of n logits)
        c = (n - 2) * (log_k - math.log(n - 2))
        lhs = np.multiply(m, float(n - 1), dtype=np.float64)
        lhs += l0
        keep &= ~(lhs + c <= cv2.reduce(logits, 1, cv2.REDUCE_SUM, dtype=cv2.CV_64F).ravel())
    return np.flatnonzero(keep)


@lru_cache(maxsize=8)
def _segments(a: int, n: int) -> np.ndarray:
    """Start offsets of the foreground and background runs of an (a, n) array, flattened: the
    ``reduceat`` indices whose even results are the row maxima over columns 1..n-1."""
    starts = np.arange(a, dtype=np.intp) * n
    return np.stack((starts + 1, starts + n), axis=1).ravel()[:-1].copy()


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def _sparse_image(
    logits: np.ndarray,
    deltas: np.ndarray,
    anchors: np.ndarray,
    image_size: tuple[int, int],
    cfg: PostprocessConfig,
    classification: str,
    box_weights: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image at a real-time threshold, the small work in NumPy.

    ``logits`` (A, C + 1), ``deltas`` (A, 4), ``anchors`` (A, 4) float32. Same selection, order,
    scores and NMS as the torch path (boxes can differ in the last float32 bit: NumPy's ``exp``).
    """
    t = float(cfg.score_thresh)
    rows = candidate_rows(logits, t, classification)
    if rows.size == 0:
        return _empty()
    if rows.size > SPARSE_MAX_ROWS:  # flat logits (e.g. an untrained model): exact scores of every anchor
        all_probs = class_scores(torch.from_numpy(logits), classification)
        rows = (all_probs.amax(dim=1) > t).nonzero().squeeze(1).numpy()
        probs = all_probs.numpy()[rows]
    elif classification == "softmax":  # the torch path's kernel on the few rows: the same scores, bit for bit
        probs = torch.from_numpy(logits[rows]).softmax(-1).numpy()[:, 1:]
    else:  # sigmoid of the foreground columns as a view, like the torch path's (the same inner loops)
        probs = torch.from_numpy(logits[rows])[:, 1:].sigmoid().numpy()
    r, c = np.nonzero(probs > t)  # anchor-major: within a class, anchors ascending (the torch path's tie order)
    if r.size == 0:
        return _empty()
    s = probs[r, c]
    order = np.lexsort((-s, c))  # class ascending, score descending, stable
    if order.size > cfg.topk_candidates:  # some class may hold more than topk: rank inside each class
        c_sorted = c[order]
        counts = np.bincount(c_sorted, minlength=probs.shape[1])
        rank = np.arange(order.size) - (np.cumsum(counts) - counts)[c_sorted]
        order = order[rank < cfg.topk_candidates]
    anchor_idx, labels, scores = rows[r[order]], c[order].astype(np.int64), s[order]
    boxes = _decode_np(deltas[anchor_idx], anchors[anchor_idx], box_weights)
    h, w = image_size
    np.minimum(np.maximum(boxes, np.float32(0.0), out=boxes), np.array([w, h, w, h], np.float32), out=boxes)  # clip_boxes_to_image
    if labels.size > SPARSE_MAX_NMS:
        keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels + 1), cfg.nms_thresh).numpy()
    else:
        keep = batched_nms_np(boxes, scores, labels + 1, cfg.nms_thresh)
    keep = keep[: cfg.detections_per_img]
    return boxes[keep], scores[keep], labels[keep]


def _decode_np(deltas: np.ndarray, anchors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """:func:`ssdlite.model.box_coder.decode` in float32 NumPy, operation for operation; (K, 4) xyxy pixels.

    x and y go through each operation together (columns (x, y) and (w, h)): the same float32
    operations on every coordinate as the torch decode, in half the NumPy calls.
    """
    w_xy, w_wh, clip = _decode_constants(tuple(float(v) for v in weights))
    deltas = deltas.astype(np.float32, copy=False)
    anchors = anchors.astype(np.float32, copy=False)
    sizes = anchors[:, 2:] - anchors[:, :2]  # widths, heights
    ctr = anchors[:, :2] + np.float32(0.5) * sizes
    d_size = np.minimum(deltas[:, 2:] / w_wh, clip)
    pred_ctr = deltas[:, :2] / w_xy * sizes + ctr
    half = np.float32(0.5) * (np.exp(d_size) * sizes)
    return np.concatenate((pred_ctr - half, pred_ctr + half), axis=1)


@lru_cache(maxsize=8)
def _decode_constants(weights: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.float32]:
    from ssdlite.model.box_coder import BBOX_XFORM_CLIP

    wx, wy, ww, wh = weights
    return np.array([wx, wy], np.float32), np.array([ww, wh], np.float32), np.float32(BBOX_XFORM_CLIP)


def batched_nms_np(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``torchvision.ops.batched_nms`` for few boxes, in NumPy: the same kept indices, same order.

    Args:
        boxes: (K, 4) float32 xyxy. scores: (K,) float32. groups: (K,) int, NMS within a group only.

    Returns:
        (M,) int64 indices into the inputs, by score descending (ties: input order).

    Replicates torchvision's small-input path exactly: boxes offset by ``group * (max + 1)`` in
    float32, a stable descending sort, IoU ``inter / (area_i + area_j - inter)`` in float32
    compared with the threshold in float64 (C++ promotes), greedy suppression. O(K^2) memory:
    meant for the few dozen boxes of a real-time frame. When every box has a group of its own
    and no coordinate is negative, the offset boxes cannot overlap (float32 rounding is monotone
    and keeps them at least touching-apart while the offsets stay below 2^22): nothing is
    suppressed and the sort alone is the answer.
    """
    k = boxes.shape[0]
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable").astype(np.int64, copy=False)
    top = boxes.max()
    if k == 1 or (len(set(groups.tolist())) == k and boxes.min() >= 0
                  and float(np.abs(groups).max()) * (float(top) + 1.0) < 2.0**22):
        return order
    b = (boxes + (groups.astype(np.float32) * (top + np.float32(1.0)))[:, None])[order]
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(b[:, None, :2], b[None, :, :2])
    wh = np.maximum(np.float32(0.0), np.minimum(b[:, None, 2:], b[None, :, 2:]) - lt)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 for empty boxes: NaN, never suppresses
        over = (inter / (areas[:, None] + areas[None, :] - inter)).astype(np.float64) > iou_threshold
    suppressed = np.zeros(k, dtype=bool)
    keep = []
    for i in range(k):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= over[i]
    return order[np.asarray(keep, dtype=np.int64)]
