"""The ONNX Runtime back end: a .onnx alone reproduces the torch detections; clear errors; no torch import."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from helpers import SMALLEST_CONFIG, assert_runner_is_torch_free, read_rgb, write_plain_onnx
from ssdlite.apps.bench.lively import lively_random_model
from ssdlite.model.checkpoint import save_checkpoint
from ssdlite.config import load_config
from ssdlite.deploy.detector import Detector
from ssdlite.deploy.export import export_onnx
from ssdlite.deploy.verify import compare_detections
from ssdlite.deploy.onnx_runtime import OnnxRunner


@pytest.fixture(scope="module")
def exported(photo_set, tmp_path_factory):
    """(checkpoint, .onnx, RGB images): a lively small model exported, and the person and giraffe
    photos (or two generated ones) to run it on."""
    tmp = tmp_path_factory.mktemp("ort")
    images = [read_rgb(p) for p in photo_set.pick("person.jpg", "giraffe.jpg")]
    cfg = load_config(SMALLEST_CONFIG)
    ckpt = tmp / "model.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, images, seed=3), cfg)
    out = export_onnx(ckpt, None, tmp / "model.onnx")
    return ckpt, out, images


def test_onnx_file_alone_reproduces_torch_detections(exported, tmp_path):
    ckpt, out, images = exported
    alone = tmp_path / "elsewhere" / "only.onnx"  # no checkpoint, no config file beside it
    alone.parent.mkdir()
    shutil.copy(out, alone)
    ort_det = Detector.from_checkpoint(alone, threads=1, score_thresh=0.1)
    torch_det = Detector.from_checkpoint(ckpt, backend="torch", threads=1, score_thresh=0.1)
    assert ort_det.backend == "onnxruntime" and torch_det.backend == "torch"
    assert ort_det.class_names == torch_det.class_names and ort_det.input_size == (320, 320)
    np.testing.assert_array_equal(ort_det.anchors.numpy(), torch_det.anchors.numpy())
    total = 0
    for image in images:
        (a,), (b,) = torch_det([image]), ort_det([image])
        n, problems, _, _ = compare_detections(a, b, floor=0.1 + 1e-3)
        assert not problems, problems[:3]
        assert b.boxes.dtype == np.float32 and b.labels.dtype == np.int64
        assert b.names == [ort_det.class_names[i] for i in b.labels]
        total += n
    assert total >= 5


def test_runner_reads_config_and_refuses_graph_changing_overrides(exported):
    _, out, _ = exported
    runner = OnnxRunner(out, threads=1)
    assert runner.name == "onnxruntime" and runner.outputs == "raw"
    cfg = runner.config(["postprocess.score_thresh=0.4"])
    assert cfg.postprocess.score_thresh == 0.4 and cfg.model.backbone.name == "mobilenet_v3_small"
    with pytest.raises(ValueError, match="model.input_size is fixed"):
        runner.config(["model.input_size=[256,256]"])
    with pytest.raises(ValueError, match=r"expected a batch \(N, 3, 320, 320\)"):
        runner(np.zeros((1, 3, 300, 300), np.float32))


def test_non_ssdlite_onnx_gets_a_clear_error(tmp_path):
    plain = write_plain_onnx(tmp_path / "plain.onnx")
    with pytest.raises(ValueError, match=r"not an ssdlite export .*no metadata"):
        OnnxRunner(plain)
    with pytest.raises(ValueError, match="not an ssdlite export"):
        Detector.from_checkpoint(plain)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="garbage.onnx is not a loadable ONNX model"):
        OnnxRunner(garbage)
    with pytest.raises(FileNotFoundError, match="missing.onnx does not exist"):
        OnnxRunner(tmp_path / "missing.onnx")


def test_runner_does_not_import_torch(exported):
    _, out, _ = exported
    assert_runner_is_torch_free("ssdlite.deploy.onnx_runtime:OnnxRunner", out)
