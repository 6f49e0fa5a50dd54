"""Box coder: bit parity with torchvision's BoxCoder, hand case, round trip, clamp."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from ssdlite.model.box_coder import BBOX_XFORM_CLIP, decode, encode

W = (10.0, 10.0, 5.0, 5.0)


def random_boxes(n: int, gen: torch.Generator, size: float = 320.0) -> torch.Tensor:
    """(n, 4) xyxy boxes with sides in [4, 164) px: size ratios stay below the 62.5 clamp."""
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 2 + 4.0
    return torch.cat([xy, xy + wh], 1)


def test_hand_computed_case():
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # center (5, 5), 10 x 10
    gt = torch.tensor([[2.0, 4.0, 12.0, 24.0]])  # center (7, 14), 10 x 20
    deltas = encode(gt, anchor, W)
    torch.testing.assert_close(deltas, torch.tensor([[2.0, 9.0, 0.0, 5 * math.log(2.0)]]))
    torch.testing.assert_close(decode(deltas, anchor, W), gt)


def test_equals_torchvision_box_coder():
    gen = torch.Generator().manual_seed(0)
    anchors, gt = random_boxes(500, gen), random_boxes(500, gen)
    ref = BoxCoder(W)
    assert torch.equal(encode(gt, anchors, W), ref.encode_single(gt, anchors))
    deltas = torch.randn(500, 4, generator=gen) * 3
    assert torch.equal(decode(deltas, anchors, W), ref.decode_single(deltas, anchors))


def test_batched_decode_broadcasts_anchors():
    gen = torch.Generator().manual_seed(1)
    anchors = random_boxes(50, gen)
    deltas = torch.randn(3, 50, 4, generator=gen)
    out = decode(deltas, anchors, W)
    assert out.shape == (3, 50, 4)
    for i in range(3):
        assert torch.equal(out[i], BoxCoder(W).decode_single(deltas[i], anchors))


def test_round_trip():
    gen = torch.Generator().manual_seed(2)
    anchors, gt = random_boxes(1000, gen), random_boxes(1000, gen)
    torch.testing.assert_close(decode(encode(gt, anchors, W), anchors, W), gt, rtol=0, atol=1e-3)
    gt64, anchors64 = gt.double(), anchors.double()
    torch.testing.assert_close(decode(encode(gt64, anchors64, (1, 2, 3, 4)), anchors64, (1, 2, 3, 4)), gt64)


def test_decode_clamps_size_deltas():
    anchor = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    out = decode(torch.tensor([[0.0, 0.0, 1e4, 1e4]]), anchor, W)
    side = 16 * math.exp(BBOX_XFORM_CLIP)  # 1000 px
    torch.testing.assert_close(out, torch.tensor([[8 - side / 2, 8 - side / 2, 8 + side / 2, 8 + side / 2]]))
    assert torch.isfinite(out).all()


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        encode(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="weights"):
        decode(torch.zeros(3, 4), torch.zeros(3, 4), (10, 10, 5))
