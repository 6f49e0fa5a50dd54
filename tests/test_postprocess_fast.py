"""The real-time NumPy postprocess: the same detections as the torch path and torchvision, over many
random inputs (background-dominated, lively, flat, tied, sigmoid, empty, cut), and its score bound
never drops an anchor that passes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from ssdlite.config import PostprocessConfig
from ssdlite.model.postprocess import (
    SPARSE_MAX_ROWS,
    _decode_np,
    _postprocess_dense,
    batched_nms_np,
    candidate_rows,
    postprocess,
    postprocess_numpy,
)

from test_postprocess import TV_ANCHORS, torchvision_postprocess

WEIGHTS = (10.0, 10.0, 5.0, 5.0)
A = TV_ANCHORS.shape[0]


def random_logits(rng: np.random.Generator, style: str, a: int, c1: int) -> np.ndarray:
    """(1, a, c1) float32 logits of one of the styles a detector's outputs come in."""
    if style == "detector":  # trained: the background dominates all but a few anchors
        x = rng.normal(0, 1, (a, c1))
        x[:, 0] += 4.0
        hot = rng.integers(0, a, 40)
        x[hot, rng.integers(1, c1, 40)] += rng.uniform(3, 9, 40)
    elif style == "lively":  # the latency benchmark's random model: background far down, foreground spread
        x = rng.normal(0, 1.2, (a, c1))
        x[:, 0] -= 20.0
    elif style == "flat":  # untrained: every score about 1 / c1
        x = rng.normal(0, 0.1, (a, c1))
    elif style == "ties":  # quantized logits: many equal scores inside a class and across anchors
        x = np.round(rng.normal(0, 1.5, (a, c1)) * 2) / 2
        x[:, 0] += 1.0
    elif style == "wide":  # large magnitudes
        x = rng.normal(0, 30, (a, c1))
    else:
        raise ValueError(style)
    return x.astype(np.float32)[None]


def assert_same(fast, dense):
    """Same labels, scores (bit for bit) and order; boxes to float32 rounding of the decode's exp."""
    for (fb, fs, fl), (db, ds, dl) in zip(fast, dense):
        db, ds, dl = (t.numpy() if isinstance(t, torch.Tensor) else t for t in (db, ds, dl))
        assert fb.dtype == np.float32 and fs.dtype == np.float32 and fl.dtype == np.int64
        assert fb.shape == (len(fs), 4)
        np.testing.assert_array_equal(fl, dl)
        assert np.array_equal(fs.view(np.uint32), ds.view(np.uint32))
        np.testing.assert_allclose(fb, db, rtol=0, atol=1e-4)  # 3 ulp at 320 px


STYLES = ["detector", "lively", "flat", "ties", "wide"]


@pytest.mark.parametrize("style", STYLES)
def test_numpy_path_equals_torch_path_on_random_inputs(style):
    rng = np.random.default_rng(STYLES.index(style))
    for trial in range(12):
        c1 = int(rng.choice([2, 3, 21, 81, 91]))
        thresh = float(rng.choice([0.05, 0.2, 0.3, 0.5, 0.9]))
        topk = int(rng.choice([1, 3, 300]))
        det = int(rng.choice([1, 5, 300]))
        logits = random_logits(rng, style, A, c1)
        deltas = (rng.normal(0, 1.0, (1, A, 4))).astype(np.float32)
        cfg = PostprocessConfig(score_thresh=thresh, topk_candidates=topk, nms_thresh=float(rng.choice([0.3, 0.55])),
                                detections_per_img=det)
        fast = postprocess_numpy(logits, deltas, TV_ANCHORS, (320, 320), cfg)
        dense = _postprocess_dense(torch.from_numpy(logits), torch.from_numpy(deltas), TV_ANCHORS, (320, 320), cfg,
                                   "softmax", WEIGHTS)
        assert_same(fast, dense)
        # the tensor API gives the very same arrays
        tensors = postprocess(logits, deltas, TV_ANCHORS, (320, 320), cfg)
        for x, y in zip(fast[0], tensors[0]):
            assert isinstance(y, torch.Tensor) and np.array_equal(x, y.numpy())


@pytest.mark.parametrize("seed", range(4))
def test_sigmoid_scores_equal_the_torch_path(seed):
    rng = np.random.default_rng(100 + seed)
    for c1 in (2, 6, 81):
        logits = (rng.normal(0, 1.5, (1, A, c1)) - 2.5).astype(np.float32)
        deltas = rng.normal(0, 1.0, (1, A, 4)).astype(np.float32)
        for thresh in (0.05, 0.3, 0.7):
            cfg = PostprocessConfig(score_thresh=thresh, topk_candidates=50, nms_thresh=0.5, detections_per_img=40)
            fast = postprocess_numpy(logits, deltas, TV_ANCHORS, (320, 320), cfg, classification="focal")
            dense = _postprocess_dense(torch.from_numpy(logits), torch.from_numpy(deltas), TV_ANCHORS, (320, 320), cfg,
                                       "focal", WEIGHTS)
            assert_same(fast, dense)


@pytest.mark.parametrize("seed", range(3))
def test_equals_torchvision_at_realtime_thresholds(seed):
    rng = np.random.default_rng(200 + seed)
    for style in ("detector", "lively"):
        logits = random_logits(rng, style, A, 91)
        deltas = (rng.normal(0, 0.5, (1, A, 4))).astype(np.float32)
        for thresh, topk, det in ((0.3, 300, 300), (0.05, 4, 20), (0.2, 300, 3)):
            cfg = PostprocessConfig(score_thresh=thresh, topk_candidates=topk, nms_thresh=0.55, detections_per_img=det)
            ref = torchvision_postprocess(torch.from_numpy(logits), torch.from_numpy(deltas), TV_ANCHORS, (320, 320), cfg)[0]
            boxes, scores, labels = postprocess_numpy(logits, deltas, TV_ANCHORS, (320, 320), cfg)[0]
            np.testing.assert_array_equal(labels, ref["labels"].numpy() - 1)
            np.testing.assert_allclose(scores, ref["scores"].numpy(), rtol=0, atol=1e-6)
            np.testing.assert_allclose(boxes, ref["boxes"].numpy(), rtol=0, atol=1e-4)


def test_empty_batch_of_several_and_cut():
    rng = np.random.default_rng(7)
    logits = np.concatenate([random_logits(rng, "detector", A, 81) for _ in range(3)])
    logits[1, :, 0] += 50.0  # the second image: nothing passes
    deltas = rng.normal(0, 1.0, (3, A, 4)).astype(np.float32)
    cfg = PostprocessConfig(score_thresh=0.3, topk_candidates=300, nms_thresh=0.5, detections_per_img=2)
    fast = postprocess_numpy(logits, deltas, TV_ANCHORS, (320, 320), cfg)
    dense = _postprocess_dense(torch.from_numpy(logits), torch.from_numpy(deltas), TV_ANCHORS, (320, 320), cfg, "softmax", WEIGHTS)
    assert_same(fast, dense)
    assert [len(s) for _, s, _ in fast] == [2, 0, 2]
    assert fast[1][0].shape == (0, 4) and fast[1][2].dtype == np.int64
    # inputs as tensors, non-contiguous or float64 arrays give the same
    again = postprocess_numpy(torch.from_numpy(logits), np.asfortranarray(deltas.astype(np.float64)), TV_ANCHORS.numpy(), (320, 320), cfg)
    for r, s in zip(again, fast):
        for x, y in zip(r, s):
            assert np.array_equal(x, y)


def test_read_only_inputs_and_evaluation_threshold_go_through():
    rng = np.random.default_rng(8)
    logits = random_logits(rng, "detector", A, 21)
    deltas = rng.normal(0, 1.0, (1, A, 4)).astype(np.float32)
    logits.flags.writeable = False
    for thresh in (0.001, 0.3):  # 0.001: the torch path, returned as arrays
        cfg = PostprocessConfig(score_thresh=thresh, detections_per_img=100)
        fast = postprocess_numpy(logits, deltas, TV_ANCHORS, (320, 320), cfg)
        dense = _postprocess_dense(torch.from_numpy(logits.copy()), torch.from_numpy(deltas), TV_ANCHORS, (320, 320), cfg,
                                   "softmax", WEIGHTS)
        assert_same(fast, dense)
        assert len(fast[0][1]) > 0


# ----------------------------------------------------------------------------- the score bound


def _passing_rows(logits: np.ndarray, thresh: float, classification: str = "softmax") -> np.ndarray:
    x = torch.from_numpy(logits)
    scores = torch.softmax(x, -1)[:, 1:] if classification == "softmax" else torch.sigmoid(x[:, 1:])
    return (scores > thresh).any(1).nonzero().squeeze(1).numpy()


@pytest.mark.parametrize("style", STYLES)
def test_candidate_rows_keep_every_anchor_that_passes(style):
    rng = np.random.default_rng(300 + STYLES.index(style))
    for c1 in (2, 3, 81, 91, 500):
        logits = random_logits(rng, style, 1500, c1)[0]
        for thresh in (0.05, 0.1, 0.3, 0.5, 0.9, 0.999):
            rows = candidate_rows(logits, thresh)
            passing = _passing_rows(logits, thresh)
            assert np.isin(passing, rows).all(), (style, c1, thresh)
            assert np.all(np.diff(rows) > 0)


def test_candidate_rows_at_the_edge_of_the_bound():
    # Rows whose best score sits right at the threshold: a 1-ulp change of a logit flips the exact test.
    rng = np.random.default_rng(9)
    c1, t = 81, 0.3
    x = rng.normal(0, 1.0, (4000, c1))
    x[:, 0] = rng.normal(0, 1.0, 4000)
    # put the top foreground logit where softmax_top == t (solve for it given the rest)
    rest = np.log(np.exp(x[:, 0]) + np.exp(x[:, 2:]).sum(1))
    x[:, 1] = rest + math.log(t / (1 - t)) + rng.normal(0, 1e-6, 4000)
    logits = x.astype(np.float32)
    rows = candidate_rows(logits, t)
    passing = _passing_rows(logits, t)
    assert passing.size > 100 and np.isin(passing, rows).all()
    # rows where each bound is exact: the other classes far down (the background bound), or the
    # background far down and every other class equal (the mean bound: Jensen with equality)
    for tight in ("background", "mean"):
        for t in (0.05, 0.3, 0.7):
            x = np.full((2000, c1), -60.0)
            if tight == "background":
                x[:, 0] = rng.normal(0, 2.0, 2000)
                x[:, 1] = x[:, 0] + math.log(t / (1 - t))
            else:
                x[:, 2:] = rng.normal(0, 2.0, (2000, 1))
                x[:, 1] = x[:, 2] + math.log((c1 - 2) * t / (1 - t))
            x[:, 1] += rng.normal(0, 1e-5, 2000)
            logits = x.astype(np.float32)
            passing = _passing_rows(logits, t)
            assert 100 < passing.size < 1900 and np.isin(passing, candidate_rows(logits, t)).all(), (tight, t)
    # sigmoid: right at logit(t)
    f = np.full((1000, 5), -5.0, np.float32)
    f[:, 3] = np.float32(math.log(t / (1 - t))) + rng.normal(0, 1e-6, 1000).astype(np.float32)
    passing = _passing_rows(f, t, "focal")
    assert passing.size > 100 and np.isin(passing, candidate_rows(f, t, "focal")).all()


def test_candidate_rows_prune_trained_and_lively_outputs():
    rng = np.random.default_rng(10)
    for style in ("detector", "lively"):
        logits = random_logits(rng, style, A, 91)[0]
        rows, passing = candidate_rows(logits, 0.3), _passing_rows(logits, 0.3)
        assert 0 < passing.size <= rows.size < 0.15 * A, style  # the point: only a few anchors get a softmax


def test_candidate_rows_keep_non_finite_rows_for_the_exact_test():
    logits = np.zeros((6, 4), np.float32)
    logits[:, 0] = 5.0
    logits[1, 2] = np.nan
    logits[2, 0] = -np.inf  # the foreground takes everything: passes
    logits[3, 3] = np.inf
    logits[4, 1] = 9.0  # passes
    rows = candidate_rows(logits, 0.3)
    assert {2, 4} <= set(rows.tolist())
    cfg = PostprocessConfig(score_thresh=0.3)
    anchors = torch.tensor([[0, 0, 10, 10]] * 6, dtype=torch.float32)
    fast = postprocess_numpy(logits[None], np.zeros((1, 6, 4), np.float32), anchors, (32, 32), cfg)
    dense = _postprocess_dense(torch.from_numpy(logits[None]), torch.zeros(1, 6, 4), anchors, (32, 32), cfg, "softmax", WEIGHTS)
    assert_same(fast, dense)


def test_many_candidates_take_the_every_anchor_branch():
    # two classes sharing every anchor: each scores about 0.5, every anchor passes 0.3
    rng = np.random.default_rng(11)
    logits = np.zeros((1, A, 3), np.float32)
    logits[0, :, 0] = -8.0
    logits[0, :, 1:] = rng.normal(0, 0.3, (A, 2)).astype(np.float32)
    assert candidate_rows(logits[0], 0.3).size > SPARSE_MAX_ROWS
    deltas = rng.normal(0, 1.0, (1, A, 4)).astype(np.float32)
    cfg = PostprocessConfig(score_thresh=0.3, topk_candidates=100, nms_thresh=0.5, detections_per_img=300)
    fast = postprocess_numpy(logits, deltas, TV_ANCHORS, (320, 320), cfg)
    dense = _postprocess_dense(torch.from_numpy(logits), torch.from_numpy(deltas), TV_ANCHORS, (320, 320), cfg, "softmax", WEIGHTS)
    assert_same(fast, dense)
    assert len(fast[0][1]) > 50


# ----------------------------------------------------------------------------- decode and NMS pieces


def _decode_reference(deltas: np.ndarray, anchors: np.ndarray, weights) -> np.ndarray:
    """The per-coordinate NumPy decode this module used before x and y were computed together."""
    wx, wy, ww, wh = (float(v) for v in weights)
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + np.float32(0.5) * widths
    ctr_y = anchors[:, 1] + np.float32(0.5) * heights
    clip = np.float32(math.log(1000.0 / 16))
    dw = np.minimum(deltas[:, 2] / np.float32(ww), clip)
    dh = np.minimum(deltas[:, 3] / np.float32(wh), clip)
    pred_ctr_x = deltas[:, 0] / np.float32(wx) * widths + ctr_x
    pred_ctr_y = deltas[:, 1] / np.float32(wy) * heights + ctr_y
    half_w = np.float32(0.5) * (np.exp(dw) * widths)
    half_h = np.float32(0.5) * (np.exp(dh) * heights)
    return np.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), axis=1)


@pytest.mark.parametrize("k", [0, 1, 5, 17, 300])
def test_decode_is_bit_identical_to_the_per_coordinate_decode(k):
    rng = np.random.default_rng(k)
    idx = rng.integers(0, A, k)
    deltas = (rng.normal(0, 3.0, (k, 4)) * rng.choice([0.01, 1, 100], (k, 4))).astype(np.float32)
    anchors = TV_ANCHORS.numpy()[idx]
    for weights in (WEIGHTS, (1.0, 1.0, 1.0, 1.0), (0.1, 0.2, 0.3, 0.7)):
        got, ref = _decode_np(deltas, anchors, weights), _decode_reference(deltas, anchors, weights)
        assert got.dtype == np.float32 and got.shape == (k, 4)
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("seed", range(8))
def test_batched_nms_np_with_a_group_per_box_equals_torchvision(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 40))
    xy = rng.uniform(0, 300, (k, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(0, 60, (k, 2)).astype(np.float32)], 1)
    boxes[k // 2:] = boxes[: k - k // 2]  # exact duplicates in other groups: never suppressed
    scores = rng.choice(np.linspace(0.3, 0.9, 4), k).astype(np.float32)  # ties
    cases = [rng.permutation(k) + 1, rng.permutation(k) * 1000]  # distinct groups, also large offsets
    shifted = boxes - np.float32(150.0)  # negative coordinates: the general path
    for groups in cases:
        for b in (boxes, shifted):
            for thresh in (0.1, 0.55):
                ref = batched_nms(torch.from_numpy(b), torch.from_numpy(scores), torch.from_numpy(groups), thresh)
                assert batched_nms_np(b, scores, groups, thresh).tolist() == ref.tolist()
