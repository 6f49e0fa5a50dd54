"""Anchor to ground-truth matching (SSD rule, as torchvision's ``SSDMatcher``), with crowd regions.

Rule, for ground-truth boxes ``G`` and anchors ``A``:

1. Each anchor takes the ground-truth box of highest IoU if that IoU is ``>= iou_threshold``,
   else it is background (-1). (torchvision ``Matcher(t, t, allow_low_quality_matches=False)``.)
2. An anchor whose box from step 1 is a crowd box becomes ignored (-2): neither positive nor
   negative, as COCO treats detections on crowd regions.
3. Every non-crowd box is forced onto its best anchor (highest IoU, even below the
   threshold), overriding steps 1-2 (torchvision ``SSDMatcher``). If two boxes share their
   best anchor, the later box wins, as in torchvision.

Crowd boxes never become positives. Without crowd boxes the result equals ``SSDMatcher``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["BACKGROUND", "IGNORE", "match_anchors"]

BACKGROUND = -1
IGNORE = -2


def match_anchors(
    gt_boxes: Tensor, anchors: Tensor, iou_threshold: float = 0.5, iscrowd: Tensor | None = None
) -> Tensor:
    """Match anchors to ground-truth boxes.

    Args:
        gt_boxes: (G, 4) xyxy, absolute pixels (G may be 0).
        anchors: (A, 4) xyxy, absolute pixels, same frame as ``gt_boxes``.
        iou_threshold: minimum IoU of a positive (besides the forced best anchor of each box).
        iscrowd: (G,) bool, True for crowd (ignore) regions; None means no crowd boxes.

    Returns:
        (A,) int64: ``>= 0`` index into ``gt_boxes`` of a positive anchor, ``-1`` background,
        ``-2`` ignored (best match is a crowd box).
    """
    if gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 4 or anchors.dim() != 2 or anchors.shape[-1] != 4:
        raise ValueError(
            f"match_anchors expects gt_boxes (G, 4) and anchors (A, 4), got {tuple(gt_boxes.shape)} and {tuple(anchors.shape)}"
        )
    num_gt = gt_boxes.shape[0]
    matches = torch.full((anchors.shape[0],), BACKGROUND, dtype=torch.int64, device=anchors.device)
    if num_gt == 0 or anchors.shape[0] == 0:
        return matches
    if iscrowd is not None and iscrowd.shape != (num_gt,):
        raise ValueError(f"iscrowd must have shape ({num_gt},) like gt_boxes, got {tuple(iscrowd.shape)}")

    iou = box_iou(gt_boxes, anchors.to(gt_boxes.dtype))  # (G, A)
    matched_vals, matches = iou.max(dim=0)
    below = matched_vals < iou_threshold
    matches[below] = BACKGROUND

    gt_index = torch.arange(num_gt, dtype=torch.int64, device=matches.device)
    if iscrowd is not None and bool(iscrowd.any()):
        crowd = iscrowd.to(device=matches.device, dtype=torch.bool)
        matches[~below & crowd[matches.clamp(min=0)]] = IGNORE
        keep = ~crowd
        gt_index = gt_index[keep]
        iou = iou[keep]
    if gt_index.numel() > 0:
        _, best_anchor = iou.max(dim=1)  # (G',) best anchor of each non-crowd box
        matches[best_anchor] = gt_index
    return matches
