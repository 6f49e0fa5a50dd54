"""Box coding between xyxy boxes and anchor-relative deltas (SSD / Faster R-CNN style).

The encoding is the one of torchvision's ``BoxCoder`` with ``weights = (wx, wy, ww, wh)``::

    dx = wx * (gx - ax) / aw        dy = wy * (gy - ay) / ah
    dw = ww * log(gw / aw)          dh = wh * log(gh / ah)

where ``(gx, gy, gw, gh)`` and ``(ax, ay, aw, ah)`` are the centers and sizes of the ground
truth box and of the anchor. SSD uses ``(10, 10, 5, 5)`` (the "variances" 0.1 / 0.2 of the
SSD paper). Decoding clamps ``dw / ww`` and ``dh / wh`` at ``log(1000 / 16)`` before ``exp``.
Both functions use the same operations in the same order as torchvision, so the results are
bit-identical to ``torchvision.models.detection._utils.BoxCoder``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["BBOX_XFORM_CLIP", "DEFAULT_WEIGHTS", "encode", "decode"]

#: Upper bound of ``dw / ww`` and ``dh / wh`` before ``exp`` in :func:`decode`.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)
#: SSD's box weights ``(wx, wy, ww, wh)``.
DEFAULT_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _check_weights(weights: Sequence[float]) -> tuple[float, float, float, float]:
    if len(weights) != 4 or any(float(w) <= 0 for w in weights):
        raise ValueError(f"box weights must be 4 positive numbers (wx, wy, ww, wh), got {tuple(weights)!r}")
    wx, wy, ww, wh = (float(w) for w in weights)
    return wx, wy, ww, wh


def encode(gt_boxes: Tensor, anchors: Tensor, weights: Sequence[float] = DEFAULT_WEIGHTS) -> Tensor:
    """Regression targets of ``gt_boxes`` relative to ``anchors``.

    Args:
        gt_boxes: (K, 4) xyxy, absolute pixels; the box matched to each anchor.
        anchors: (K, 4) xyxy, absolute pixels, same K (row i of one goes with row i of the other).
        weights: (wx, wy, ww, wh).

    Returns:
        (K, 4) deltas (dx, dy, dw, dh), dtype of ``gt_boxes``.
    """
    if gt_boxes.shape != anchors.shape or gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 4:
        raise ValueError(
            f"encode expects gt_boxes and anchors of the same shape (K, 4), got {tuple(gt_boxes.shape)} "
            f"and {tuple(anchors.shape)}"
        )
    wx, wy, ww, wh = _check_weights(weights)
    anchors = anchors.to(gt_boxes.dtype)
    ex_widths = anchors[:, 2] - anchors[:, 0]
    ex_heights = anchors[:, 3] - anchors[:, 1]
    ex_ctr_x = anchors[:, 0] + 0.5 * ex_widths
    ex_ctr_y = anchors[:, 1] + 0.5 * ex_heights

    gt_widths = gt_boxes[:, 2] - gt_boxes[:, 0]
    gt_heights = gt_boxes[:, 3] - gt_boxes[:, 1]
    gt_ctr_x = gt_boxes[:, 0] + 0.5 * gt_widths
    gt_ctr_y = gt_boxes[:, 1] + 0.5 * gt_heights

    # torchvision multiplies by a weights tensor of the boxes' dtype: do the same for bit parity.
    w = torch.tensor((wx, wy, ww, wh), dtype=gt_boxes.dtype, device=gt_boxes.device)
    dx = w[0] * (gt_ctr_x - ex_ctr_x) / ex_widths
    dy = w[1] * (gt_ctr_y - ex_ctr_y) / ex_heights
    dw = w[2] * torch.log(gt_widths / ex_widths)
    dh = w[3] * torch.log(gt_heights / ex_heights)
    return torch.stack((dx, dy, dw, dh), dim=1)


def decode(deltas: Tensor, anchors: Tensor, weights: Sequence[float] = DEFAULT_WEIGHTS) -> Tensor:
    """Boxes from ``deltas`` relative to ``anchors`` (inverse of :func:`encode`).

    Args:
        deltas: (..., 4) (dx, dy, dw, dh), e.g. (N, A, 4) raw network outputs or (K, 4).
        anchors: (..., 4) xyxy, absolute pixels, broadcastable against ``deltas``
            (e.g. (A, 4) for deltas (N, A, 4)).
        weights: (wx, wy, ww, wh).

    Returns:
        (..., 4) xyxy boxes, absolute pixels, dtype of ``deltas`` (not clipped to the image).
    """
    if deltas.shape[-1] != 4 or anchors.shape[-1] != 4:
        raise ValueError(
            f"decode expects deltas (..., 4) and anchors (..., 4), got {tuple(deltas.shape)} and {tuple(anchors.shape)}"
        )
    wx, wy, ww, wh = _check_weights(weights)
    anchors = anchors.to(deltas.dtype)
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    ctr_x = anchors[..., 0] + 0.5 * widths
    ctr_y = anchors[..., 1] + 0.5 * heights

    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = torch.clamp(deltas[..., 2] / ww, max=BBOX_XFORM_CLIP)  # keep exp() finite
    dh = torch.clamp(deltas[..., 3] / wh, max=BBOX_XFORM_CLIP)

    pred_ctr_x = dx * widths + ctr_x
    pred_ctr_y = dy * heights + ctr_y
    pred_w = torch.exp(dw) * widths
    pred_h = torch.exp(dh) * heights
    half_w = 0.5 * pred_w
    half_h = 0.5 * pred_h
    return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=-1)
