"""SSD training loss: matching, box encoding, smooth-L1 + classification with hard negatives.

Softmax mode (default) is torchvision's ``SSD.compute_loss``: smooth-L1 (beta 1) of the box
deltas summed over positive anchors, plus cross-entropy summed over the positives and the
``neg_pos_ratio * num_pos(image)`` highest-loss negatives of each image (hard-negative
mining), both divided by the number of positives in the batch (at least 1).

Focal mode: sigmoid focal loss (``torchvision.ops.sigmoid_focal_loss``) over the C
foreground logit columns of every non-ignored anchor (column 0 is unused), summed and
divided by the number of positives; the box term is the same.

Ignored anchors (matched to a crowd box, see :mod:`ssdlite.model.matcher`) count neither as
positives nor as negatives.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from ssdlite.model.box_coder import DEFAULT_WEIGHTS, encode
from ssdlite.config import LossConfig
from ssdlite.model.matcher import BACKGROUND, match_anchors

__all__ = ["SSDLiteLoss", "match_batch", "hard_negative_mask"]


def match_batch(
    anchors: Tensor, targets: Sequence[dict], iou_threshold: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Match every image of a batch and gather the targets of each anchor.

    Args:
        anchors: (A, 4) xyxy pixels.
        targets: N dicts with ``boxes`` (G, 4) xyxy pixels, ``labels`` (G,) int64 0-based and
            optional ``iscrowd`` (G,) bool.
        iou_threshold: IoU of a positive.

    Returns:
        matched (N, A) int64 (gt index, -1 background, -2 ignored), boxes (N, A, 4) matched gt
        box of each anchor (anchor itself where not positive), labels (N, A) int64 logit column
        (label + 1 for positives, 0 elsewhere).
    """
    matched, boxes, labels = [], [], []
    for i, t in enumerate(targets):
        gt_boxes = t["boxes"].to(device=anchors.device, dtype=anchors.dtype).reshape(-1, 4)
        gt_labels = t["labels"].to(device=anchors.device, dtype=torch.int64).reshape(-1)
        if gt_labels.numel() != gt_boxes.shape[0]:
            raise ValueError(f"targets[{i}]: {gt_boxes.shape[0]} boxes but {gt_labels.numel()} labels")
        if gt_labels.numel() and int(gt_labels.min()) < 0:
            raise ValueError(f"targets[{i}]['labels'] has a negative label {int(gt_labels.min())}; labels are 0-based")
        iscrowd = t.get("iscrowd")
        if iscrowd is not None:
            iscrowd = torch.as_tensor(iscrowd, device=anchors.device).to(torch.bool).reshape(-1)
        m = match_anchors(gt_boxes, anchors, iou_threshold, iscrowd)
        pos = m >= 0
        idx = m.clamp(min=0)
        if gt_boxes.shape[0] > 0:
            boxes.append(torch.where(pos[:, None], gt_boxes[idx], anchors))
            labels.append(torch.where(pos, gt_labels[idx] + 1, 0))
        else:
            boxes.append(anchors)
            labels.append(torch.zeros_like(m))
        matched.append(m)
    return torch.stack(matched), torch.stack(boxes), torch.stack(labels)


def hard_negative_mask(cls_loss: Tensor, positive: Tensor, negative: Tensor, neg_pos_ratio: int) -> Tensor:
    """Pick, per image, the ``neg_pos_ratio * num_positives`` negatives of highest loss.

    Args:
        cls_loss: (N, A) per-anchor classification loss.
        positive: (N, A) bool, positive anchors.
        negative: (N, A) bool, background anchors (candidates; ignored anchors are in neither).
        neg_pos_ratio: negatives per positive.

    Returns:
        (N, A) bool mask of the selected negatives (a subset of ``negative``). Ranking uses the
        same sort as torchvision's ``SSD.compute_loss``.
    """
    num_negative = neg_pos_ratio * positive.sum(1, keepdim=True)
    negative_loss = cls_loss.detach().clone()
    negative_loss[~negative] = -float("inf")
    _, order = negative_loss.sort(1, descending=True)
    # rank of every anchor in that order: torchvision's second sort (order.sort(1)[1]) as one scatter
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (rank < num_negative) & negative


class SSDLiteLoss:
    """SSD loss from a :class:`~ssdlite.config.LossConfig` and what the model's outputs mean.

    ``classification`` and ``box_weights`` are the model's (``SSDLite.classification`` /
    ``.box_weights``, from ``model.classification`` / ``model.box_weights`` of the config), so the
    loss trains the outputs the postprocess will read.

    ``loss_fn(cls_logits, box_deltas, anchors, targets)`` with

    - ``cls_logits``: (N, A, C + 1) raw logits, column 0 = background;
    - ``box_deltas``: (N, A, 4) raw deltas (weights ``box_weights``);
    - ``anchors``: (A, 4) xyxy pixels of the network input;
    - ``targets``: N dicts ``boxes`` (G, 4) float xyxy pixels, ``labels`` (G,) int64 0-based,
      optional ``iscrowd`` (G,) bool.

    returns a dict of 0-dim tensors: ``loss`` = ``bbox_loss_weight * bbox_regression +
    classification``, ``bbox_regression``, ``classification`` and ``num_pos`` (int64,
    positive anchors in the batch, not clamped).
    """

    def __init__(
        self, cfg: LossConfig, classification: str = "softmax", box_weights: Sequence[float] = DEFAULT_WEIGHTS
    ) -> None:
        if classification not in ("softmax", "focal"):
            raise ValueError(f"model.classification={classification!r} is not allowed; choose 'softmax' or 'focal'")
        self.cfg = cfg
        self.classification = classification
        self.box_weights = tuple(box_weights)

    def __call__(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        n, a, c1 = cls_logits.shape
        if box_deltas.shape != (n, a, 4) or anchors.shape != (a, 4) or len(targets) != n:
            raise ValueError(
                f"loss expects cls_logits (N, A, C+1), box_deltas (N, A, 4), anchors (A, 4) and N targets; got "
                f"{tuple(cls_logits.shape)}, {tuple(box_deltas.shape)}, {tuple(anchors.shape)} and {len(targets)} targets"
            )
        anchors = anchors.to(device=box_deltas.device, dtype=box_deltas.dtype)
        matched, gt_boxes, cls_targets = match_batch(anchors, targets, self.cfg.iou_threshold)
        if cls_targets.numel() and int(cls_targets.max()) >= c1:
            raise ValueError(f"a target label is >= num_classes={c1 - 1} (logits have {c1} columns)")
        positive = matched >= 0
        negative = matched == BACKGROUND
        num_pos = positive.sum()
        denom = num_pos.clamp(min=1).to(cls_logits.dtype)

        # Box regression on positives only.
        anchors_pos = anchors.expand(n, a, 4)[positive]
        target_deltas = encode(gt_boxes[positive], anchors_pos, self.box_weights)
        bbox_loss = F.smooth_l1_loss(box_deltas[positive], target_deltas, reduction="sum", beta=1.0) / denom

        if self.classification == "softmax":
            # F.cross_entropy(reduction="none") as logsumexp - the target logit: the same values to
            # float rounding, 2x faster on a CPU for (N * A, C + 1) rows of few columns
            cls_loss = torch.logsumexp(cls_logits, dim=-1) - cls_logits.gather(-1, cls_targets[..., None])[..., 0]
            chosen_neg = hard_negative_mask(cls_loss, positive, negative, self.cfg.neg_pos_ratio)
            cls_total = (cls_loss[positive].sum() + cls_loss[chosen_neg].sum()) / denom
        else:
            valid = positive | negative
            logits = cls_logits[..., 1:][valid]  # (K, C)
            onehot = F.one_hot(cls_targets[valid], c1)[:, 1:].to(logits.dtype)  # background -> all zeros
            cls_total = (
                sigmoid_focal_loss(
                    logits, onehot, alpha=self.cfg.focal_alpha, gamma=self.cfg.focal_gamma, reduction="sum"
                )
                / denom
            )

        return {
            "loss": self.cfg.bbox_loss_weight * bbox_loss + cls_total,
            "bbox_regression": bbox_loss,
            "classification": cls_total,
            "num_pos": num_pos.detach(),
        }
