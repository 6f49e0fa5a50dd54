"""Matcher: parity with torchvision's SSDMatcher and hand cases (forced match, conflict, empty, crowd)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import SSDMatcher
from torchvision.ops import box_iou

from ssdlite.model.anchors import AnchorGenerator
from ssdlite.config import AnchorConfig
from ssdlite.model.matcher import match_anchors

# Four 10x10 anchors in a row plus one big anchor.
ANCHORS = torch.tensor(
    [[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10], [0, 0, 40, 40]], dtype=torch.float32
)


@pytest.mark.parametrize("seed", range(6))
def test_equals_torchvision_ssd_matcher(seed):
    gen = torch.Generator().manual_seed(seed)
    anchors = AnchorGenerator(AnchorConfig(layout="torchvision", aspect_ratios=((2.0, 3.0),) * 6))(
        (320, 320), [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    )
    g = int(torch.randint(1, 30, (1,), generator=gen))
    xy = torch.rand(g, 2, generator=gen) * 280
    wh = torch.rand(g, 2, generator=gen) * 150 + 2
    gt = torch.cat([xy, (xy + wh).clamp(max=320)], 1)
    ref = SSDMatcher(0.5)(box_iou(gt, anchors))
    got = match_anchors(gt, anchors, 0.5)
    assert got.dtype == torch.int64 and torch.equal(got, ref)
    assert torch.equal(match_anchors(gt, anchors, 0.5, torch.zeros(g, dtype=torch.bool)), ref)
    assert int((got >= 0).sum()) > 0


def test_box_overlapping_nothing_above_threshold_still_gets_its_best_anchor():
    gt = torch.tensor([[2.0, 2.0, 8.0, 30.0]])  # IoU 0.36 with anchor 0 (60/166), 0.105 with anchor 4
    iou = box_iou(gt, ANCHORS)
    assert float(iou.max()) < 0.5 and int(iou.argmax()) == 0
    assert match_anchors(gt, ANCHORS).tolist() == [0, -1, -1, -1, -1]


def test_two_boxes_that_want_one_anchor():
    # Box 0 (IoU 0.25 / 0.667 with anchors 0 / 1) and box 1 (IoU 0.9 with anchor 1) both have
    # anchor 1 as their best anchor. Anchor 1 goes to box 1 (higher IoU, and the later box wins
    # the forced assignment, as in torchvision); box 0 has no other anchor >= 0.5 and ends unmatched.
    gt = torch.tensor([[5.0, 0.0, 20.0, 10.0], [11.0, 0.0, 20.0, 10.0]])
    iou = box_iou(gt, ANCHORS)
    assert iou.argmax(1).tolist() == [1, 1]
    torch.testing.assert_close(iou[:, :2], torch.tensor([[0.25, 2 / 3], [0.0, 0.9]]))
    got = match_anchors(gt, ANCHORS)
    assert got.tolist() == [-1, 1, -1, -1, -1]
    assert torch.equal(got, SSDMatcher(0.5)(iou))
    # Same conflict with the boxes swapped: the forced match (box 1 = the former box 0) now wins
    # over the IoU rule, so box 0 (IoU 0.9) loses its anchor.
    assert match_anchors(gt.flip(0), ANCHORS).tolist() == [-1, 1, -1, -1, -1]


def test_threshold_positives_and_background():
    gt = torch.tensor([[0.0, 0.0, 20.0, 10.0]])  # IoU 0.5 with anchors 0 and 1 (>= threshold), 0.125 with 4
    assert match_anchors(gt, ANCHORS, 0.5).tolist() == [0, 0, -1, -1, -1]
    assert match_anchors(gt, ANCHORS, 0.6).tolist() == [0, -1, -1, -1, -1]  # only the forced best anchor


def test_no_boxes_all_background():
    got = match_anchors(torch.zeros(0, 4), ANCHORS, 0.5, torch.zeros(0, dtype=torch.bool))
    assert got.dtype == torch.int64 and got.tolist() == [-1] * 5


def test_crowd_boxes_are_ignored_never_positive():
    gt = torch.tensor([[0.0, 0.0, 20.0, 10.0], [30.0, 0.0, 40.0, 10.0], [0.0, 0.0, 40.0, 36.0]])
    iscrowd = torch.tensor([True, False, True])
    # Anchors 0, 1: best is crowd box 0 (IoU 0.5) -> ignored; anchor 3: box 1 exactly -> positive;
    # anchor 4: crowd box 2 (IoU 0.9) -> ignored; anchor 2 overlaps nothing -> background.
    assert match_anchors(gt, ANCHORS, 0.5, iscrowd).tolist() == [-2, -2, -1, 1, -2]
    # All crowd: nothing positive, no forced matches.
    assert match_anchors(gt[[0]], ANCHORS, 0.5, torch.tensor([True])).tolist() == [-2, -2, -1, -1, -1]
    # Below the threshold a crowd box's anchors stay background.
    assert match_anchors(gt[[0]], ANCHORS, 0.6, torch.tensor([True])).tolist() == [-1] * 5


def test_forced_match_overrides_crowd():
    # The person box's only good anchor is also inside a crowd region that matches it better.
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 12.0, 16.0]])  # crowd box 0 is exactly anchor 0
    got = match_anchors(gt, ANCHORS, 0.5, torch.tensor([True, False]))
    assert got.tolist() == [1, -1, -1, -1, -1]


def test_bad_iscrowd_shape():
    with pytest.raises(ValueError, match="iscrowd"):
        match_anchors(ANCHORS[:2], ANCHORS, 0.5, torch.zeros(3, dtype=torch.bool))
