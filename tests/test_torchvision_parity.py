"""Exactness against torchvision's ssdlite320_mobilenet_v3_large: converted weights give the same raw
head outputs, anchors, losses and detections (the proof that carries its 21.3 COCO mAP over to us)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from ssdlite.model.anchors import AnchorGenerator
from ssdlite.model.checkpoint import load_model
from ssdlite.model.convert import convert_torchvision_file
from ssdlite.deploy.detector import Detector
from ssdlite.model.loss import SSDLiteLoss


@pytest.fixture(scope="module")
def tv_and_ours(tmp_path_factory):
    torch.manual_seed(0)
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    with torch.no_grad():  # random, well-scaled weights everywhere so a wrong mapping cannot pass
        for m in tv.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
                if m.bias is not None:
                    torch.nn.init.normal_(m.bias, std=0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(std=0.1)
                m.running_mean.normal_(std=0.1)
                m.running_var.uniform_(0.75, 1.25)
    tv.eval()
    d = tmp_path_factory.mktemp("tv")
    src = d / "tv.pth"
    torch.save(tv.state_dict(), src)
    convert_torchvision_file(src, d / "ours.pt")
    model, cfg = load_model(d / "ours.pt")
    return tv, model.eval(), cfg, d / "ours.pt"


def _images(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (320, 320, 3), dtype=np.uint8) for _ in range(n)]


def _tv_raw(tv, x):
    features = list(tv.backbone(x).values())
    head = tv.head(features)
    return features, head["cls_logits"], head["bbox_regression"]


def test_raw_outputs_and_anchors_match(tv_and_ours):
    tv, ours, cfg, _ = tv_and_ours
    x = torch.rand(2, 3, 320, 320) * 2 - 1
    with torch.no_grad():
        features, tv_cls, tv_box = _tv_raw(tv, x)
        cls, box = ours(x)
    assert cls.shape == tv_cls.shape == (2, 3234, 91)
    assert (cls - tv_cls).abs().max() <= 1e-4
    assert (box - tv_box).abs().max() <= 1e-4
    # anchors: torchvision's DefaultBoxGenerator on the same feature maps
    from torchvision.models.detection.image_list import ImageList

    tv_anchors = tv.anchor_generator(ImageList(x, [(320, 320)] * 2), features)[0]
    sizes = ours.feature_sizes((320, 320))
    assert sizes == [tuple(f.shape[-2:]) for f in features]
    anchors = AnchorGenerator(cfg.model.anchors)((320, 320), sizes)
    assert torch.allclose(anchors, tv_anchors, atol=1e-4)


def test_detector_returns_torchvision_detections(tv_and_ours):
    tv, _, _, ckpt = tv_and_ours
    images = _images()
    det = Detector.from_checkpoint(ckpt)
    ours = det(images)
    with torch.no_grad():
        tv_out = tv([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images])
    for o, t in zip(ours, tv_out):
        assert len(o) == len(t["scores"]) > 0
        np.testing.assert_array_equal(o.labels, t["labels"].numpy() - 1)
        assert np.abs(o.boxes - t["boxes"].numpy()).max() <= 0.01
        assert np.abs(o.scores - t["scores"].numpy()).max() <= 1e-5
        assert o.names[0] == det.class_names[o.labels[0]]


def test_loss_matches_torchvision(tv_and_ours):
    tv, ours, cfg, _ = tv_and_ours
    tv.train()
    ours.train()
    x = torch.rand(2, 3, 320, 320) * 2 - 1
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 120.0, 200.0], [150.0, 30.0, 300.0, 100.0]]), "labels": torch.tensor([1, 18])},
        {"boxes": torch.tensor([[40.0, 40.0, 80.0, 90.0]]), "labels": torch.tensor([3])},
    ]
    try:
        with torch.no_grad():
            features, tv_cls, tv_box = _tv_raw(tv, x)
            from torchvision.models.detection.image_list import ImageList

            anchors = tv.anchor_generator(ImageList(x, [(320, 320)] * 2), features)
            tv_losses = tv.compute_loss(targets, {"cls_logits": tv_cls, "bbox_regression": tv_box}, anchors, [
                tv.proposal_matcher(__import__("torchvision").ops.box_iou(t["boxes"], a)) for t, a in zip(targets, anchors)
            ])
            cls, box = ours(x)
        ours_targets = [{"boxes": t["boxes"], "labels": t["labels"] - 1} for t in targets]
        losses = SSDLiteLoss(cfg.loss)(cls, box, anchors[0], ours_targets)
    finally:
        tv.eval()
        ours.eval()
    assert abs(float(losses["bbox_regression"]) - float(tv_losses["bbox_regression"])) <= 1e-5 * max(1.0, float(tv_losses["bbox_regression"]))
    assert abs(float(losses["classification"]) - float(tv_losses["classification"])) <= 1e-5 * max(1.0, float(tv_losses["classification"]))
