"""LiteRT (TFLite) export and back end: a .tflite alone reproduces the PyTorch outputs in LiteRT's own
interpreter (fp32 to 1e-4 like ONNX; int8 within ``INT8_TOLERANCE``), carries the metadata, runs in
``Detector`` / ``ssdlite detect`` / ``ssdlite eval``; a missing extra is one line.

The tests that need ``litert-torch`` / ``ai-edge-litert`` (``pip install 'ssdlite[tflite]'``) skip
without them; the missing-extra tests run either way.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from helpers import SMALLEST_CONFIG, assert_runner_is_torch_free, read_rgb, run_tool, shapes_config, write_config
from ssdlite.apps.bench.lively import lively_random_model
from ssdlite.config import load_config
from ssdlite.deploy.backends import MissingExtra
from ssdlite.model.checkpoint import save_checkpoint


def _needs_extra() -> None:
    pytest.importorskip("litert_torch", reason="the LiteRT converter is the 'tflite' extra: pip install 'ssdlite[tflite]'")
    pytest.importorskip("ai_edge_litert", reason="the LiteRT interpreter is the 'tflite' extra: pip install 'ssdlite[tflite]'")


@pytest.fixture(scope="module")
def small(photo_set, tmp_path_factory):
    """(checkpoint, fp32 .tflite, photo paths): a lively V3-Small reduced model (BN statistics from the
    photos it is verified on, as a trained model's come from its kind of images) exported once."""
    _needs_extra()
    from ssdlite.deploy.tflite_export import export_tflite

    tmp = tmp_path_factory.mktemp("tflite")
    paths = list(photo_set.paths)
    cfg = load_config(SMALLEST_CONFIG)
    ckpt = tmp / "small.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, [read_rgb(p) for p in paths], candidates=10), cfg)
    return ckpt, export_tflite(ckpt, None, tmp / "small.tflite"), paths


@pytest.fixture(scope="module")
def small_int8(small, photo_set, tmp_path_factory):
    """The same model as full-integer int8 (int8 input and outputs), calibrated on the photos' folder."""
    from ssdlite.deploy.tflite_export import export_tflite

    ckpt, _, _ = small
    return export_tflite(ckpt, None, tmp_path_factory.mktemp("tflite_int8") / "small_int8.tflite", int8=True,
                         calibration=photo_set.folder, threads=1)


def test_fp32_file_matches_torch_like_onnx(small):
    """The ONNX tolerances: detections to 0.5 px / 1e-4 score, raw outputs to 1e-3 + 1e-4 * scale."""
    from ssdlite.deploy.verify import verify_export

    ckpt, out, paths = small
    report = verify_export(out, ckpt, paths, threads=1, score_thresh=0.2)
    assert report.ok, report.summary()
    assert report.compared >= 5, f"too few detections to compare: {report.summary()}"
    assert report.max_box_diff <= 0.5 and report.max_score_diff <= 1e-4
    assert report.max_logit_diff <= 2e-3 and report.max_delta_diff <= 2e-3


def test_graph_is_channels_last_without_transposes(small):
    """litert-torch keeps every op a LiteRT builtin, NHWC input, named outputs, no TRANSPOSE left."""
    from ai_edge_litert import schema_py_generated as schema

    from ssdlite.deploy.litert_runtime import LiteRtRunner

    _, out, _ = small
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(out.read_bytes(), 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = {names[model.operatorCodes[op.opcodeIndex].builtinCode] for op in model.subgraphs[0].operators}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH"} <= ops and "TRANSPOSE" not in ops, ops
    runner = LiteRtRunner(out, threads=1)
    assert runner._input.shape == (1, 320, 320, 3) and runner.io_dtype == "float32" and runner.precision == "fp32"


def test_metadata_round_trip(small):
    """Every key of build_metadata is inside the file, read back without the checkpoint; NHWC recorded."""
    from ssdlite.deploy.litert_runtime import LiteRtRunner
    from ssdlite.deploy.onnx_format import build_metadata
    from ssdlite.deploy.tflite_format import read_metadata
    from ssdlite.model.checkpoint import load_model

    ckpt, out, _ = small
    model, cfg = load_model(ckpt)
    expected = build_metadata(cfg, model.feature_sizes(cfg.model.input_size), model.anchors().numpy(), "raw",
                              box_weights=model.box_weights, classification=model.classification)
    meta = read_metadata(out)
    assert set(expected) <= set(meta)
    for key in set(expected) - {"ssdlite.preprocess"}:
        assert meta[key] == expected[key], key
    pre, want = json.loads(meta["ssdlite.preprocess"]), json.loads(expected["ssdlite.preprocess"])
    assert pre.pop("layout") == "NHWC" and want.pop("layout") == "NCHW" and pre == want
    runner = LiteRtRunner(out, threads=1)
    np.testing.assert_array_equal(runner.anchors, model.anchors().numpy())
    assert runner.class_names[:2] == ["person", "bicycle"] and runner.input_size == (320, 320)
    assert runner.config().model == cfg.model and runner.box_weights == tuple(model.box_weights)
    assert runner.config(["postprocess.score_thresh=0.4"]).postprocess.score_thresh == 0.4
    with pytest.raises(ValueError, match="model.input_size is fixed"):
        runner.config(["model.input_size=[256,256]"])
    with pytest.raises(ValueError, match=r"expected a batch \(N, 3, 320, 320\)"):
        runner(np.zeros((1, 3, 300, 300), np.float32))


def test_int8_file_is_full_integer_and_close_to_torch(small, small_int8):
    """int8 weights, activations, input and outputs, and raw outputs close to PyTorch's.

    Random weights are the worst case for int8 (the rounding of every layer compounds, nothing in the
    weights is redundant), so the detection pairing of INT8_TOLERANCE is not asserted here (a trained
    model meets it: see README, LiteRT); the raw outputs must still follow the network: mean |diff|
    relative to their spread within the bounds below (measured 0.02-0.09 for the logits on real photos).
    """
    from ssdlite.deploy.litert_runtime import LiteRtRunner
    from ssdlite.deploy.tflite_format import read_metadata
    from ssdlite.deploy.verify import verify_export

    ckpt, fp32, paths = small
    runner = LiteRtRunner(small_int8, threads=1)
    assert runner.precision == "int8" and runner.io_dtype == "int8"
    assert runner.quantization["io"] == "int8" and runner.quantization["calibration_images"] == len(paths)
    assert small_int8.stat().st_size < 0.45 * fp32.stat().st_size
    assert json.loads(read_metadata(small_int8)["ssdlite.quantization"])["tool"].startswith("ai-edge-quantizer")
    report = verify_export(small_int8, ckpt, paths, threads=1, score_thresh=0.2)
    assert report.matched is not None and "int8, paired at IoU >= 0.5" in report.summary()
    assert report.raw_rel_diff["cls_logits"] <= 0.2 and report.raw_rel_diff["box_deltas"] <= 0.6, report.summary()
    assert report.max_logit_diff > 1e-2  # the fp32 tolerance would (rightly) fail an int8 file


def test_int8_verdict_pairs_detections_and_catches_another_network(small, photo_set, tmp_path, monkeypatch):
    """The int8 criterion itself: the same network passes with every detection paired; another one fails."""
    import ssdlite.deploy.litert_runtime as litert_runtime
    from ssdlite.deploy.verify import verify_export

    ckpt, fp32, paths = small
    monkeypatch.setattr(litert_runtime, "read_quantization", lambda meta: {"io": "float"})  # judged as an int8 file
    report = verify_export(fp32, ckpt, paths, threads=1, score_thresh=0.2)
    assert report.ok and report.matched == report.compared >= 5, report.summary()
    other = tmp_path / "other.pt"
    cfg = load_config(SMALLEST_CONFIG)
    save_checkpoint(other, lively_random_model(cfg, [read_rgb(p) for p in paths], seed=5, candidates=10), cfg)
    report = verify_export(fp32, other, paths, threads=1, score_thresh=0.2)
    assert not report.ok and report.matched < 0.5 * report.compared, report.summary()


def test_int8_with_float_io_keeps_float_ends(small, photo_set, tmp_path):
    from ssdlite.deploy.litert_runtime import LiteRtRunner
    from ssdlite.deploy.tflite_export import export_tflite

    ckpt, _, paths = small
    out = export_tflite(ckpt, None, tmp_path / "f.tflite", int8=True, calibration=photo_set.folder, calibration_count=3,
                        int8_io="float", threads=1)
    runner = LiteRtRunner(out, threads=1)
    assert runner.io_dtype == "float32" and runner.precision == "int8" and runner.quantization["calibration_images"] == 3
    cls_logits, box_deltas = runner(np.zeros((2, 3, 320, 320), np.float32))  # a batch runs image by image
    assert cls_logits.shape == (2, 2034, 81) and box_deltas.dtype == np.float32
    np.testing.assert_array_equal(cls_logits[0], cls_logits[1])


def test_detector_and_detect_cli_run_the_tflite_alone(small, tmp_path):
    import shutil

    from ssdlite.deploy.detector import Detector

    ckpt, out, paths = small
    alone = tmp_path / "elsewhere" / "only.tflite"
    alone.parent.mkdir()
    shutil.copy(out, alone)
    det = Detector.from_checkpoint(alone, threads=1, score_thresh=0.2)
    ref = Detector.from_checkpoint(ckpt, backend="torch", threads=1, score_thresh=0.2)
    assert det.backend == "litert" and det.class_names == ref.class_names
    (a,), (b,) = ref([read_rgb(paths[0])]), det([read_rgb(paths[0])])
    assert len(a.scores) == len(b.scores) and b.boxes.dtype == np.float32 and b.labels.dtype == np.int64
    np.testing.assert_allclose(b.scores, a.scores, atol=1e-4)
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(paths[0], folder / paths[0].name)
    assert run_tool("detect", ["--checkpoint", alone, "--source", folder, "--backend", "litert", "--threads", "1",
                               "--score", "0.2", "--save", tmp_path / "out", "--json", tmp_path / "dets.jsonl"]) == 0
    lines = (tmp_path / "dets.jsonl").read_text().splitlines()
    assert len(lines) == 1 and len(json.loads(lines[0])["detections"]) == len(b.scores)


def test_eval_cli_on_litert_gives_the_torch_ap(make_shapes, tmp_path):
    """`ssdlite eval --backend litert` end to end: the same COCO AP as the torch back end on a tiny model."""
    _needs_extra()
    from ssdlite.data.images import load_image
    from ssdlite.deploy.tflite_export import export_tflite

    data = make_shapes(4, 4, 128)
    cfg = load_config(write_config(tmp_path / "tiny.yaml", shapes_config(data)))
    images = [load_image(p) for p in sorted(data.val_images.glob("*"))]
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, images, candidates=5), cfg)
    out = export_tflite(ckpt, None, tmp_path / "tiny.tflite")
    stats = {}
    for backend, model in (("torch", ckpt), ("litert", out)):
        json_out = tmp_path / f"{backend}.json"
        assert run_tool("eval", ["--checkpoint", model, "--images", data.val_images, "--annotations", data.val_annotations,
                                 "--backend", backend, "--threads", "1", "--no-per-class", "--json-out", json_out]) == 0
        stats[backend] = json.loads(json_out.read_text())["stats"]
    np.testing.assert_allclose(stats["litert"], stats["torch"], atol=1e-3)


def test_export_cli_verify_and_bad_arguments(small, photo_set, tmp_path, capsys):
    ckpt, _, paths = small
    out = tmp_path / "cli.tflite"
    assert run_tool("export", ["--checkpoint", ckpt, "--out", out, "--verify", "--images", *paths[:2], "--verify-score", "0.2",
                               "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "(tflite," in printed and "fp32" in printed and "verify: OK" in printed
    assert run_tool("export", ["--checkpoint", ckpt, "--out", tmp_path / "x.tflite", "--int8"]) != 0
    assert "the config's val split is not on this machine" in capsys.readouterr().err  # --calibration val (the default)
    assert run_tool("export", ["--checkpoint", ckpt, "--out", tmp_path / "x.tflite", "--int8", "--calibration", tmp_path / "none"]) != 0
    assert "calibration folder" in capsys.readouterr().err and not (tmp_path / "x.tflite").exists()


def test_int8_export_under_the_ap_bound(small, photo_set, tmp_path, capsys):
    """export --int8 --format tflite: fp32 and int8 scored on annotations, the AP record in the file; without
    annotations the bound cannot be measured (an error unless --max-ap-drop none)."""
    from ssdlite.deploy.detector import Detector
    from ssdlite.deploy.litert_runtime import LiteRtRunner

    ckpt, _, paths = small
    from ssdlite.data.names import category_ids_of

    det = Detector.from_checkpoint(ckpt, threads=1, score_thresh=0.3)
    cats = category_ids_of(det.cfg.model)
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in cats]}
    for i, (p, d) in enumerate(zip(paths, det([read_rgb(p) for p in paths]))):
        h, w = read_rgb(p).shape[:2]
        gt["images"].append({"id": i + 1, "file_name": p.name, "height": h, "width": w})
        for (x1, y1, x2, y2), label in zip(d.boxes.tolist(), d.labels.tolist()):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": cats[label],
                                      "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    assert gt["annotations"], "the lively model should find objects"
    ann = tmp_path / "pseudo_gt.json"
    ann.write_text(json.dumps(gt))
    out = tmp_path / "m_int8.tflite"
    assert run_tool("export", ["--checkpoint", ckpt, "--out", out, "--int8", "--calibration", photo_set.folder]) != 0
    assert "cannot be measured" in capsys.readouterr().err and not out.exists()
    common = ["--checkpoint", ckpt, "--out", out, "--int8", "--calibration", photo_set.folder, "--val", ann, "--threads", "1",
              "--json-out", tmp_path / "r.json"]
    # random weights are the worst case of int8 (they lost 0.40 AP on the generated photos, 0.95 on the real ones):
    # refused under a 0.05 bound, nothing written
    assert run_tool("export", [*common, "--max-ap-drop", "0.05"]) != 0
    assert "refused to write" in capsys.readouterr().err and not out.exists()
    refused = json.loads((tmp_path / "r.json").read_text())
    assert refused["path"] is None and refused["attempts"][0]["recipe"] == "tflite-int8"
    assert run_tool("export", [*common, "--max-ap-drop", "1"]) == 0
    printed = capsys.readouterr().out
    assert "int8: fp32 AP" in printed and "int8: chose tflite-int8" in printed
    q = LiteRtRunner(out, threads=1).quantization
    report = json.loads((tmp_path / "r.json").read_text())
    assert q["backend_measured"] == "litert" and q["int8_ap"] == pytest.approx(report["attempts"][0]["ap"])
    assert q["fp32_ap"] == pytest.approx(refused["fp32_ap"]) and q["max_ap_drop"] == 1 and q["tool"].startswith("ai-edge-quantizer")


def test_not_an_ssdlite_tflite_gets_a_clear_error(small, tmp_path):
    from ssdlite.deploy.litert_runtime import LiteRtRunner
    from ssdlite.deploy.tflite_format import with_metadata

    _, out, _ = small
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"this is not a flatbuffer")
    with pytest.raises(ValueError, match="garbage.tflite is not a LiteRT"):
        LiteRtRunner(garbage)
    with pytest.raises(FileNotFoundError, match="missing.tflite does not exist"):
        LiteRtRunner(tmp_path / "missing.tflite")
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(with_metadata(out.read_bytes(), {"ssdlite.format": "something-else"}))
    with pytest.raises(ValueError, match=r"plain.tflite is not an ssdlite export"):
        LiteRtRunner(plain)


def test_runner_does_not_import_torch(small):
    _, out, _ = small
    assert_runner_is_torch_free("ssdlite.deploy.litert_runtime:LiteRtRunner", out)


def test_missing_extra_is_one_line_naming_it(monkeypatch, tmp_path, capsys):
    """Without the extra (simulated: the imports fail), export and the back end say how to get it, in one line."""
    from ssdlite.deploy.backends import make_runner
    from ssdlite.deploy.formats import EXPORT_FORMATS, exporter

    monkeypatch.setitem(sys.modules, "litert_torch", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    with pytest.raises(MissingExtra, match=r"pip install 'ssdlite\[tflite\]'"):
        exporter(EXPORT_FORMATS["tflite"])
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(MissingExtra, match=r"the litert back end needs the Python package 'ai_edge_litert'"):
        make_runner("litert", model)
    ckpt = tmp_path / "m.pt"
    cfg = load_config(SMALLEST_CONFIG)
    save_checkpoint(ckpt, lively_random_model(cfg, [np.full((64, 64, 3), 128, np.uint8)] * 2), cfg)
    assert run_tool("export", ["--checkpoint", ckpt, "--out", tmp_path / "m.tflite"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "export --format tflite needs the Python package 'litert_torch'" in err[0]
    assert "pip install 'ssdlite[tflite]'" in err[0]
