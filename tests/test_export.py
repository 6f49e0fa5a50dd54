"""ONNX export: every paper config exports and matches PyTorch on photos (the real ones, or generated
ones in a user's clone); the NMS variant; metadata; dynamic batch; a mismatch is caught; the export CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from helpers import DETECTOR_CONFIGS, SMALLEST_CONFIG, load_tool, read_rgb
from ssdlite.model.anchors import AnchorGenerator
from ssdlite.apps.bench.lively import lively_random_model
from ssdlite.model.checkpoint import save_checkpoint
from ssdlite.config import load_config, to_dict
from ssdlite.data.names import class_names_of
from ssdlite.deploy.detector import preprocess
from ssdlite.deploy.export import export_onnx
from ssdlite.deploy.onnx_format import FORMAT
from ssdlite.deploy.verify import compare_detections, verify_export
from ssdlite.model import build_model
from ssdlite.deploy.onnx_runtime import OnnxRunner


@pytest.fixture(scope="module")
def photos(photo_set):
    """(paths, RGB images) of two photos: dog and horses, or two generated ones."""
    paths = photo_set.pick("dog.jpg", "horses.jpg")
    return paths, [read_rgb(p) for p in paths]


@pytest.fixture(scope="module")
def small_export(photos, tmp_path_factory):
    """(checkpoint, raw .onnx, cfg) of a lively V3-Small reduced model, shared by several tests."""
    tmp = tmp_path_factory.mktemp("small_export")
    cfg = load_config(SMALLEST_CONFIG)
    ckpt = tmp / "small.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, photos[1]), cfg)
    return ckpt, export_onnx(ckpt, None, tmp / "small.onnx"), cfg


@pytest.mark.parametrize("config", DETECTOR_CONFIGS, ids=lambda p: p.stem.replace("ssdlite320_", ""))
def test_every_paper_config_exports_and_matches_torch(config, photos, tmp_path):
    cfg = load_config(config)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, photos[1]), cfg)
    out = export_onnx(ckpt, None, tmp_path / "m.onnx")
    onnx.checker.check_model(str(out), full_check=True)
    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["cls_logits", "box_deltas"]
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node), "BN must be folded into the convs"
    report = verify_export(out, ckpt, photos[0], threads=1, score_thresh=0.2)
    assert report.ok, report.summary()
    assert report.compared >= 5, f"too few detections to compare: {report.summary()}"
    assert report.max_box_diff <= 0.5 and report.max_score_diff <= 1e-4


def test_stride8_map_exports_and_matches_torch(photos, tmp_path):
    """The optional small-object map (model.anchors.stride8_scales): one more head, same graph contract."""
    cfg = load_config(SMALLEST_CONFIG, ["model.anchors.stride8_scales=[0.05,0.075]", "model.stride8_top_down=true"])
    ckpt = tmp_path / "s8.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, photos[1]), cfg)
    out = export_onnx(ckpt, None, tmp_path / "s8.onnx")
    onnx.checker.check_model(str(out), full_check=True)
    proto = onnx.load(str(out))
    anchors = 40 * 40 * 2 + 20 * 20 * 3 + (10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1) * 6
    dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims[1:] == [anchors, cfg.model.num_classes + 1]
    report = verify_export(out, ckpt, photos[0], threads=1, score_thresh=0.2)
    assert report.ok, report.summary()
    assert report.compared >= 5, f"too few detections to compare: {report.summary()}"


def test_metadata_makes_the_file_self_describing(small_export):
    ckpt, out, cfg = small_export
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["ssdlite.format"] == FORMAT and meta["ssdlite.format_version"] == "1"
    assert json.loads(meta["ssdlite.config"]) == to_dict(cfg)
    assert json.loads(meta["ssdlite.class_names"]) == class_names_of(cfg.model)
    assert json.loads(meta["ssdlite.input_size"]) == [320, 320]
    pre = json.loads(meta["ssdlite.preprocess"])
    assert pre["mean"] == [0.5, 0.5, 0.5] and pre["resize"] == "stretch"
    post = json.loads(meta["ssdlite.postprocess"])
    assert post["nms_thresh"] == cfg.postprocess.nms_thresh and post["classification"] == "softmax"
    runner = OnnxRunner(out)
    expected = AnchorGenerator(cfg.model.anchors)((320, 320), runner.feature_sizes).numpy()
    assert runner.feature_sizes == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    np.testing.assert_array_equal(runner.anchors, expected)


def test_with_nms_graph_matches_our_postprocess(small_export, photos, tmp_path):
    ckpt, _, _ = small_export
    out = export_onnx(ckpt, None, tmp_path / "nms.onnx", with_nms=True, dynamic_batch=True)
    proto = onnx.load(str(out))
    assert any(n.op_type == "NonMaxSuppression" for n in proto.graph.node)
    assert [o.name for o in proto.graph.output] == ["boxes", "scores", "labels", "batch_index"]
    report = verify_export(out, ckpt, photos[0], threads=1)  # at the stored threshold (0.001): the cap binds
    assert report.ok, report.summary()
    assert report.compared >= 5
    # a batch of two gives each image's own detections (the per-image cap and batch_index work)
    runner = OnnxRunner(out, threads=1)
    batch, _ = preprocess(photos[1], runner.input_size, load_config(SMALLEST_CONFIG).preprocess)
    both = runner.detect(batch)
    for i in range(2):
        (boxes, scores, labels), = runner.detect(batch[i : i + 1])
        assert len(both[i][1]) == len(scores) <= 300
        np.testing.assert_allclose(both[i][0], boxes, atol=1e-3)
        np.testing.assert_array_equal(both[i][2], labels)


def test_dynamic_batch_export_runs_batches(small_export, photos, tmp_path):
    ckpt, fixed, cfg = small_export
    dyn = OnnxRunner(export_onnx(ckpt, None, tmp_path / "dyn.onnx", dynamic_batch=True), threads=1)
    assert dyn.batch_size is None and OnnxRunner(fixed).batch_size == 1
    batch, _ = preprocess(photos[1], (320, 320), cfg.preprocess)
    cls_b, box_b = dyn(batch)
    cls_1, box_1 = OnnxRunner(fixed, threads=1)(batch)  # a fixed-batch file runs image by image
    assert cls_b.shape == (2, 2034, 81) and box_b.shape == (2, 2034, 4)
    np.testing.assert_allclose(cls_b, cls_1, atol=1e-4)
    np.testing.assert_allclose(box_b, box_1, atol=1e-4)


def test_verify_catches_a_different_network(small_export, photos, tmp_path):
    ckpt, out, cfg = small_export
    other = tmp_path / "other.pt"
    save_checkpoint(other, lively_random_model(cfg, photos[1], seed=1), cfg)
    report = verify_export(out, other, photos[0], threads=1, score_thresh=0.2)
    assert not report.ok
    dog = photos[0][0].name  # dog.jpg among the real photos
    assert any(dog in m for m in report.problems) and any("raw cls_logits" in m for m in report.problems)


def test_compare_detections_tolerances():
    class D:
        def __init__(self, boxes, scores, labels):
            self.boxes, self.scores, self.labels = np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(labels)

    ref = D([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], [0.9, 0.5, 0.2005], [1, 2, 3])
    same = D([[0.3, 0, 10, 10], [5, 5, 20, 20.4], [1, 1, 2, 2]], [0.90005, 0.5, 0.1995], [1, 2, 3])
    n, problems, max_box, _ = compare_detections(ref, same, floor=0.201)
    assert n == 2 and not problems and max_box == pytest.approx(0.4, abs=1e-5)  # the 0.2005 one is under the floor
    moved = D([[0.6, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.5], [1, 2])
    assert len(compare_detections(ref, moved, floor=0.3)[1]) == 1  # 0.6 px > 0.5 px
    relabeled = D([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.5], [1, 4])
    msgs = [m for _, m in compare_detections(ref, relabeled, floor=0.3)[1]]
    assert any("missing" in m for m in msgs) and any("extra" in m for m in msgs)
    rescored = D([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9002, 0.5], [1, 2])
    assert len(compare_detections(ref, rescored, floor=0.3)[1]) == 1  # 2e-4 > 1e-4


def test_export_rejects_bad_arguments(small_export, tmp_path):
    ckpt, _, cfg = small_export
    with pytest.raises(ValueError, match="opset 9"):
        export_onnx(ckpt, None, tmp_path / "x.onnx", opset=9)
    with pytest.raises(ValueError, match="needs its config"):
        export_onnx(build_model(cfg, load_backbone_weights=False), None, tmp_path / "x.onnx")


def test_export_cli_verify_passes_and_fails(small_export, photos, tmp_path, capsys, monkeypatch):
    from ssdlite.apps.cli import run

    ckpt, _, cfg = small_export
    tool = load_tool("export")
    out = tmp_path / "cli.onnx"
    images = [str(p) for p in photos[0]]
    argv = ["--checkpoint", str(ckpt), "--out", str(out), "--verify", "--threads", "1", "--verify-score", "0.2", "--images", *images]
    assert run(tool.main, tool.build_parser(), argv) == 0
    assert "verify: OK" in capsys.readouterr().out and out.is_file()
    # an export that does not reproduce the checkpoint: exit 1 and the worst differences listed
    import ssdlite.deploy.export

    other = tmp_path / "other.pt"
    save_checkpoint(other, lively_random_model(cfg, photos[1], seed=2), cfg)
    real_export = ssdlite.deploy.export.export_onnx
    monkeypatch.setattr(ssdlite.deploy.export, "export_onnx", lambda ckpt, *a, **k: real_export(other, *a, **k))
    assert run(tool.main, tool.build_parser(), argv) == 1
    captured = capsys.readouterr()
    assert "verify: MISMATCH" in captured.out and photos[0][0].name in captured.out  # dog.jpg among the real photos
    assert "disagree" in captured.err
