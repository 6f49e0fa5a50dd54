"""ncnn export (pnnx) and the ncnn back end: the three files alone reproduce PyTorch's outputs and
detections; metadata round trip; Detector, detect and eval on ncnn; clear errors; no torch import."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from helpers import SMALLEST_CONFIG, assert_runner_is_torch_free, read_rgb, run_tool, tiny_config
from ssdlite.apps.bench.lively import lively_random_model
from ssdlite.config import from_dict, load_config, to_dict
from ssdlite.deploy.backends import MissingExtra, default_backend, make_runner
from ssdlite.deploy.detector import Detector, preprocess
from ssdlite.deploy.formats import format_for
from ssdlite.deploy.onnx_format import build_metadata
from ssdlite.deploy.verify import compare_detections, verify_export
from ssdlite.model.checkpoint import load_model, save_checkpoint


def _need_ncnn() -> None:
    pytest.importorskip("pnnx", reason="the ncnn extra is not installed (pip install 'ssdlite[ncnn]')")
    pytest.importorskip("ncnn", reason="the ncnn extra is not installed (pip install 'ssdlite[ncnn]')")


@pytest.fixture(scope="module")
def exported(photo_set, tmp_path_factory):
    """(checkpoint, model.param, RGB images): a lively V3-Small reduced model exported to ncnn."""
    _need_ncnn()
    from ssdlite.deploy.export_ncnn import export_ncnn

    tmp = tmp_path_factory.mktemp("ncnn")
    images = [read_rgb(p) for p in photo_set.pick("person.jpg", "giraffe.jpg")]
    cfg = load_config(SMALLEST_CONFIG)
    ckpt = tmp / "model.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, images, seed=3), cfg)
    out = export_ncnn(ckpt, None, tmp / "out" / "model.param")
    return ckpt, out, images


def test_export_writes_param_bin_json_and_nothing_else(exported):
    ckpt, out, _ = exported
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.bin", "model.json", "model.param"]  # pnnx's files cleaned up
    assert out.read_text().startswith("7767517")  # ncnn's param magic
    model, cfg = load_model(ckpt)
    h, w = cfg.model.input_size
    expected = build_metadata(cfg, model.feature_sizes((h, w)), model.anchors((h, w)).numpy(), "raw",
                              box_weights=model.box_weights, classification=model.classification)
    assert json.loads(out.with_suffix(".json").read_text()) == expected  # exactly the ONNX export's keys and values
    runner = make_runner("ncnn", out, threads=1)
    assert runner.class_names == json.loads(expected["ssdlite.class_names"]) and runner.input_size == (h, w)
    np.testing.assert_array_equal(runner.anchors, model.anchors((h, w)).numpy())
    assert to_dict(runner.config()) == to_dict(cfg)


def test_ncnn_matches_torch_raw_and_detections(exported, photo_set):
    ckpt, out, _ = exported
    report = verify_export(out, ckpt, photo_set.pick("person.jpg", "dog.jpg"), backend="ncnn", threads=1, score_thresh=0.1)
    assert report.ok, report.summary()
    assert report.compared >= 5, report.summary()
    assert report.max_logit_diff < 1e-3 and report.max_box_diff <= 0.05 and report.max_score_diff <= 1e-4, report.summary()


def test_fp16_option_is_close_but_not_exact(exported):
    """ncnn's own default (fp16 storage and arithmetic) is what ``fp16=True`` gives: ~1e-2 off, not float32-exact."""
    from ssdlite.deploy.ncnn_runtime import NcnnRunner

    ckpt, out, images = exported
    model, cfg = load_model(ckpt)
    batch, _ = preprocess(images[:1], cfg.model.input_size, cfg.preprocess)
    import torch

    with torch.no_grad():
        ref = [t.numpy()[0] for t in model.eval()(torch.from_numpy(batch))]
    exact = NcnnRunner(out, threads=1)(batch)
    half = NcnnRunner(out, threads=1, fp16=True)(batch)
    exact, half = [x[0] for x in exact], [x[0] for x in half]
    scale = max(float(np.abs(r).max()) for r in ref)
    exact_diff = max(float(np.abs(a - r).max()) for a, r in zip(exact, ref))
    half_diff = max(float(np.abs(a - r).max()) for a, r in zip(half, ref))
    assert exact_diff < 1e-3 and half_diff < 0.05 * scale, (exact_diff, half_diff, scale)


def test_detector_detect_and_the_format_tables(exported, tmp_path, capsys):
    ckpt, out, images = exported
    assert default_backend(out) == "ncnn" and format_for(None, "m.param").name == "ncnn"
    det = Detector.from_checkpoint(out, threads=1, score_thresh=0.1)
    ref = Detector.from_checkpoint(ckpt, backend="torch", threads=1, score_thresh=0.1)
    assert det.backend == "ncnn" and det.class_names == ref.class_names
    total = 0
    for image in images:
        (a,), (b,) = ref([image]), det([image])
        n, problems, _, _ = compare_detections(a, b, floor=0.1 + 1e-3)
        assert not problems, problems[:3]
        total += n
    assert total >= 5
    import cv2

    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.png"), cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR))
    assert run_tool("detect", ["--checkpoint", out, "--source", tmp_path / "frames", "--backend", "ncnn",
                               "--score", "0.1", "--json", tmp_path / "det.jsonl"]) == 0
    assert "(ncnn fp32)" in capsys.readouterr().err
    frame = json.loads((tmp_path / "det.jsonl").read_text().splitlines()[0])
    assert len(frame["detections"]) == len(det([images[0]])[0].scores) > 0


def test_eval_on_ncnn_equals_eval_on_torch(make_shapes, tmp_path, capsys):
    """The whole model-mode eval (COCO json, images, postprocess, scoring) through the ncnn file."""
    _need_ncnn()
    from ssdlite.deploy.export_ncnn import export_ncnn

    data = make_shapes(12, 4, 128)
    cfg = from_dict(tiny_config(data.train_images, data.train_annotations, data.num_classes, data.val_images, data.val_annotations))
    images = [read_rgb(p) for p in sorted(data.val_images.iterdir())]
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, images, seed=1, candidates=20, score_thresh=0.05), cfg)
    param = export_ncnn(ckpt, None, tmp_path / "tiny.param")
    stats = {}
    for backend, model in (("torch", ckpt), ("ncnn", param)):
        out = tmp_path / f"{backend}.json"
        assert run_tool("eval", ["--checkpoint", model, "--backend", backend, "--annotations", data.val_annotations,
                                 "--images", data.val_images, "--json-out", out, "--no-per-class", "--score-thresh", "0.05"]) == 0
        stats[backend] = json.loads(out.read_text())["stats"]
    capsys.readouterr()
    np.testing.assert_allclose(stats["ncnn"], stats["torch"], atol=1e-4)


def test_export_cli_verify_and_errors(exported, photo_set, tmp_path, capsys):
    ckpt, _, _ = exported
    out = tmp_path / "cli.param"
    images = [str(p) for p in photo_set.pick("person.jpg")]
    assert run_tool("export", ["--checkpoint", ckpt, "--out", out, "--verify", "--threads", "1", "--verify-score", "0.2",
                               "--images", *images]) == 0
    assert "verify: OK" in capsys.readouterr().out and out.with_suffix(".bin").is_file()
    assert run_tool("export", ["--checkpoint", ckpt, "--format", "ncnn", "--out", tmp_path / "x.ncnn"]) != 0
    assert "not " + str(tmp_path / "x.ncnn") in capsys.readouterr().err  # named by its .param
    out.with_suffix(".json").unlink()
    with pytest.raises(ValueError, match=r"cli\.json is missing beside it"):
        make_runner("ncnn", out)


def test_runner_does_not_import_torch(exported):
    _, out, _ = exported
    assert_runner_is_torch_free("ssdlite.deploy.ncnn_runtime:NcnnRunner", out, batch=2)


def test_missing_extra_is_one_line(monkeypatch, tmp_path):
    """Without the ncnn extra, the back end and the format each say how to get it (runs without the extra)."""
    monkeypatch.setitem(sys.modules, "ncnn", None)  # None in sys.modules: the import fails as if not installed
    monkeypatch.setitem(sys.modules, "pnnx", None)
    from ssdlite.deploy.formats import exporter

    for call in (lambda: make_runner("ncnn", tmp_path / "m.param"), lambda: exporter(format_for("ncnn", "m.param"))):
        with pytest.raises(MissingExtra) as e:
            call()
        assert "\n" not in str(e.value) and "pip install 'ssdlite[ncnn]'" in str(e.value)


def test_latency_benchmark_builds_and_times_an_ncnn_contender(exported, tmp_path):
    """``benchmark latency --backends ncnn``: the contender spec points at the ncnn files and its stages run."""
    from ssdlite.apps.bench.latency import ours_specs
    from ssdlite.apps.bench.latency_child import _ours_stages

    ckpt, _, images = exported
    model, cfg = load_model(ckpt)
    common = {"threads": 1, "score": 0.1, "spinning": False}
    (spec,) = ours_specs("small", model.eval(), cfg, "ncnn", common, tmp_path)
    assert spec["checkpoint"] == str(tmp_path / "small.param") and (tmp_path / "small.bin").is_file()
    t0, t1, t2, t3, n = _ours_stages(spec)(images[0])
    assert t0 <= t1 <= t2 <= t3 and n > 0


def test_fp16_weights_halve_the_bin(exported, tmp_path):
    from ssdlite.deploy.export_ncnn import export_ncnn
    from ssdlite.deploy.ncnn_runtime import NcnnRunner

    ckpt, out, images = exported
    half = export_ncnn(ckpt, None, tmp_path / "half.param", fp16_weights=True)
    ratio = half.with_suffix(".bin").stat().st_size / out.with_suffix(".bin").stat().st_size
    assert 0.45 < ratio < 0.55, ratio
    runner = NcnnRunner(out, threads=1)
    batch, _ = preprocess(images[:1], runner.input_size, runner.config().preprocess)
    full, approx = runner(batch), NcnnRunner(half, threads=1)(batch)
    scale = max(float(np.abs(x).max()) for x in full)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(full, approx))
    assert 1e-5 < diff < 0.1 * scale, (diff, scale)  # rounded weights: close, not equal
