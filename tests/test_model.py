"""Every paper config builds, forwards, has the expected anchors, and learns on a repeated batch;
checkpoints round-trip safely; the Detector maps boxes back to each image's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import backbones
import ssdlite
from helpers import DETECTOR_CONFIGS, PAPER_CONFIGS
from ssdlite.model.anchors import AnchorGenerator
from ssdlite.model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from ssdlite.model.complexity import count_macs
from ssdlite.config import from_dict, load_config
from ssdlite.model.convert import torchvision_config
from ssdlite.deploy.detector import Detector, preprocess
from ssdlite.model.loss import SSDLiteLoss

# paper layout at 320: maps 20, 10, 5, 3, 2, 1 with 3, 6, 6, 6, 6, 6 boxes
PAPER_ANCHORS_320 = 20 * 20 * 3 + (10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1) * 6


@pytest.mark.parametrize("path", DETECTOR_CONFIGS, ids=lambda p: p.stem)
def test_config_builds_forwards_and_learns(path):
    torch.manual_seed(0)
    cfg = load_config(path, overrides=["model.num_classes=3", "model.input_size=[160,160]"])
    model = ssdlite.build_model(cfg)
    sizes = model.feature_sizes((160, 160))
    assert sizes == [(10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1)]
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        maps = model.eval().features(x)
    assert [tuple(m.shape[-2:]) for m in maps] == sizes  # conv arithmetic agrees with a real forward
    anchors = AnchorGenerator(cfg.model.anchors)((160, 160), sizes)
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 90.0, 120.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[40.0, 40.0, 150.0, 100.0], [5.0, 5.0, 30.0, 30.0]]), "labels": torch.tensor([0, 2])},
    ]
    losses = _train_steps(model, cfg, x, anchors, targets, 6)
    assert losses[-1] < losses[0]


def _train_steps(model, cfg, x, anchors, targets, steps):
    """SGD steps on one batch; checks the output shapes and that every loss is finite."""
    model.train()
    crit = SSDLiteLoss(cfg.loss, classification=model.classification, box_weights=model.box_weights)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    losses = []
    for _ in range(steps):
        cls, box = model(x)
        assert cls.shape == (x.shape[0], anchors.shape[0], cfg.model.num_classes + 1) and box.shape == (x.shape[0], anchors.shape[0], 4)
        loss = crit(cls, box, anchors, targets)["loss"]
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_anchor_count_at_320():
    cfg = load_config(PAPER_CONFIGS[0])
    model = ssdlite.build_model(cfg)
    anchors = AnchorGenerator(cfg.model.anchors)((320, 320), model.feature_sizes((320, 320)))
    assert anchors.shape == (PAPER_ANCHORS_320, 4)


def test_torchvision_layout_costs_more_than_paper():
    """Issue 3: the lowest map dominates the head; torchvision's layout 0.58 B MAdds vs the paper's ~0.51 B."""
    tv = count_macs(ssdlite.build_model(torchvision_config()), (320, 320)) / 1e9
    paper = count_macs(
        ssdlite.build_model(load_config(PAPER_CONFIGS[0].with_name("ssdlite320_mobilenet_v3_large_reduced.yaml"))), (320, 320)
    ) / 1e9
    assert abs(tv - 0.583) / 0.583 < 0.03, tv
    assert abs(paper - 0.51) / 0.51 < 0.05, paper


@pytest.mark.parametrize("top_down", [False, True])
def test_stride8_map_adds_a_head_and_learns(top_down):
    """model.anchors.stride8_scales: a 40x40 map first (+ the top-down context when asked); the other
    maps, their heads and the anchors after the stride-8 ones are the papers' layout."""
    torch.manual_seed(0)
    over = ["model.num_classes=3", "model.anchors.stride8_scales=[0.05,0.075]", f"model.stride8_top_down={str(top_down).lower()}"]
    cfg = load_config(PAPER_CONFIGS[0], overrides=over)
    model = ssdlite.build_model(cfg)
    assert (model.top_down is not None) == top_down and model.num_anchors[0] == 2
    sizes = model.feature_sizes((320, 320))
    assert sizes[0] == (40, 40) and sizes[1:] == ssdlite.build_model(load_config(PAPER_CONFIGS[0])).feature_sizes((320, 320))
    x = torch.randn(2, 3, 320, 320)
    with torch.no_grad():
        maps = model.eval().features(x)
    assert [tuple(m.shape[-2:]) for m in maps] == sizes
    anchors = AnchorGenerator(cfg.model.anchors)((320, 320), sizes)
    assert anchors.shape[0] == 40 * 40 * 2 + PAPER_ANCHORS_320
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 26.0, 38.0]]), "labels": torch.tensor([1])}] * 2  # a 16 x 18 px box
    losses = _train_steps(model, cfg, x, anchors, targets, 4)
    assert losses[-1] < losses[0]
    if top_down:  # the top-down path is trained (it feeds the stride-8 heads)
        assert model.top_down[0].weight.grad is not None and model.top_down[0].weight.grad.abs().sum() > 0


def test_tap_strides_and_the_backbone_checks():
    """The detector's backbone strides come from one function; SSDLite checks its taps by stride."""
    from ssdlite.model.network import SSDLite, tap_strides

    paper, small = from_dict({}).model, from_dict({}, ["model.anchors.stride8_scales=[0.05]"]).model
    assert tap_strides(paper) == backbones.DEFAULT_OUT_STRIDES == (16, 32) and tap_strides(small) == (8, 16, 32)
    model = ssdlite.build_model(small)
    assert model.backbone.strides == [8, 16, 32] and len(model.cls_heads) == 3 + len(model.extras)
    from ssdlite.config import AnchorConfig
    from ssdlite.model.anchors import AnchorGenerator

    three = AnchorGenerator(AnchorConfig(aspect_ratios=((2.0,), (2.0,), (2.0, 3.0))))  # 3, 4 and 6 boxes
    two = AnchorGenerator(AnchorConfig(aspect_ratios=((2.0,), (2.0,))))
    bb = backbones.create("mobilenet_v3_small", out_strides=(8, 32))
    with pytest.raises(ValueError, match=r"top_down needs backbone taps at strides 8 and 16 first, got strides \[8, 32\]"):
        SSDLite(bb, 2, three, [64], top_down=True)
    with pytest.raises(ValueError, match=r"num_anchors has 2 entries.*3 feature maps \(2 backbone taps at strides \[8, 32\] \+ 1"):
        SSDLite(bb, 2, two, [64])
    assert len(SSDLite(bb, 2, three, [64]).cls_heads) == 3


def test_bad_input_shape():
    model = ssdlite.build_model(from_dict({}, ["model.num_classes=2"]))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(3, 64, 64))


def test_checkpoint_round_trip_and_safety(tmp_path):
    cfg = from_dict({}, ["model.backbone.name=mobilenet_v3_small", "model.num_classes=2", "model.class_names=[cat, dog]"])
    model = ssdlite.build_model(cfg)
    save_checkpoint(tmp_path / "m.pt", model, cfg, epoch=3)
    loaded, cfg2 = load_model(tmp_path / "m.pt")
    assert cfg2 == cfg
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert load_checkpoint(tmp_path / "m.pt")["epoch"] == 3
    # a pickle payload is refused and never runs
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": "ssdlite", "model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    # another class count: the error names the tensors that differ
    other = from_dict({}, ["model.backbone.name=mobilenet_v3_small", "model.num_classes=5"])
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    state["config"] = ssdlite.config.to_dict(other)
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"cls_heads\.0\.1\.weight: file \(9, .*vs model \(18,"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_preprocess_stretch_and_letterbox():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = 255
    cfg = from_dict({}).preprocess
    batch, maps = preprocess([img], (64, 64), cfg)
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    assert batch.max() == 1.0 and batch.min() == -1.0
    assert (maps[0].sx, maps[0].sy) == (64 / 200, 64 / 100)
    lb = from_dict({}, ["preprocess.resize=letterbox"]).preprocess
    batch, maps = preprocess([img], (64, 64), lb)
    assert (maps[0].sx, maps[0].sy) == (64 / 200, 32 / 100)
    assert np.allclose(batch[0, :, 40:, :], (114 / 255 - 0.5) / 0.5)  # padding below the image
    boxes = np.array([[0.0, 0.0, 32.0, 16.0]], np.float32)
    assert np.allclose(maps[0].to_image(boxes), [[0, 0, 100, 50]])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((0, 10, 3), np.uint8), "empty image"),
        (np.zeros((10, 10, 3), np.float32), "dtype uint8"),
        (np.zeros((10, 10, 5), np.uint8), r"shape \(H, W, 3\)"),
        ("image.jpg", "numpy array"),
    ],
)
def test_detector_bad_inputs(bad, match):
    cfg = from_dict({}, ["model.backbone.name=mobilenet_v3_small", "model.num_classes=2", "model.input_size=[96,96]"])
    det = Detector(ssdlite.build_model(cfg), cfg)
    with pytest.raises(ValueError, match=match):
        det([bad])


def test_detector_accepts_gray_rgba_and_odd_sizes():
    cfg = from_dict({}, ["model.backbone.name=mobilenet_v3_small", "model.num_classes=2", "model.input_size=[96,96]",
                         "postprocess.score_thresh=0.0"])
    det = Detector(ssdlite.build_model(cfg), cfg)
    outs = det([np.zeros((50, 70), np.uint8), np.zeros((1, 1, 4), np.uint8), np.full((300, 40, 3), 7, np.uint8)])
    for out, (h, w) in zip(outs, [(50, 70), (1, 1), (300, 40)]):
        assert len(out) > 0
        assert out.boxes[:, [0, 2]].max() <= w and out.boxes[:, [1, 3]].max() <= h and out.boxes.min() >= 0
        assert out.boxes.dtype == np.float32 and out.labels.dtype == np.int64
        assert set(out.names) <= {"class_0", "class_1"}
