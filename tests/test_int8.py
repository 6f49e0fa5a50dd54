"""int8 export (``export --int8``): one QDQ file that ONNX Runtime and OpenVINO run, metadata kept and the
quantization recorded, detections close to fp32, the accuracy bound enforced (refusal lists what was
tried, writes nothing), calibration folder errors, and --int8 refused where it does not apply.

The model is a lively random one (image-dependent outputs, ``apps/bench/lively``) and its "ground truth"
is its own fp32 detections on generated photos, so fp32 scores near AP 1.0 and the int8 model's AP drop
is the damage quantization does, measured by the same COCO evaluation as for a trained model.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest

from helpers import photo_like_image, run_tool, tiny_model
from ssdlite.apps.bench.lively import lively_random_model
from ssdlite.config import from_dict
from ssdlite.data.names import category_ids_of
from ssdlite.deploy.backends import installed
from ssdlite.deploy.detector import Detector, preprocess
from ssdlite.deploy.export import export_onnx
from ssdlite.deploy.formats import ExportFormat, exporter
from ssdlite.deploy.onnx_runtime import OnnxRunner
from ssdlite.deploy.quantize import (QUANT_KEY, RECIPES, Recipe, calibration_images, family_of, float_nodes,
                                     load_calibration, read_quantization)
from ssdlite.eval.int8 import AccuracyBoundError, export_int8
from ssdlite.model.checkpoint import save_checkpoint

SCORE = 0.3  # the pseudo ground truth: fp32 detections above this
# int8 vs fp32 on the same images, the stated tolerance: at least MATCH_SHARE of the fp32 detections scoring
# >= MATCH_SCORE have an int8 partner of the same label with IoU >= MATCH_IOU and a score within MATCH_DSCORE,
# and the raw outputs keep an SQNR of SQNR_DB (class logits, box deltas). A random-weight model is the hard
# case (no training made it robust to noise; measured here: 80% matched, 18 / 10 dB); the trained models'
# AP drop is measured by `ssdlite benchmark int8` (README).
MATCH_SCORE, MATCH_IOU, MATCH_DSCORE, MATCH_SHARE = 0.3, 0.5, 0.1, 0.7
SQNR_DB = (15.0, 8.0)


@pytest.fixture(scope="module")
def lively(tmp_path_factory):
    """(checkpoint, images folder, pseudo ground truth json, images): a 128 px V3-Small x0.5, 4 classes."""
    tmp = tmp_path_factory.mktemp("int8")
    rng = np.random.default_rng(5)
    folder = tmp / "images"
    folder.mkdir()
    images = []
    for i in range(10):
        image = photo_like_image(rng, 160 + 16 * (i % 3), 192, shapes=6)
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append(image)
    cfg = from_dict({"model": tiny_model(4), "postprocess": {"score_thresh": 0.05}})
    model = lively_random_model(cfg, images, seed=2, candidates=6, score_thresh=SCORE)
    ckpt = tmp / "model.pt"
    save_checkpoint(ckpt, model, cfg)
    det = Detector(model, cfg)
    cats = category_ids_of(cfg.model)
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in cats]}
    for i, (image, d) in enumerate(zip(images, det(images))):
        gt["images"].append({"id": i + 1, "file_name": f"{i:02d}.png", "height": image.shape[0], "width": image.shape[1]})
        for box, score, label in zip(d.boxes, d.scores, d.labels):
            if score >= SCORE:
                x1, y1, x2, y2 = (float(v) for v in box)
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": cats[label],
                                          "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    assert len(gt["annotations"]) >= 10, "the lively model should find objects to score"
    annotations = tmp / "pseudo_gt.json"
    annotations.write_text(json.dumps(gt))
    return ckpt, folder, annotations, images


@pytest.fixture(scope="module")
def int8_file(lively, tmp_path_factory):
    ckpt, folder, annotations, _ = lively
    out = tmp_path_factory.mktemp("int8_out") / "m_int8.onnx"
    report = export_int8(ckpt, out, calibration=folder, val=annotations, max_ap_drop=0.5, threads=1)
    return out, report


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:2], b[:, :2]), np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_int8_file_runs_keeps_metadata_and_records_the_quantization(lively, int8_file, tmp_path):
    ckpt, _, annotations, _ = lively
    out, report = int8_file
    assert report.path == str(out) and report.chosen is not None and report.chosen.recipe == RECIPES["v3"][0].name
    fp32 = export_onnx(ckpt, None, tmp_path / "fp32.onnx")
    meta32 = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
    model = onnx.load(str(out))
    meta8 = {p.key: p.value for p in model.metadata_props}
    assert {k: v for k, v in meta8.items() if k != QUANT_KEY} == meta32  # anchors, config, classes... unchanged
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    q = read_quantization(meta8)
    assert q["recipe"] == report.chosen.recipe and q["settings"]["per_channel"] is True
    assert q["calibration_images"] == 10 and q["family"] == "v3" and q["evaluated_on"] == str(annotations)
    assert q["fp32_ap"] == pytest.approx(report.fp32_ap) and q["int8_ap"] == pytest.approx(report.chosen.ap)
    assert q["ap_drop"] <= 0.5 and len(q["float_nodes"]) == 2 * 6  # every class / box predictor's last conv
    assert read_quantization(meta32) is None
    runner = OnnxRunner(out, threads=1)
    assert runner.metadata[QUANT_KEY] == meta8[QUANT_KEY]


def test_int8_detections_are_close_to_fp32(lively, int8_file, tmp_path):
    ckpt, _, _, images = lively
    out, report = int8_file
    fp32 = Detector.from_checkpoint(export_onnx(ckpt, None, tmp_path / "fp32.onnx"), threads=1)
    int8 = Detector.from_checkpoint(out, threads=1)
    batch, _ = preprocess(images, fp32.input_size, fp32.cfg.preprocess)
    for a, b, floor in zip(fp32.raw(batch), int8.raw(batch), SQNR_DB):  # signal-to-quantization-noise ratio of the raw outputs
        a = a.astype(np.float64)
        assert 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)) >= floor
    found = total = 0
    for a, b in zip(fp32(images), int8(images)):
        for box, score, label in zip(a.boxes, a.scores, a.labels):
            if score < MATCH_SCORE:
                continue
            total += 1
            same = b.labels == label
            if same.any():
                iou = _iou(box, b.boxes[same])
                j = int(np.argmax(iou))
                found += bool(iou[j] >= MATCH_IOU and abs(b.scores[same][j] - score) <= MATCH_DSCORE)
    assert total >= 20 and found >= MATCH_SHARE * total, (found, total)
    assert report.fp32_ap > 0.99  # the pseudo ground truth is fp32's own detections


@pytest.mark.skipif(not installed("openvino"), reason="openvino is not installed (pip install 'ssdlite[openvino]')")
def test_openvino_runs_the_int8_file_in_int8(lively, int8_file):
    _, _, _, images = lively
    out, _ = int8_file
    ov = Detector.from_checkpoint(out, backend="openvino", threads=1)
    ort = Detector.from_checkpoint(out, backend="onnxruntime", threads=1)
    assert ov.runner.precision == "int8"
    (a,), (b,) = ort(images[:1]), ov(images[:1])
    for box, score, label in zip(a.boxes, a.scores, a.labels):
        if score >= MATCH_SCORE:
            same = b.labels == label
            assert same.any() and _iou(box, b.boxes[same]).max() >= MATCH_IOU


def test_refused_when_the_drop_exceeds_the_bound_nothing_written(lively, tmp_path):
    ckpt, folder, annotations, _ = lively
    out = tmp_path / "refused.onnx"
    bad = (Recipe("per-tensor-1img", per_channel=False), Recipe("per-tensor-symmetric", per_channel=False, symmetric=True,
                                                                 activations="qint8"))
    with pytest.raises(AccuracyBoundError) as e:
        export_int8(ckpt, out, calibration=folder, count=1, val=annotations, max_ap_drop=1e-9, recipes=bad, threads=1)
    message = str(e.value)
    assert "refused to write" in message and "per-tensor-1img" in message and "per-tensor-symmetric" in message
    assert "fp32 AP" in message and len(e.value.report.attempts) == 2
    assert all(a.drop > 1e-9 and not a.accepted for a in e.value.report.attempts)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_refusal_is_one_line_listing_the_recipes(lively, tmp_path, capsys):
    ckpt, folder, annotations, _ = lively
    out = tmp_path / "m.onnx"
    code = run_tool("export", ["--checkpoint", ckpt, "--out", out, "--int8", "--calibration", folder, "--calibration-count",
                               "1", "--val", annotations, "--max-ap-drop", "0", "--json-out", tmp_path / "r.json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and not out.exists()
    assert len(err) == 1 and "refused" in err[0] and all(r.name in err[0] for r in RECIPES["v3"]), err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["path"] is None and len(report["attempts"]) == len(RECIPES["v3"])


def test_plain_folder_needs_val_or_an_explicit_none(lively, tmp_path, capsys):
    ckpt, folder, _, _ = lively
    out = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match="cannot be measured.*--max-ap-drop none"):
        export_int8(ckpt, out, calibration=folder, threads=1)
    assert not out.exists()
    code = run_tool("export", ["--checkpoint", ckpt, "--out", out, "--int8", "--calibration", folder, "--max-ap-drop", "none"])
    assert code == 0 and out.exists()
    q = read_quantization(OnnxRunner(out).metadata)
    assert q["int8_ap"] is None and q["max_ap_drop"] is None and q["evaluated_on"] is None
    assert "NOT measured" in capsys.readouterr().out


def test_calibration_folder_errors(lively, tmp_path):
    ckpt, folder, _, images = lively
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="has no images"):
        calibration_images(empty, 10)
    with pytest.raises(ValueError, match="does not exist"):
        calibration_images(tmp_path / "missing", 10)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "a.jpg"), images[0][:, :, ::-1])
    (mixed / "b.jpg").write_bytes(b"not a jpeg")
    (mixed / "c.png").write_bytes(b"")
    cfg = from_dict({"model": tiny_model(4)})
    batch, skipped = load_calibration(calibration_images(mixed, None), (128, 128), cfg.preprocess)
    assert batch.shape == (1, 3, 128, 128) and len(skipped) == 2 and "b.jpg" in " ".join(skipped)
    report = export_int8(ckpt, tmp_path / "m.onnx", calibration=mixed, max_ap_drop=None, threads=1)
    assert report.calibration_images == 1 and len(report.skipped) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="none of the 1 calibration images could be read"):
        export_int8(ckpt, tmp_path / "n.onnx", calibration=bad, max_ap_drop=None, threads=1)
    assert not (tmp_path / "n.onnx").exists()


def test_int8_applies_to_formats_with_an_int8_exporter(lively, tmp_path, capsys):
    other = ExportFormat("other", ".bin", None, None, "ssdlite.deploy.export:export_onnx_file", None, "a format without int8")
    with pytest.raises(ValueError, match=r"^--int8 applies to --format onnx / tflite, not other$"):
        exporter(other, int8=True)
    ckpt = lively[0]
    code = run_tool("export", ["--checkpoint", ckpt, "--out", tmp_path / "m.param", "--int8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--int8" in err[0] and "ncnn" in err[0]
    code = run_tool("export", ["--checkpoint", ckpt, "--out", tmp_path / "m.onnx", "--int8", "--with-nms",
                               "--max-ap-drop", "none", "--calibration", lively[1]])
    assert code != 0 and "--with-nms" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_recipes_and_float_nodes_follow_the_graph(lively, tmp_path):
    for family, recipes in RECIPES.items():
        assert recipes and len({r.name for r in recipes}) == len(recipes), family
    assert [family_of(b) for b in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet")] == \
        ["v1", "v2", "v3", "v3", "other"]
    with pytest.raises(ValueError, match="keep_float"):
        Recipe("x", keep_float=("everything",))
    model = onnx.load(str(export_onnx(lively[0], None, tmp_path / "fp32.onnx")))
    by_name = {n.name: n for n in model.graph.node}
    (first,) = float_nodes(model, ("first_conv",))
    assert by_name[first].input[0] == "images"
    heads = float_nodes(model, ("head_outputs",))
    assert len(heads) == 12 and all(by_name[n].op_type == "Conv" and "_heads" in n for n in heads)
    se = float_nodes(model, ("squeeze_excite",))
    assert {by_name[n].op_type for n in se} >= {"GlobalAveragePool", "Conv", "Mul"}
    assert all(by_name[n].op_type == "Conv" or "HardSwish" in by_name[n].op_type
               for n in float_nodes(model, ("hardswish",)) if n in by_name)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in convs}
    depthwise = float_nodes(model, ("depthwise",))
    assert depthwise and set(depthwise) == {n for n, g in groups.items() if g > 1} and len(depthwise) < len(convs)


def test_default_calibration_is_the_config_val_split(lively, tmp_path):
    from ssdlite.config import to_dict
    from ssdlite.model.checkpoint import load_model

    ckpt, folder, annotations, _ = lively
    model, cfg = load_model(ckpt)
    data = to_dict(cfg)
    data["data"]["val"] = {"images": str(folder), "annotations": str(annotations)}
    with_val = tmp_path / "with_val.pt"
    save_checkpoint(with_val, model, from_dict(data))
    report = export_int8(with_val, tmp_path / "m.onnx", count=4, max_ap_drop=0.5, threads=1)
    assert report.calibration_images == 4 and "val split" in report.calibration and report.evaluated_images == 10
    assert report.fp32_ap > 0.99 and report.chosen is not None
    q = read_quantization(OnnxRunner(tmp_path / "m.onnx").metadata)
    assert q["calibration_images"] == 4 and q["evaluated_images"] == 10


def test_latency_benchmark_times_the_int8_file_on_both_back_ends(lively, tmp_path):
    """``benchmark latency --int8``: one QDQ file per model, an ``-int8`` row per ONNX back end, run in int8."""
    from ssdlite.apps.bench.latency import ours_specs
    from ssdlite.apps.bench.latency_child import _ours_stages
    from ssdlite.model.checkpoint import load_model

    ckpt, _, _, images = lively
    model, cfg = load_model(ckpt)
    frames = tmp_path / "frames.npy"
    np.save(frames, np.stack(images[::3]))  # the same size every third image
    common = {"threads": 1, "score": SCORE, "spinning": False, "int8": True, "frames": str(frames), "openvino_precisions": ["fp32"]}
    backends = ["onnxruntime"] + (["openvino"] if installed("openvino") else [])
    specs = [s for b in backends for s in ours_specs("m", model.eval(), cfg, b, common, tmp_path)]
    assert [s["column"] for s in specs] == [c for b in backends for c in (b, f"{b}-int8")]
    for spec in specs:
        stages = _ours_stages(spec)
        t0, t1, t2, t3, _ = stages(images[0])
        assert t0 <= t1 <= t2 <= t3
        int8 = spec["column"].endswith("-int8")
        assert stages.precision == ("int8" if int8 else "fp32")
        assert spec["checkpoint"] == str(tmp_path / ("m_int8.onnx" if int8 else "m.onnx"))


def test_latency_targets_of_the_fastest_back_end():
    """Issue 15's targets: the fastest non-bf16 contender against ONNX Runtime fp32, its FPS and the pre + post share."""
    from ssdlite.apps.bench.latency_report import check_targets

    def row(name, backend, prec, pre, net, post):
        return {"name": name, "backend": backend, "label": f"{name} / {backend}", "precision": prec, "preprocess_ms": pre,
                "network_ms": net, "postprocess_ms": post, "end_to_end_ms": pre + net + post, "fps": 1000 / (pre + net + post),
                "ratio_vs_torchvision": None}

    large, small = "mobilenet_v3_large_reduced", "mobilenet_v3_small_reduced"
    rows = [row(large, "onnxruntime", "fp32", 0.5, 9.0, 0.5), row(large, "openvino-int8", "int8", 0.5, 5.5, 0.5),
            row(large, "openvino-bf16", "bf16", 0.5, 2.0, 0.5),  # faster, but an unmeasured precision: not counted
            row(small, "onnxruntime", "fp32", 0.5, 5.0, 0.5), row(small, "onnxruntime-int8", "int8", 0.9, 3.0, 0.6)]
    lines = [line for line in check_targets(rows) if "fastest" in line]
    assert lines[0].startswith(f"PASS {large}, fastest openvino-int8 (int8): 153.8 FPS = 1.54x onnxruntime fp32")
    assert lines[1].startswith(f"MISS {small}, fastest onnxruntime-int8 (int8): 222.2 FPS = 1.33x") and "pre + post 33%" in lines[1]
