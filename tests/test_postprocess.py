"""Postprocess: exact parity with torchvision's SSD.postprocess_detections, crafted case, numpy input."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.ssd import SSD

from ssdlite.model.anchors import AnchorGenerator
from ssdlite.config import AnchorConfig, PostprocessConfig
import numpy as np
from torchvision.ops import batched_nms

from ssdlite.model.postprocess import (
    SORT_PATH_MAX_CANDIDATES,
    SPARSE_MAX_NMS,
    SPARSE_MAX_ROWS,
    _postprocess_dense,
    _select_by_sort,
    _select_by_topk,
    batched_nms_np,
    candidate_rows,
    postprocess,
    select_candidates,
)

MAPS = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
TV_ANCHORS = AnchorGenerator(AnchorConfig(layout="torchvision", aspect_ratios=((2.0, 3.0),) * 6))((320, 320), MAPS)


def torchvision_postprocess(cls_logits, box_deltas, anchors, image_size, cfg: PostprocessConfig):
    tv_self = SimpleNamespace(
        box_coder=BoxCoder((10.0, 10.0, 5.0, 5.0)),
        score_thresh=cfg.score_thresh,
        topk_candidates=cfg.topk_candidates,
        nms_thresh=cfg.nms_thresh,
        detections_per_img=cfg.detections_per_img,
    )
    head = {"cls_logits": cls_logits, "bbox_regression": box_deltas}
    n = cls_logits.shape[0]
    return SSD.postprocess_detections(tv_self, head, [anchors] * n, [tuple(image_size)] * n)


def detector_like_logits(gen: torch.Generator, n: int, a: int, c1: int) -> torch.Tensor:
    """Background-dominated logits with a few confident anchors, like a trained detector's."""
    logits = torch.randn(n, a, c1, generator=gen)
    logits[..., 0] += 4.0
    hot = torch.randint(0, a, (n, 60), generator=gen)
    cls = torch.randint(1, c1, (n, 60), generator=gen)
    logits[torch.arange(n)[:, None], hot, cls] += 4.0 + 4.0 * torch.rand(n, 60, generator=gen)
    return logits


CASES = [
    # (score_thresh, topk, nms, detections_per_img, logit style, final cut at detections_per_img)
    (0.001, 300, 0.55, 300, "random", True),  # the evaluation defaults
    (0.01, 20, 0.45, 50, "random", True),  # per-class top-k and the final cut both active
    (0.3, 300, 0.55, 100, "detector", False),  # webcam setting
    (0.05, 5, 0.5, 10, "detector", True),
]


@pytest.mark.parametrize("case", CASES)
def test_equals_torchvision_postprocess_detections(case):
    thresh, topk, nms, det, style, cut = case
    gen = torch.Generator().manual_seed(int(thresh * 1000) + topk)
    n, a = 2, TV_ANCHORS.shape[0]
    logits = torch.randn(n, a, 91, generator=gen) if style == "random" else detector_like_logits(gen, n, a, 91)
    deltas = torch.randn(n, a, 4, generator=gen) * 0.5
    cfg = PostprocessConfig(score_thresh=thresh, topk_candidates=topk, nms_thresh=nms, detections_per_img=det)
    ref = torchvision_postprocess(logits, deltas, TV_ANCHORS, (320, 320), cfg)
    ours = postprocess(logits, deltas, TV_ANCHORS, (320, 320), cfg)
    assert len(ours) == n
    for (boxes, scores, labels), r in zip(ours, ref):
        assert len(scores) > 0 and len(scores) == len(r["scores"])
        assert boxes.dtype == torch.float32 and labels.dtype == torch.int64
        assert torch.equal(labels, r["labels"] - 1)  # 0-based, same order
        torch.testing.assert_close(scores, r["scores"], rtol=0, atol=1e-6)
        torch.testing.assert_close(boxes, r["boxes"], rtol=0, atol=1e-4)
    assert max(len(s) for _, s, _ in ours) == det if cut else max(len(s) for _, s, _ in ours) < det


def per_class_loop(scores: torch.Tensor, thresh: float, topk: int):
    """torchvision's loop over classes: threshold, then topk (sorted descending), concatenated."""
    exp_a, exp_l, exp_s = [], [], []
    for c in range(scores.shape[1]):
        s = scores[:, c]
        keep = torch.where(s > thresh)[0]
        top, idx = s[keep].topk(min(topk, keep.numel()))
        exp_a.append(keep[idx]), exp_l.append(torch.full_like(idx, c)), exp_s.append(top)
    return torch.cat(exp_a), torch.cat(exp_l), torch.cat(exp_s)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thresh, topk", [(0.4, 25), (0.0, 1000), (0.9, 1), (0.999, 5), (1.0, 5)])
def test_both_selection_paths_match_per_class_loop(seed, thresh, topk):
    gen = torch.Generator().manual_seed(seed)
    # Distinct values in (0, 1): a shuffled grid, so that no two scores tie.
    scores = ((torch.randperm(800 * 12, generator=gen) + 1) / (800 * 12 + 1)).reshape(800, 12)
    assert len(torch.unique(scores)) == scores.numel()
    expected = per_class_loop(scores, thresh, topk)
    passed = scores.t() > thresh
    for select in (_select_by_sort, _select_by_topk):
        got = select(scores, passed, topk)
        for g, e in zip(got, expected):
            assert torch.equal(g, e), select.__name__
    assert all(torch.equal(g, e) for g, e in zip(select_candidates(scores, thresh, topk), expected))


def test_eval_threshold_uses_topk_path_and_webcam_threshold_the_sort_path():
    gen = torch.Generator().manual_seed(6)
    scores = torch.softmax(torch.randn(TV_ANCHORS.shape[0], 91, generator=gen), -1)[:, 1:]
    assert int((scores > 0.001).sum()) > SORT_PATH_MAX_CANDIDATES >= int((scores > 0.05).sum())


def test_crafted_logits_hand_case():
    # Anchors: two overlapping 20x20 boxes (IoU 0.6), one far box, one box crossing the border.
    anchors = torch.tensor([[0, 0, 20, 20], [4, 0, 24, 20], [50, 50, 70, 70], [90, 90, 110, 110]], dtype=torch.float32)
    logits = torch.full((1, 4, 3), -10.0)
    logits[0, :, 0] = 0.0
    logits[0, 0, 1] = math.log(9.0)  # class 0, p = 9 / (1 + 9 + e^-10) ~ 0.9
    logits[0, 1, 1] = math.log(4.0)  # class 0, p ~ 0.8, suppressed by anchor 0 (IoU 0.667 > 0.5)
    logits[0, 1, 2] = math.log(0.5)  # class 1 on anchor 1, p ~ 1/ (1 + 4 + 0.5) = 0.0909: kept (other class)
    logits[0, 2, 2] = math.log(3.0)  # class 1, p ~ 0.75
    logits[0, 3, 2] = math.log(0.2)  # class 1, p ~ 1/6 = 0.1667... below 0.2 -> dropped
    deltas = torch.zeros(1, 4, 4)
    deltas[0, 2, 0] = 10.0 * 0.5  # shift anchor 2 right by half its width: x 60..80
    cfg = PostprocessConfig(score_thresh=0.05, topk_candidates=10, nms_thresh=0.5, detections_per_img=10)
    boxes, scores, labels = postprocess(logits, deltas, anchors, (100, 100), cfg)[0]
    assert labels.tolist() == [0, 1, 1, 1]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.75, 1 / 6, 0.5 / 5.5]), rtol=0, atol=1e-4)
    torch.testing.assert_close(
        boxes, torch.tensor([[0, 0, 20, 20], [60, 50, 80, 70], [90, 90, 100, 100], [4, 0, 24, 20]], dtype=torch.float32)
    )
    boxes2, scores2, labels2 = postprocess(logits, deltas, anchors, (100, 100), PostprocessConfig(score_thresh=0.2))[0]
    assert labels2.tolist() == [0, 1] and torch.equal(boxes2, boxes[:2])
    cut = postprocess(logits, deltas, anchors, (100, 100), PostprocessConfig(score_thresh=0.05, detections_per_img=2))[0]
    assert cut[2].tolist() == [0, 1]
    nothing = postprocess(logits, deltas, anchors, (100, 100), PostprocessConfig(score_thresh=0.95))[0]
    assert nothing[0].shape == (0, 4) and nothing[1].shape == (0,) and nothing[2].dtype == torch.int64


def test_focal_uses_sigmoid_scores_and_numpy_input_works():
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(1, TV_ANCHORS.shape[0], 6, generator=gen) - 3
    deltas = torch.randn(1, TV_ANCHORS.shape[0], 4, generator=gen)
    cfg = PostprocessConfig(score_thresh=0.3, detections_per_img=50)
    boxes, scores, labels = postprocess(logits, deltas, TV_ANCHORS, (320, 320), cfg, classification="focal")[0]
    probs = torch.sigmoid(logits[0, :, 1:])
    assert len(scores) > 0 and float(scores.min()) > 0.3 and int(labels.max()) <= 4
    assert float(scores[0]) == pytest.approx(float(probs.max()))
    np_out = postprocess(logits.numpy(), deltas.numpy(), TV_ANCHORS.numpy(), (320, 320), cfg, classification="focal")[0]
    for x, y in zip(np_out, (boxes, scores, labels)):
        assert torch.equal(x, y)
    assert (boxes[:, 2:] <= 320).all() and (boxes[:, :2] >= 0).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="anchors"):
        postprocess(torch.zeros(1, 5, 3), torch.zeros(1, 5, 4), torch.zeros(4, 4), (10, 10), PostprocessConfig())
    with pytest.raises(ValueError, match="classification"):
        postprocess(torch.zeros(1, 4, 3), torch.zeros(1, 4, 4), torch.zeros(4, 4), (10, 10), PostprocessConfig(), "hinge")


# ----------------------------------------------------------------------------- the NumPy real-time path


def _both_paths(logits, deltas, anchors, cfg, classification="softmax"):
    fast = postprocess(logits, deltas, anchors, (320, 320), cfg, classification)
    dense = _postprocess_dense(logits, deltas, anchors, (320, 320), cfg, classification, (10.0, 10.0, 5.0, 5.0))
    return fast, dense


SPARSE_CASES = {
    # name: (logits maker, score_thresh, topk, detections_per_img, classification)
    "detector-like": (lambda g, a, c: detector_like_logits(g, 2, a, c), 0.3, 300, 100, "softmax"),
    "per-class top-k": (lambda g, a, c: detector_like_logits(g, 2, a, c), 0.05, 2, 300, "softmax"),
    "final cut": (lambda g, a, c: detector_like_logits(g, 2, a, c), 0.05, 300, 7, "softmax"),
    "flat logits (every anchor scored)": (lambda g, a, c: torch.randn(2, a, c, generator=g) * 2.0, 0.2, 300, 300, "softmax"),
    "many candidates (batched_nms hand-off)": (lambda g, a, c: torch.randn(2, a, c, generator=g) * 4.0, 0.3, 300, 300, "softmax"),
    "focal": (lambda g, a, c: torch.randn(2, a, c, generator=g) - 2.5, 0.3, 300, 100, "focal"),
    "nothing passes": (lambda g, a, c: detector_like_logits(g, 2, a, c), 0.999999, 300, 100, "softmax"),
}


@pytest.mark.parametrize("name", list(SPARSE_CASES))
def test_numpy_path_equals_torch_path(name):
    make, thresh, topk, det, classification = SPARSE_CASES[name]
    gen = torch.Generator().manual_seed(len(name))
    a = TV_ANCHORS.shape[0]
    logits = make(gen, a, 81)
    deltas = torch.randn(2, a, 4, generator=gen) * 0.5
    cfg = PostprocessConfig(score_thresh=thresh, topk_candidates=topk, nms_thresh=0.5, detections_per_img=det)
    fast, dense = _both_paths(logits, deltas, TV_ANCHORS, cfg, classification)
    for (fb, fs, fl), (db, ds, dl) in zip(fast, dense):
        assert fl.dtype == torch.int64 and fs.dtype == torch.float32 and fb.dtype == torch.float32
        assert torch.equal(fl, dl) and torch.equal(fs, ds), name  # same kernels for the scores: bit for bit
        torch.testing.assert_close(fb, db, rtol=0, atol=1e-4)
    n = [len(s) for _, s, _ in fast]
    if name == "nothing passes":
        assert n == [0, 0]
    elif name == "final cut":
        assert max(n) == det
    elif name.startswith("many"):
        assert max(n) > SPARSE_MAX_NMS
    else:
        assert min(n) > 0


def test_flat_logits_are_pruned_by_the_mean_bound():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(1, TV_ANCHORS.shape[0], 81, generator=gen) * 0.1  # no background preference
    l_np = logits[0].numpy()
    # the background bound alone keeps every anchor; with the mean of the other classes, none is left
    assert int(((l_np[:, 1:].max(1) - l_np[:, 0]) > math.log(0.3 / 0.7)).sum()) > SPARSE_MAX_ROWS
    assert candidate_rows(l_np, 0.3).size == 0
    logits[0, 5, 7] = 12.0  # one confident anchor
    assert candidate_rows(logits[0].numpy(), 0.3).tolist() == [5]
    fast, dense = _both_paths(logits, torch.zeros(1, TV_ANCHORS.shape[0], 4), TV_ANCHORS, PostprocessConfig(score_thresh=0.3))
    assert fast[0][2].tolist() == dense[0][2].tolist() == [6]


def test_ties_keep_the_torch_path_order():
    # Identical logits on many anchors: equal scores, order decided by the tie rules alone.
    a = TV_ANCHORS.shape[0]
    logits = torch.zeros(1, a, 6)
    logits[0, :, 0] = 3.0
    logits[0, ::7, 2] = 5.0
    logits[0, ::11, 4] = 5.0
    cfg = PostprocessConfig(score_thresh=0.3, topk_candidates=50, nms_thresh=0.5, detections_per_img=300)
    fast, dense = _both_paths(logits, torch.zeros(1, a, 4), TV_ANCHORS, cfg)
    assert len(fast[0][1]) > 20
    for x, y in zip(fast[0], dense[0]):
        assert torch.equal(x, y)


@pytest.mark.parametrize("seed", range(6))
def test_batched_nms_np_equals_torchvision(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 60))
    xy = rng.uniform(0, 100, (k, 2)).astype(np.float32)
    wh = rng.uniform(0, 40, (k, 2)).astype(np.float32)
    wh[rng.random(k) < 0.1] = 0  # empty boxes: 0/0 IoU never suppresses
    boxes = np.concatenate([xy, xy + wh], 1)
    boxes[k // 2 :] = boxes[: k - k // 2] + rng.normal(0, 2, (k - k // 2, 4)).astype(np.float32)  # near duplicates
    scores = rng.choice(np.linspace(0.3, 0.9, 7), k).astype(np.float32)  # many ties
    groups = rng.integers(1, 4, k)
    for thresh in (0.3, 0.5, 0.55, 0.7):
        ref = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(groups), thresh)
        assert batched_nms_np(boxes, scores, groups, thresh).tolist() == ref.tolist()
    assert batched_nms_np(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5).shape == (0,)
