"""The OpenVINO back end: the .onnx alone gives the detections of ONNX Runtime and PyTorch, in fp32
by default (bf16 only when asked), quantized graphs report int8; clear errors; no torch import."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest

from helpers import SMALLEST_CONFIG, assert_runner_is_torch_free, read_rgb, run_tool, write_plain_onnx
from ssdlite.apps.bench.lively import lively_random_model
from ssdlite.config import load_config
from ssdlite.deploy.backends import MissingExtra, installed, make_runner
from ssdlite.deploy.detector import Detector, preprocess
from ssdlite.deploy.export import export_onnx
from ssdlite.deploy.onnx_runtime import OnnxRunner
from ssdlite.deploy.verify import compare_detections, verify_export
from ssdlite.model.checkpoint import save_checkpoint

needs_openvino = pytest.mark.skipif(not installed("openvino"), reason="openvino is not installed (pip install 'ssdlite[openvino]')")


def _conv_precisions(runner) -> set[str]:
    """The precisions OpenVINO's compiled model runs its convolutions in (its runtime graph)."""
    ops = runner.compiled.get_runtime_model().get_ops()
    return {str(op.get_rt_info()["runtimePrecision"].astype(str)) for op in ops if op.get_rt_info()["layerType"].astype(str) == "Convolution"}


def _runner(path, **kwargs):
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'ssdlite[openvino]')")
    from ssdlite.deploy.openvino_runtime import OpenVinoRunner

    return OpenVinoRunner(path, **kwargs)


@pytest.fixture(scope="module")
def exported(photo_set, tmp_path_factory):
    """(checkpoint, raw .onnx fixed batch 1, photo paths, RGB images) of a lively small model."""
    tmp = tmp_path_factory.mktemp("openvino")
    paths = photo_set.pick("person.jpg", "giraffe.jpg")
    images = [read_rgb(p) for p in paths]
    cfg = load_config(SMALLEST_CONFIG)
    ckpt = tmp / "model.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, images, seed=3), cfg)
    return ckpt, export_onnx(ckpt, None, tmp / "model.onnx"), paths, images


@needs_openvino
def test_openvino_matches_torch_and_onnxruntime_on_photos(exported):
    ckpt, out, paths, images = exported
    report = verify_export(out, ckpt, paths, backend="openvino", threads=1, score_thresh=0.1)
    assert report.ok, report.summary()
    assert report.compared >= 5
    ov_det = Detector.from_checkpoint(out, backend="openvino", threads=1, score_thresh=0.1)
    ort_det = Detector.from_checkpoint(out, backend="onnxruntime", threads=1, score_thresh=0.1)
    assert ov_det.backend == "openvino" and ov_det.runner.precision == "fp32"
    assert ov_det.class_names == ort_det.class_names and ov_det.input_size == ort_det.input_size
    np.testing.assert_array_equal(ov_det.anchors.numpy(), ort_det.anchors.numpy())
    for image in images:
        (a,), (b,) = ort_det([image]), ov_det([image])
        _, problems, _, _ = compare_detections(a, b, floor=0.1 + 1e-3)
        assert not problems, problems[:3]
        assert b.boxes.dtype == np.float32 and b.labels.dtype == np.int64


@needs_openvino
def test_fp32_is_asked_for_even_where_openvino_would_pick_bf16(exported):
    import openvino as ov

    _, out, _, images = exported
    batch, _ = preprocess(images[:1], (320, 320), load_config(SMALLEST_CONFIG).preprocess)
    ref = OnnxRunner(out, threads=1)(batch)
    exact = _runner(out, threads=1)
    assert exact.precision == "fp32" and exact.threads == 1 and _conv_precisions(exact) == {"f32"}
    assert str(exact.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert exact.compiled.get_property("NUM_STREAMS") == 1 and exact.compiled.get_property("ENABLE_CPU_PINNING") is False
    for a, b in zip(ref, exact(batch)):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-4)
    # what OpenVINO does by itself on this CPU (bf16 where it has bf16 units), and the opt-in
    device_default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    fast = _runner(out, threads=1, precision="bf16")
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert fast.precision == ("bf16" if "BF16" in caps else "fp32"), (fast.precision, caps)
    if fast.precision == "bf16":
        assert device_default == "bf16" and "bf16" in _conv_precisions(fast)
        cls_b, _ = fast(batch)
        assert np.abs(cls_b - ref[0]).max() > 1e-4  # bf16 really ran: the default would not be exact
    with pytest.raises(ValueError, match=r"precision='int4' is not one of"):
        _runner(out, precision="int4")


@needs_openvino
def test_metadata_and_overrides_as_onnxruntime(exported):
    _, out, _, _ = exported
    runner = _runner(out, threads=1)
    ort = OnnxRunner(out, threads=1)
    assert runner.name == "openvino" and runner.outputs == "raw" and runner.batch_size == 1
    assert runner.class_names == ort.class_names and runner.feature_sizes == ort.feature_sizes
    assert runner.box_weights == ort.box_weights and runner.classification == ort.classification
    assert runner.postprocess == ort.postprocess and runner.metadata == ort.metadata
    np.testing.assert_array_equal(runner.anchors, ort.anchors)
    cfg = runner.config(["postprocess.score_thresh=0.4"])
    assert cfg == ort.config(["postprocess.score_thresh=0.4"]) and cfg.postprocess.score_thresh == 0.4
    with pytest.raises(ValueError, match="model.input_size is fixed"):
        runner.config(["model.input_size=[256,256]"])
    with pytest.raises(ValueError, match=r"expected a batch \(N, 3, 320, 320\)"):
        runner(np.zeros((1, 3, 300, 300), np.float32))
    with pytest.raises(ValueError, match="has raw outputs"):
        runner.detect(np.zeros((1, 3, 320, 320), np.float32))


@needs_openvino
def test_with_nms_export_and_batches(exported, tmp_path):
    ckpt, fixed, paths, images = exported
    nms = export_onnx(ckpt, None, tmp_path / "nms.onnx", with_nms=True, dynamic_batch=True)
    report = verify_export(nms, ckpt, paths, backend="openvino", threads=1)  # at the stored threshold: the cap binds
    assert report.ok, report.summary()
    assert report.compared >= 5
    runner = _runner(nms, threads=1)
    assert runner.outputs == "nms" and runner.batch_size is None
    with pytest.raises(ValueError, match="postprocess settings are part of this graph"):
        runner.config(["postprocess.score_thresh=0.5"])
    batch, _ = preprocess(images, (320, 320), load_config(SMALLEST_CONFIG).preprocess)
    both = runner.detect(batch)  # a batch of two: each image's own detections
    ort_both = OnnxRunner(nms, threads=1).detect(batch)
    for i in range(2):
        (boxes, scores, labels), = runner.detect(batch[i : i + 1])
        np.testing.assert_allclose(both[i][0], boxes, atol=1e-3)
        np.testing.assert_array_equal(both[i][2], labels)
        assert len(both[i][1]) == len(ort_both[i][1])
        np.testing.assert_allclose(np.sort(both[i][1]), np.sort(ort_both[i][1]), atol=1e-4)
    # a dynamic-batch raw file runs the batch at once, the fixed-batch one image by image: same outputs
    dyn = _runner(export_onnx(ckpt, None, tmp_path / "dyn.onnx", dynamic_batch=True), threads=1)
    assert dyn.batch_size is None
    cls_b, box_b = dyn(batch)
    cls_1, box_1 = _runner(fixed, threads=1)(batch)
    assert cls_b.shape == (2, 2034, 81) and box_b.shape == (2, 2034, 4)
    np.testing.assert_allclose(cls_b, cls_1, atol=1e-4)
    np.testing.assert_allclose(box_b, box_1, atol=1e-4)


@needs_openvino
def test_bad_files_are_one_line_naming_them(tmp_path):
    plain = write_plain_onnx(tmp_path / "plain.onnx")
    with pytest.raises(ValueError, match=r"plain.onnx is not an ssdlite export .*no metadata"):
        _runner(plain)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="garbage.onnx is not a loadable ONNX model") as e:
        _runner(garbage)
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="missing.onnx does not exist"):
        _runner(tmp_path / "missing.onnx")
    assert run_tool("detect", ["--checkpoint", garbage, "--source", tmp_path, "--backend", "openvino"]) == 2


def test_without_openvino_one_line_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails, installed or not
    with pytest.raises(MissingExtra) as e:
        make_runner("openvino", tmp_path / "m.onnx")
    assert "\n" not in str(e.value) and "pip install 'ssdlite[openvino]'" in str(e.value)


@needs_openvino
def test_quantized_graph_reports_int8(exported, tmp_path):
    quantization = pytest.importorskip("onnxruntime.quantization")
    _, out, _, images = exported
    batch, _ = preprocess(images, (320, 320), load_config(SMALLEST_CONFIG).preprocess)

    class Frames(quantization.CalibrationDataReader):
        def __init__(self):
            self.left = [{"images": batch[i : i + 1]} for i in range(2)]

        def get_next(self):
            return self.left.pop() if self.left else None

    q = tmp_path / "int8.onnx"
    quantization.quantize_static(str(out), str(q), Frames(), quant_format=quantization.QuantFormat.QDQ)
    qmodel = onnx.load(str(q))  # keep the ssdlite metadata, as an int8 export does
    onnx.helper.set_model_props(qmodel, {p.key: p.value for p in onnx.load(str(out)).metadata_props})
    onnx.save(qmodel, str(q))
    runner, ort = _runner(q, threads=1), OnnxRunner(q, threads=1)
    assert runner.precision == "int8" and ort.precision == "int8" and OnnxRunner(out).precision == "fp32"
    cls_ov, _ = runner(batch[:1])
    cls_ort, _ = ort(batch[:1])
    cls_f32, _ = OnnxRunner(out, threads=1)(batch[:1])
    assert _conv_precisions(runner) <= {"u8", "i8"}  # OpenVINO really runs the convolutions in int8
    # int8 arithmetic (a random-weight model calibrated on two images): close to fp32, not equal
    for cls_q in (cls_ov, cls_ort):
        assert np.corrcoef(cls_q.ravel(), cls_f32.ravel())[0, 1] > 0.85
        assert np.abs(cls_q - cls_f32).mean() < 0.5 * np.abs(cls_f32).mean()


@needs_openvino
def test_detect_and_eval_cli_run_on_openvino(exported, shapes_data, tmp_path, capsys):
    ckpt, out, paths, _ = exported
    lines = tmp_path / "det.jsonl"
    assert run_tool("detect", ["--checkpoint", out, "--source", paths[0], "--backend", "openvino", "--threads", "1",
                               "--score", "0.1", "--json", lines]) == 0
    assert "(openvino fp32)" in capsys.readouterr().err
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    (expected,) = Detector.from_checkpoint(out, backend="onnxruntime", threads=1, score_thresh=0.1)([read_rgb(paths[0])])
    assert len(rows) == 1 and len(rows[0]["detections"]) == len(expected) >= 1
    # eval on the shapes val split (random weights: the point is that both back ends give the same results)
    results = {}
    for backend in ("onnxruntime", "openvino"):
        js = tmp_path / f"{backend}.json"
        assert run_tool("eval", ["--checkpoint", out, "--backend", backend, "--images", shapes_data.val_images,
                                 "--annotations", shapes_data.val_annotations, "--score-thresh", "0.05",
                                 "--json-out", js, "--plot", tmp_path / f"{backend}.png", "--no-per-class",
                                 "--results-out", tmp_path / f"{backend}_dt.json"]) == 0
        results[backend] = json.loads(js.read_text()), json.loads((tmp_path / f"{backend}_dt.json").read_text())
    (ov_metrics, ov_dt), (ort_metrics, ort_dt) = results["openvino"], results["onnxruntime"]
    assert len(ov_dt) == len(ort_dt) >= 10  # the same detections, scored the same
    key = lambda d: (d["image_id"], d["category_id"], -d["score"])  # noqa: E731
    for a, b in zip(sorted(ov_dt, key=key), sorted(ort_dt, key=key)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4) and a["bbox"] == pytest.approx(b["bbox"], abs=0.05)
    assert ov_metrics["stats"] == pytest.approx(ort_metrics["stats"], abs=1e-3)


def test_runner_does_not_import_torch(exported):
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'ssdlite[openvino]')")
    _, out, _, _ = exported
    assert_runner_is_torch_free("ssdlite.deploy.openvino_runtime:OpenVinoRunner", out)


def test_latency_benchmark_rows_name_the_precision(exported, tmp_path):
    from ssdlite.apps.bench.latency import ours_specs
    from ssdlite.apps.bench.latency_report import format_table, summarize

    import shutil

    ckpt, _, _, _ = exported
    shutil.copy(ckpt, tmp_path / "m.pt")  # the contender's checkpoint, already written
    common = {"openvino_precisions": ["fp32", "bf16"], "threads": 1}
    specs = ours_specs("m", None, None, "openvino", common, tmp_path) + ours_specs("m", None, None, "onnxruntime", common, tmp_path)
    assert [(s["backend"], s["precision"], s["column"]) for s in specs] == [
        ("openvino", "fp32", "openvino"), ("openvino", "bf16", "openvino-bf16"), ("onnxruntime", "fp32", "onnxruntime")]
    assert all(s["checkpoint"] == str(tmp_path / "m.onnx") for s in specs) and (tmp_path / "m.onnx").is_file()
    ms = {s: [1.0, 2.0, 3.0] for s in ("preprocess", "network", "postprocess", "end_to_end")}
    ran = {"openvino": "fp32", "openvino-bf16": "bf16", "onnxruntime": "fp32"}
    rounds = [{f"m / {s['column']}": {"ms": ms, "detections": 1.0, "precision": ran[s["column"]]} for s in specs}]
    rows = summarize(specs, rounds)
    assert [(r["backend"], r["precision"]) for r in rows] == list(ran.items())
    table = format_table(rows).splitlines()
    assert "prec" in table[0] and table[3].split()[:4] == ["m", "/", "openvino-bf16", "bf16"]


def test_the_shared_reader_reads_what_onnx_reads(exported, tmp_path):
    """scan_onnx (used by every ONNX back end, no runtime) against the onnx package's own parser."""
    from ssdlite.deploy.onnx_reader import read_metadata, scan_onnx

    ckpt, out, _, _ = exported
    for path in (out, export_onnx(ckpt, None, tmp_path / "nms.onnx", with_nms=True)):
        proto = onnx.load(str(path))
        meta, ops = scan_onnx(path)
        assert meta == {p.key: p.value for p in proto.metadata_props} and read_metadata(path) == meta
        assert ops == {n.op_type for n in proto.graph.node}
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.onnx is not a loadable ONNX model"):
        scan_onnx(truncated)
