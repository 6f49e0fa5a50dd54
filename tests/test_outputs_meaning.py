"""One place says what the outputs mean: the SSDLite module owns its anchors, box weights and score
function, and the trainer, the Detector, export and the ONNX Runtime back end take them from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ssdlite.config import from_dict
from ssdlite.deploy.detector import Detector
from ssdlite.deploy.export import export_onnx
from ssdlite.deploy.onnx_runtime import OnnxRunner
from ssdlite.model import build_model
from ssdlite.model.anchors import AnchorGenerator
from ssdlite.model.checkpoint import save_checkpoint

# not the defaults, so that a consumer reading the defaults (or another section) is caught
ODD = {
    "model": {
        "backbone": {"name": "mobilenet_v3_small", "width_mult": 0.5, "reduced_tail": True},
        "num_classes": 2, "input_size": [128, 160], "extra_channels": [64, 32, 32, 16],
        "classification": "focal", "box_weights": [5.0, 6.0, 2.0, 3.0],
        "anchors": {"layout": "torchvision", "min_ratio": 0.15, "aspect_ratios": [[2.0]] * 6},
    },
}


@pytest.fixture(scope="module")
def odd():
    cfg = from_dict(ODD)
    torch.manual_seed(0)
    return cfg, build_model(cfg, load_backbone_weights=False).eval()


def test_model_owns_anchors_box_weights_and_score_function(odd):
    cfg, model = odd
    assert model.input_size == (128, 160) and model.box_weights == (5.0, 6.0, 2.0, 3.0) and model.classification == "focal"
    expected = AnchorGenerator(cfg.model.anchors)((128, 160), model.feature_sizes((128, 160)))
    assert torch.equal(model.anchors(), expected)
    assert model.anchors() is model.anchors()  # computed once
    with torch.no_grad():
        cls_logits, _ = model(torch.zeros(1, 3, 128, 160))
    assert cls_logits.shape[1] == model.anchors().shape[0]
    other = model.anchors((160, 160))  # another input size: its own grid
    assert other.shape[0] == sum(h * w * n for (h, w), n in zip(model.feature_sizes((160, 160)), model.num_anchors))


def test_detector_export_and_runtime_read_the_model(odd, tmp_path):
    cfg, model = odd
    det = Detector(model, cfg, threads=1)
    assert torch.equal(det.anchors, model.anchors()) and det.box_weights == model.box_weights and det.classification == "focal"
    ckpt = tmp_path / "odd.pt"
    save_checkpoint(ckpt, model, cfg)
    onnx_path = export_onnx(ckpt, None, tmp_path / "odd.onnx")
    runner = OnnxRunner(onnx_path, threads=1)
    np.testing.assert_array_equal(runner.anchors, model.anchors().numpy())
    post = json.loads(runner.metadata["ssdlite.postprocess"])
    assert post["box_weights"] == [5.0, 6.0, 2.0, 3.0] and post["classification"] == "focal"
    assert runner.box_weights == model.box_weights and runner.classification == "focal"
    # the ONNX back end decodes with the file's anchors, not anchors recomputed from a config
    runner.anchors = runner.anchors + 1.0
    ort = Detector(None, runner.config(), runner=runner)
    np.testing.assert_array_equal(ort.anchors.numpy(), model.anchors().numpy() + 1.0)


def test_detector_decodes_with_the_models_box_weights(odd):
    cfg, model = odd
    det = Detector(model, cfg, threads=1, score_thresh=0.0, detections_per_img=5)
    a = model.anchors()
    logits = torch.full((1, a.shape[0], 3), -9.0)
    logits[0, 7, 1] = 9.0  # one confident anchor of class 0
    deltas = torch.zeros(1, a.shape[0], 4)
    deltas[0, 7] = torch.tensor([5.0, 6.0, 2.0, 3.0])  # one anchor width / height right, e^1 larger
    from ssdlite.deploy.detector import Letterbox

    (out,) = det.postprocess(logits, deltas, [Letterbox(1.0, 1.0, 160, 128)])
    x1, y1, x2, y2 = a[7].tolist()
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + w, (y1 + y2) / 2 + h
    e = float(np.e)
    box = [cx - w * e / 2, cy - h * e / 2, cx + w * e / 2, cy + h * e / 2]
    box = np.clip(box, 0, [160, 128, 160, 128])
    np.testing.assert_allclose(out.boxes[0], box, atol=1e-3)
    assert out.labels[0] == 0


def test_trainer_takes_anchors_and_loss_coding_from_the_model(tmp_path):
    from ssdlite.data.synthetic import make_shapes_dataset
    from ssdlite.train.trainer import Trainer

    make_shapes_dataset(tmp_path / "data", num_train=4, num_val=0, size=128, seed=1)
    data = tmp_path / "data"
    cfg = from_dict(ODD, [
        "model.num_classes=4", "train.workers=0", "train.batch_size=2",
        f"data.train.images={data}/train", f"data.train.annotations={data}/annotations/instances_train.json",
    ])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    model = trainer.model
    assert torch.equal(trainer.anchors, model.anchors())
    assert trainer.criterion.box_weights == (5.0, 6.0, 2.0, 3.0) and trainer.criterion.classification == "focal"


def test_detector_refuses_a_config_of_another_input_size(odd):
    cfg, model = odd
    other = from_dict(ODD, ["model.input_size=[160,160]"])
    with pytest.raises(ValueError, match=r"model.input_size \[160, 160\] is not the network's \[128, 160\]"):
        Detector(model, other, threads=1)
