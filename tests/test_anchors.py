"""Anchors: torchvision DefaultBoxGenerator parity and hand-computed TF ("paper") boxes."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from ssdlite.model.anchors import AnchorGenerator, linear_scales
from ssdlite.config import AnchorConfig

SSDLITE320_MAPS = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
TV_CFG = AnchorConfig(layout="torchvision", aspect_ratios=((2.0, 3.0),) * 6)
# Two maps, scales 0.2, 0.9 (+1.0): small enough to compute by hand, the 0.9 * sqrt(2) box needs clipping.
TINY = dict(min_ratio=0.2, max_ratio=0.9, aspect_ratios=((2.0,), (2.0,)))
S2 = math.sqrt(2.0)


def torchvision_anchors(aspect_ratios, min_ratio, max_ratio, clip, image_size, feature_sizes):
    gen = DefaultBoxGenerator([list(r) for r in aspect_ratios], min_ratio, max_ratio, clip=clip)
    images = ImageList(torch.zeros(1, 3, *image_size), [tuple(image_size)])
    return gen(images, [torch.zeros(1, 1, h, w) for h, w in feature_sizes])[0]


def box(cx, cy, w, h):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


@pytest.mark.parametrize(
    "image_size, feature_sizes",
    [((320, 320), SSDLITE320_MAPS), ((320, 480), [(20, 30), (10, 15), (5, 8), (3, 4), (2, 2), (1, 1)])],
)
def test_torchvision_layout_equals_default_box_generator(image_size, feature_sizes):
    ours = AnchorGenerator(TV_CFG)(image_size, feature_sizes)
    ref = torchvision_anchors(TV_CFG.aspect_ratios, 0.2, 0.95, True, image_size, feature_sizes)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    assert torch.equal(ours, ref)  # bit for bit, same order


@pytest.mark.parametrize("clip", [True, False])
def test_torchvision_layout_other_config_and_no_clip(clip):
    cfg = AnchorConfig(layout="torchvision", clip=clip, **TINY)
    ref = torchvision_anchors(cfg.aspect_ratios, 0.2, 0.9, clip, (100, 100), [(2, 2), (1, 1)])
    assert torch.equal(AnchorGenerator(cfg)((100, 100), [(2, 2), (1, 1)]), ref)


def test_counts_per_location_and_total():
    paper = AnchorGenerator(AnchorConfig())
    tv = AnchorGenerator(TV_CFG)
    assert paper.num_anchors_per_location() == [3, 6, 6, 6, 6, 6]
    assert tv.num_anchors_per_location() == [6] * 6
    sizes = [h * w for h, w in SSDLITE320_MAPS]
    assert paper((320, 320), SSDLITE320_MAPS).shape == (3 * 400 + 6 * sum(sizes[1:]), 4)  # 2034
    assert tv((320, 320), SSDLITE320_MAPS).shape == (6 * sum(sizes), 4)  # 3234


def test_linear_scales():
    assert linear_scales(6, 0.2, 0.95) == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0])
    assert linear_scales(1, 0.2, 0.95) == [0.2, 0.95]


@pytest.mark.parametrize("clip", [True, False])
def test_paper_layout_hand_computed_2x2_and_1x1(clip):
    gen = AnchorGenerator(AnchorConfig(layout="paper", clip=clip, **TINY))
    got = gen((100, 100), [(2, 2), (1, 1)])
    # Lowest map 2x2: (0.1, 1), (0.2, 2), (0.2, 1/2) at centers (25,25), (75,25), (25,75), (75,75).
    expected = []
    for cy in (25.0, 75.0):
        for cx in (25.0, 75.0):
            expected += [box(cx, cy, 10, 10), box(cx, cy, 20 * S2, 20 / S2), box(cx, cy, 20 / S2, 20 * S2)]
    # 1x1 map, scale 0.9, next 1.0: (0.9, 1), (0.9, 2), (0.9, 1/2), (sqrt(0.9), 1).
    wide = 90 * S2 if not clip else 100.0  # 127.3 px -> clipped to the full width
    expected += [
        box(50, 50, 90, 90),
        box(50, 50, wide, 90 / S2),
        box(50, 50, 90 / S2, wide),
        box(50, 50, 100 * math.sqrt(0.9), 100 * math.sqrt(0.9)),
    ]
    assert gen.num_anchors_per_location() == [3, 4]
    torch.testing.assert_close(got, torch.tensor(expected), rtol=0, atol=1e-4)


def test_torchvision_layout_hand_computed_1x1():
    got = AnchorGenerator(AnchorConfig(layout="torchvision", **TINY))((100, 100), [(2, 2), (1, 1)])
    s_prime = 100 * math.sqrt(0.9 * 1.0)
    expected = [box(50, 50, 90, 90), box(50, 50, s_prime, s_prime), box(50, 50, 100, 90 / S2), box(50, 50, 90 / S2, 100)]
    torch.testing.assert_close(got[-4:], torch.tensor(expected), rtol=0, atol=1e-4)
    # First location of the 2x2 map: (0.2, 0.2), (sqrt(0.2*0.9),)*2, then ratio 2 both ways.
    s01 = 100 * math.sqrt(0.2 * 0.9)
    expected0 = [box(25, 25, 20, 20), box(25, 25, s01, s01), box(25, 25, 20 * S2, 20 / S2), box(25, 25, 20 / S2, 20 * S2)]
    torch.testing.assert_close(got[:4], torch.tensor(expected0), rtol=0, atol=1e-4)


def test_paper_layout_default_config_first_boxes():
    got = AnchorGenerator(AnchorConfig())((320, 320), SSDLITE320_MAPS)
    # Lowest layer, first location (8, 8): 32 px square, then 0.2 * 320 = 64 px at ratios 2 and 1/2.
    torch.testing.assert_close(
        got[:3], torch.tensor([box(8, 8, 32, 32), box(8, 8, 64 * S2, 64 / S2), box(8, 8, 64 / S2, 64 * S2)]), rtol=0, atol=1e-4
    )
    # Second map (10x10, scale 0.35, next 0.5) first location (16, 16): 1, 2, 1/2, 3, 1/3, interpolated.
    s, sq3 = 0.35 * 320, math.sqrt(3.0)
    si = 320 * math.sqrt(0.35 * 0.5)
    exp = [box(16, 16, s, s), box(16, 16, s * S2, s / S2), box(16, 16, s / S2, s * S2),
           box(16, 16, s * sq3, s / sq3), box(16, 16, s / sq3, s * sq3), box(16, 16, si, si)]  # fmt: skip
    torch.testing.assert_close(got[1200:1206], torch.tensor(exp), rtol=0, atol=1e-4)


def test_paper_layout_lowest_scale_changes_only_the_extra_lowest_box():
    base = AnchorGenerator(AnchorConfig())((320, 320), SSDLITE320_MAPS)
    small = AnchorGenerator(AnchorConfig(lowest_scale=0.05))((320, 320), SSDLITE320_MAPS)
    first = torch.arange(0, 1200, 3)  # the (lowest_scale, 1) box of each of the 20x20 locations
    torch.testing.assert_close(small[0], torch.tensor(box(8, 8, 16, 16)), rtol=0, atol=1e-4)
    torch.testing.assert_close(small[first, 2:] - small[first, :2], torch.full((400, 2), 16.0), rtol=0, atol=1e-4)
    others = torch.ones(len(base), dtype=torch.bool)
    others[first] = False
    assert torch.equal(small[others], base[others])


@pytest.mark.parametrize("layout", ["paper", "torchvision"])
def test_stride8_map_comes_first_with_square_boxes_and_leaves_the_others(layout):
    ratios = AnchorConfig().aspect_ratios if layout == "paper" else TV_CFG.aspect_ratios
    base = AnchorGenerator(AnchorConfig(layout=layout, aspect_ratios=ratios))
    gen = AnchorGenerator(AnchorConfig(layout=layout, aspect_ratios=ratios, stride8_scales=(0.05, 0.075)))
    assert gen.num_anchors_per_location() == [2] + base.num_anchors_per_location()
    got = gen((320, 320), [(40, 40)] + SSDLITE320_MAPS)
    n8 = 40 * 40 * 2
    # location (0, 0) then (0, 1): centers 4 and 12 px, 16 and 24 px squares
    exp = [box(4, 4, 16, 16), box(4, 4, 24, 24), box(12, 4, 16, 16), box(12, 4, 24, 24)]
    torch.testing.assert_close(got[:4], torch.tensor(exp), rtol=0, atol=1e-4)
    torch.testing.assert_close(got[n8 - 1], torch.tensor(box(316, 316, 24, 24)), rtol=0, atol=1e-4)
    assert torch.equal(got[n8:], base((320, 320), SSDLITE320_MAPS))
    with pytest.raises(ValueError, match=r"describe 7: .*6 entries \+ the stride-8 map"):
        gen((320, 320), SSDLITE320_MAPS)
    with pytest.raises(ValueError, match="stride8_scales"):
        AnchorGenerator(AnchorConfig(stride8_scales=(0.05, 0.0)))


def test_paper_layout_non_square_input_keeps_ratio_one_boxes_square():
    # TF MultipleGridAnchorGenerator normalizes the base size by min(H, W): square in pixels.
    gen = AnchorGenerator(AnchorConfig(layout="paper", **TINY))
    got = gen((100, 200), [(1, 1), (1, 1)])
    torch.testing.assert_close(got[0], torch.tensor(box(100, 50, 10, 10)), rtol=0, atol=1e-4)
    torch.testing.assert_close(got[3], torch.tensor(box(100, 50, 90, 90)), rtol=0, atol=1e-4)


def test_cache_returns_same_tensor_and_cxcywh_matches():
    gen = AnchorGenerator(AnchorConfig())
    a = gen((320, 320), SSDLITE320_MAPS)
    assert gen((320, 320), [list(s) for s in SSDLITE320_MAPS]) is a
    assert gen((320, 480), [(20, 30), (10, 15), (5, 8), (3, 4), (2, 2), (1, 1)]) is not a
    c = gen.anchors_cxcywh_normalized((320, 320), SSDLITE320_MAPS)
    assert c.shape == a.shape and float(c[:, 2:].max()) <= 1.0
    xyxy = torch.cat([c[:, :2] - c[:, 2:] / 2, c[:, :2] + c[:, 2:] / 2], 1) * 320
    torch.testing.assert_close(xyxy, a, rtol=0, atol=1e-4)


def test_errors_name_the_problem():
    gen = AnchorGenerator(AnchorConfig())
    with pytest.raises(ValueError, match="6 entries"):
        gen((320, 320), SSDLITE320_MAPS[:5])
    with pytest.raises(ValueError, match="layout"):
        AnchorGenerator(AnchorConfig(layout="ssd300"))
