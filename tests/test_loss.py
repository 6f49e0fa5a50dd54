"""SSD loss: torchvision SSD.compute_loss parity, hard-negative count, ignore regions, focal, training."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_iou

from ssdlite.model.anchors import AnchorGenerator
from ssdlite.config import AnchorConfig, LossConfig
from ssdlite.model.loss import SSDLiteLoss, hard_negative_mask

MAPS = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
TV_ANCHORS = AnchorGenerator(AnchorConfig(layout="torchvision", aspect_ratios=((2.0, 3.0),) * 6))((320, 320), MAPS)
# Three 10x10 anchors in a row, one far away, one big.
SMALL_ANCHORS = torch.tensor(
    [[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [100, 100, 110, 110], [0, 0, 40, 40]], dtype=torch.float32
)


def random_targets(gen: torch.Generator, num_boxes: list[int], num_classes: int = 90) -> list[dict]:
    targets = []
    for g in num_boxes:
        xy = torch.rand(g, 2, generator=gen) * 250
        wh = torch.rand(g, 2, generator=gen) * 120 + 8
        targets.append(
            {
                "boxes": torch.cat([xy, (xy + wh).clamp(max=320)], 1),
                "labels": torch.randint(0, num_classes, (g,), generator=gen),
            }
        )
    return targets


def torchvision_loss(cls_logits, box_deltas, anchors, targets):
    """torchvision's SSD.compute_loss with its own SSDMatcher (labels are torchvision ids = ours + 1)."""
    tv_self = SimpleNamespace(box_coder=BoxCoder((10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3)
    matcher = SSDMatcher(0.5)
    tv_targets, matched = [], []
    for t in targets:
        tv_targets.append({"boxes": t["boxes"], "labels": t["labels"] + 1})
        if t["boxes"].numel() == 0:
            matched.append(torch.full((anchors.size(0),), -1, dtype=torch.int64))
        else:
            matched.append(matcher(box_iou(t["boxes"], anchors)))
    head = {"cls_logits": cls_logits, "bbox_regression": box_deltas}
    return SSD.compute_loss(tv_self, tv_targets, head, [anchors] * len(targets), matched)


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_loss_equals_torchvision_compute_loss(seed):
    gen = torch.Generator().manual_seed(seed)
    n, a = 3, TV_ANCHORS.shape[0]
    cls_logits = torch.randn(n, a, 91, generator=gen) * 2
    box_deltas = torch.randn(n, a, 4, generator=gen)
    targets = random_targets(gen, [5, 0, 17])  # one image without boxes
    ref = torchvision_loss(cls_logits, box_deltas, TV_ANCHORS, targets)
    ours = SSDLiteLoss(LossConfig())(cls_logits, box_deltas, TV_ANCHORS, targets)
    torch.testing.assert_close(ours["bbox_regression"], ref["bbox_regression"], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours["classification"], ref["classification"], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours["loss"], ref["bbox_regression"] + ref["classification"], rtol=0, atol=2e-5)
    matched = [SSDMatcher(0.5)(box_iou(t["boxes"], TV_ANCHORS)) for t in targets if len(t["boxes"])]
    assert int(ours["num_pos"]) == sum(int((m >= 0).sum()) for m in matched) > 0


def test_hard_negative_count_hand_case():
    # One box exactly on anchor 0 -> 1 positive; anchors 1..4 are background, so 3 negatives are mined.
    logits = torch.zeros(1, 5, 3)
    logits[0, :, 1] = torch.tensor([0.0, 1.0, 3.0, 2.0, 4.0])  # CE of negatives grows with the class-1 logit
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}]
    out = SSDLiteLoss(LossConfig())(logits, torch.zeros(1, 5, 4), SMALL_ANCHORS, targets)
    ce = F.cross_entropy(logits[0], torch.tensor([2, 0, 0, 0, 0]), reduction="none")
    # positive (anchor 0) + the 3 hardest negatives: anchors 4, 2, 3 (not anchor 1).
    expected = ce[0] + ce[4] + ce[2] + ce[3]
    assert int(out["num_pos"]) == 1
    torch.testing.assert_close(out["classification"], expected)
    assert float(out["bbox_regression"]) == 0.0  # zero deltas on an exact anchor
    # log(3) is the CE of all-zero logits: ce[0] for the positive.
    assert float(ce[0]) == pytest.approx(math.log(3.0))
    mask = hard_negative_mask(ce[None], torch.tensor([[True, False, False, False, False]]),
                              torch.tensor([[False, True, True, True, True]]), 3)  # fmt: skip
    assert mask.tolist() == [[False, False, True, True, True]]
    mask2 = hard_negative_mask(ce[None], torch.tensor([[True, False, False, False, False]]),
                               torch.tensor([[False, True, True, True, True]]), 2)  # fmt: skip
    assert mask2.tolist() == [[False, False, True, False, True]]


def test_hard_negative_mask_equals_torchvisions_double_sort():
    """The rank by scatter equals torchvision's ``order.sort(1)[1]``, ties and ignored anchors included."""
    g = torch.Generator().manual_seed(0)
    for n, a in [(3, 50), (8, 6834)]:
        loss = torch.randint(0, 20, (n, a), generator=g).float() / 4  # many ties
        positive = torch.rand(n, a, generator=g) < 0.02
        negative = ~positive & (torch.rand(n, a, generator=g) < 0.9)  # the rest ignored
        for ratio in (0, 3, 1000):  # 1000: more negatives asked than exist
            got = hard_negative_mask(loss, positive, negative, ratio)
            ref_loss = loss.clone()
            ref_loss[~negative] = -float("inf")
            _, order = ref_loss.sort(1, descending=True)
            expected = (order.sort(1)[1] < ratio * positive.sum(1, keepdim=True)) & negative
            assert torch.equal(got, expected), (n, a, ratio)


def test_ignored_anchors_are_neither_positive_nor_negative():
    # Crowd box on anchor 4 (the big one): anchor 4 has the highest negative loss but is ignored,
    # so the mined negatives are anchors 2, 3, 1.
    logits = torch.zeros(1, 5, 3)
    logits[0, :, 1] = torch.tensor([0.0, 1.0, 3.0, 2.0, 4.0])
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 40.0]]),
            "labels": torch.tensor([1, 0]),
            "iscrowd": torch.tensor([False, True]),
        }
    ]
    out = SSDLiteLoss(LossConfig())(logits, torch.zeros(1, 5, 4), SMALL_ANCHORS, targets)
    ce = F.cross_entropy(logits[0], torch.tensor([2, 0, 0, 0, 0]), reduction="none")
    torch.testing.assert_close(out["classification"], ce[0] + ce[1] + ce[2] + ce[3])
    assert int(out["num_pos"]) == 1


def test_no_box_and_all_crowd_images_are_fine():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 4, generator=gen, requires_grad=True)
    deltas = torch.randn(2, 5, 4, generator=gen, requires_grad=True)
    targets = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "iscrowd": torch.zeros(0, dtype=torch.bool)},
        {"boxes": torch.tensor([[0.0, 0.0, 40.0, 40.0]]), "labels": torch.tensor([2]), "iscrowd": torch.tensor([True])},
    ]
    for mode in ("softmax", "focal"):
        out = SSDLiteLoss(LossConfig(), classification=mode)(logits, deltas, SMALL_ANCHORS, targets)
        assert int(out["num_pos"]) == 0 and float(out["bbox_regression"].detach()) == 0.0
        assert torch.isfinite(out["loss"])
        out["loss"].backward()  # a graph exists even without positives
        if mode == "softmax":
            assert float(out["loss"].detach()) == 0.0  # no positives -> no mined negatives (torchvision rule)
        else:
            assert float(out["loss"].detach()) > 0.0  # focal: every background anchor counts


def test_focal_loss_is_finite_normalized_and_skips_ignored_anchors():
    from torchvision.ops import sigmoid_focal_loss

    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 5, 4, generator=gen)
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 40.0]]),
            "labels": torch.tensor([2, 0]),
            "iscrowd": torch.tensor([False, True]),
        }
    ]
    cfg = LossConfig(focal_alpha=0.75, focal_gamma=2.0)
    out = SSDLiteLoss(cfg, classification="focal")(logits, torch.zeros(1, 5, 4), SMALL_ANCHORS, targets)
    # Valid anchors 0..3 (anchor 4 ignored), foreground columns 1..3, one-hot class 2 on anchor 0.
    onehot = torch.zeros(4, 3)
    onehot[0, 2] = 1.0
    expected = sigmoid_focal_loss(logits[0, :4, 1:], onehot, alpha=0.75, gamma=2.0, reduction="sum") / 1
    torch.testing.assert_close(out["classification"], expected)
    assert torch.isfinite(out["loss"])
    changed = logits.clone()
    changed[0, 4] = 50.0  # ignored anchor and column 0: no effect
    changed[0, :, 0] = -7.0
    out2 = SSDLiteLoss(cfg, classification="focal")(changed, torch.zeros(1, 5, 4), SMALL_ANCHORS, targets)
    torch.testing.assert_close(out2["classification"], out["classification"])


def test_loss_decreases_with_sgd_on_a_tiny_problem():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(5)
    anchors = AnchorGenerator(AnchorConfig())((64, 64), [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1), (1, 1)])
    targets = random_targets(gen, [2, 1], num_classes=5)
    for t in targets:
        t["boxes"] = t["boxes"] / 5
    for mode in ("softmax", "focal"):
        logits = torch.zeros(2, anchors.shape[0], 6, requires_grad=True)
        deltas = torch.zeros(2, anchors.shape[0], 4, requires_grad=True)
        loss_fn = SSDLiteLoss(LossConfig(), classification=mode)
        opt = torch.optim.SGD([logits, deltas], lr=2.0)
        losses = []
        for _ in range(20):
            out = loss_fn(logits, deltas, anchors, targets)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            losses.append(float(out["loss"].detach()))
        assert all(b < a for a, b in zip(losses, losses[1:])), (mode, losses)
        assert losses[-1] < 0.5 * losses[0], (mode, losses)


def test_bad_inputs_raise():
    loss_fn = SSDLiteLoss(LossConfig())
    good = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}]
    with pytest.raises(ValueError, match="box_deltas"):
        loss_fn(torch.zeros(1, 5, 3), torch.zeros(1, 4, 4), SMALL_ANCHORS, good)
    with pytest.raises(ValueError, match="num_classes"):
        loss_fn(torch.zeros(1, 5, 2), torch.zeros(1, 5, 4), SMALL_ANCHORS, good)
    with pytest.raises(ValueError, match="labels"):
        loss_fn(torch.zeros(1, 5, 3), torch.zeros(1, 5, 4), SMALL_ANCHORS, [{"boxes": good[0]["boxes"], "labels": torch.tensor([0, 1])}])
