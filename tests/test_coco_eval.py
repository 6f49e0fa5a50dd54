"""COCO box evaluation: known answers, faster-coco-eval == pycocotools, edge cases, the eval tool."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import require_shared
from ssdlite.eval.backends import EVALUATORS
from ssdlite.eval.coco import STAT_NAMES, EvalResult, detections_to_coco_results, evaluate_coco
from ssdlite.eval.plots import plot_pr_curves
from ssdlite.eval.report import format_per_class, format_summary

TOL = 1e-9


@pytest.fixture(scope="module")
def cocoapi_dir() -> Path:
    return require_shared("cocoapi_results", "pycocotools' known answers on a real COCO subset")


def _assert_same(a: EvalResult, b: EvalResult) -> None:
    """Every stat, every per-class AP and the whole precision/recall arrays agree to TOL."""
    for name, x, y in zip(STAT_NAMES, a.stats, b.stats):
        assert abs(x - y) <= TOL, f"{name}: {a.evaluator}={x!r} {b.evaluator}={y!r}"
    assert a.category_ids == b.category_ids
    assert a.per_class.keys() == b.per_class.keys()
    for name in a.per_class:
        assert abs(a.per_class[name] - b.per_class[name]) <= TOL, name
        assert abs(a.per_class_ap50[name] - b.per_class_ap50[name]) <= TOL, name
    assert a.precision.shape == b.precision.shape
    np.testing.assert_allclose(a.precision, b.precision, rtol=0, atol=TOL)
    np.testing.assert_allclose(a.recall, b.recall, rtol=0, atol=TOL)


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_known_answer_fakebbox100(evaluator, cocoapi_dir):
    d = cocoapi_dir
    expected = json.loads((d / "expected_bbox_stats_fakebbox100.json").read_text())
    assert expected["keys"] == list(STAT_NAMES)
    r = evaluate_coco(d / "instances_val2014_100.json", d / "instances_val2014_fakebbox100_results.json",
                      evaluator=evaluator)
    assert r.num_images == 100
    for name, got, want in zip(STAT_NAMES, r.stats, expected["bbox"]):
        assert abs(got - want) <= TOL, f"{name}: got {got!r}, pycocotools gives {want!r}"
    assert round(r.stats_dict["AP"], 3) == 0.505
    assert round(r.stats_dict["AP50"], 3) == 0.697
    assert round(r.stats_dict["AR100"], 3) == 0.595


def test_known_answer_fakebbox100_per_class_identical(cocoapi_dir):
    d = cocoapi_dir
    gt = json.loads((d / "instances_val2014_100.json").read_text())
    dt = json.loads((d / "instances_val2014_fakebbox100_results.json").read_text())
    a, b = (evaluate_coco(gt, dt, evaluator=e) for e in EVALUATORS)
    _assert_same(a, b)
    # classes without ground truth in these 100 images are -1, the others in [0, 1]
    present = {ann["category_id"] for ann in gt["annotations"]}
    for cid, name in zip(a.category_ids, a.category_names):
        assert (a.per_class[name] == -1.0) == (cid not in present), name
        assert a.per_class[name] <= a.per_class_ap50[name] + TOL <= 1.0 + TOL
    # AP is the mean of the per-class APs over classes with gt
    valid = [v for v in a.per_class.values() if v > -1]
    assert abs(np.mean(valid) - a.stats[0]) <= TOL


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_known_answer_no_crowd_variant(evaluator, cocoapi_dir):
    """rodm's case: crowd-free GT, results stored as a COCO-style dict's 'annotations' list."""
    d = cocoapi_dir / "no_crowd_variant_rodm"
    expected = json.loads((d / "expected_stats.json").read_text())
    assert expected["keys"] == list(STAT_NAMES)
    r = evaluate_coco(d / "sampled_gts_bbox_area.json", d / "sampled_bbox_results.json", evaluator=evaluator)
    assert r.num_detections == 734
    for name, got, want in zip(STAT_NAMES, r.stats, expected["bbox"]):
        # the expected values are printed with 6 decimals
        assert abs(got - want) <= 5e-7 + 1e-12, f"{name}: got {got!r}, expected {want!r}"


# ----------------------------------------------------------------------------- generated cases


def _make_case(seed: int) -> tuple[dict, list[dict]]:
    """A small COCO set with every awkward case the evaluators must agree on.

    Crowd regions (some with detections inside), images without any box, images with gt
    and no detections, detections on images without gt, a category with no gt (that still
    gets detections), more than 100 detections on one image, tied scores, tiny and huge boxes.
    """
    rng = np.random.default_rng(seed)
    cats = [{"id": i, "name": f"cat{i}"} for i in (1, 2, 3, 5, 7, 11)]
    no_gt_cat = 11
    images, anns, dets = [], [], []
    ann_id = 1
    for image_id in range(1, 41):
        w, h = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        images.append({"id": image_id * 3, "width": w, "height": h, "file_name": f"{image_id}.jpg"})
        kind = image_id % 5  # 0: empty, no dets; 1: empty with dets; 2: gt without dets; else both
        n_gt = 0 if kind in (0, 1) else int(rng.integers(1, 9))
        gts = []
        for _ in range(n_gt):
            bw = float(np.exp(rng.uniform(np.log(3), np.log(w * 0.9))))
            bh = float(np.exp(rng.uniform(np.log(3), np.log(h * 0.9))))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            cat = int(rng.choice([1, 2, 3, 5, 7]))
            crowd = int(rng.random() < 0.15)
            box = [x, y, bw, bh]
            anns.append({"id": ann_id, "image_id": image_id * 3, "category_id": cat, "bbox": box,
                         "area": bw * bh * float(rng.uniform(0.4, 1.0)), "iscrowd": crowd})
            gts.append((box, cat))
            ann_id += 1
        if kind in (0, 2):
            continue
        n_det = 130 if image_id == 9 else int(rng.integers(1, 40))
        for j in range(n_det):
            if gts and rng.random() < 0.6:
                (x, y, bw, bh), cat = gts[int(rng.integers(len(gts)))]
                s = float(rng.uniform(0.0, 0.3))
                box = [x + rng.normal(0, s) * bw, y + rng.normal(0, s) * bh,
                       bw * float(np.exp(rng.normal(0, s))), bh * float(np.exp(rng.normal(0, s)))]
                if rng.random() < 0.1:
                    cat = no_gt_cat
            else:
                bw, bh = float(rng.uniform(2, w / 2)), float(rng.uniform(2, h / 2))
                box = [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh]
                cat = int(rng.choice([1, 2, 3, 5, 7, no_gt_cat]))
            score = round(float(rng.uniform(0.01, 1.0)), 2)  # ties
            dets.append({"image_id": image_id * 3, "category_id": cat, "bbox": [float(v) for v in box],
                         "score": score})
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, dets


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_generated_faster_equals_pycocotools(seed):
    gt, dets = _make_case(seed)
    assert any(a["iscrowd"] for a in gt["annotations"])
    gt_before, dets_before = copy.deepcopy(gt), copy.deepcopy(dets)
    a, b = (evaluate_coco(gt, dets, evaluator=e) for e in EVALUATORS)
    _assert_same(a, b)
    assert gt == gt_before and dets == dets_before, "inputs must not be modified"
    assert a.num_images == 40 and a.num_detections == len(dets)
    assert a.per_class["cat11"] == -1.0 and a.per_class_ap50["cat11"] == -1.0
    assert all(0.0 <= v <= 1.0 for k, v in a.per_class.items() if k != "cat11")
    assert 0.0 < a.stats[0] < 1.0


def test_bench_generator_faster_equals_pycocotools():
    from ssdlite.apps.bench.eval import generate

    gt, dets = generate(60, 120, seed=5)
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert len(dets) == 60 * 120
    a, b = (evaluate_coco(gt, dets, evaluator=e) for e in EVALUATORS)
    _assert_same(a, b)
    assert gt == generate(60, 120, seed=5)[0], "the benchmark set is deterministic"


def _one_image_gt(crowd: bool) -> dict:
    return {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": int(crowd)},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_hand_computed_crowd_and_misses(evaluator):
    perfect = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}
    in_crowd = {"image_id": 1, "category_id": 1, "bbox": [55, 55, 20, 20], "score": 0.95}
    # the higher-scored box inside a crowd region is ignored: AP = AR = 1
    r = evaluate_coco(_one_image_gt(crowd=True), [perfect, in_crowd], evaluator=evaluator)
    assert r.stats[0] == pytest.approx(1.0, abs=TOL) and r.stats[8] == pytest.approx(1.0, abs=TOL)
    # same boxes, region not crowd: the 0.95 box is a false positive (IoU 0.25), the object is missed
    r = evaluate_coco(_one_image_gt(crowd=False), [perfect, in_crowd], evaluator=evaluator)
    assert r.stats[8] == pytest.approx(0.5, abs=TOL)  # AR100: one of two objects found
    # precision at recall 0.5 is 1/2 (an FP ranks first), 0 beyond: AP = 51 * 0.5 / 101
    assert r.stats[0] == pytest.approx(51 * 0.5 / 101, abs=TOL)
    # only the crowd detection (the perfect one dropped): no true positive at all
    r = evaluate_coco(_one_image_gt(crowd=True), [in_crowd], evaluator=evaluator)
    assert r.stats[0] == 0.0 and r.stats[8] == 0.0


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_empty_results_give_zeros(evaluator):
    gt, _ = _make_case(0)
    r = evaluate_coco(gt, [], evaluator=evaluator)
    assert r.stats == [0.0] * 12
    assert r.num_detections == 0
    assert set(r.per_class.values()) == {0.0, -1.0}  # -1 only for the class with no gt


def test_empty_results_file(tmp_path):
    gt, _ = _make_case(1)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text("[]")
    for e in EVALUATORS:
        assert evaluate_coco(tmp_path / "gt.json", str(tmp_path / "dt.json"), evaluator=e).stats == [0.0] * 12


def test_lean_results_index_equals_loadres():
    """Our results loader sets exactly what loadRes sets (except the unused polygon)."""
    from faster_coco_eval import COCO

    from ssdlite.eval.backends import _results_as_coco

    gt, dets = _make_case(2)
    ref = COCO(copy.deepcopy(gt)).loadRes(copy.deepcopy(dets))
    ours = _results_as_coco(COCO, gt, copy.deepcopy(dets))
    assert ours.anns.keys() == ref.anns.keys()
    for k, ann in ref.anns.items():
        ann = {key: v for key, v in ann.items() if key != "segmentation"}
        assert ours.anns[k] == ann
    assert ours.dataset["categories"] == ref.dataset["categories"]
    assert ours.getImgIds() == ref.getImgIds()


def test_lean_prepare_equals_stock_prepare():
    """Our COCOeval_faster._prepare hands the C++ side the same data as the stock one."""
    from faster_coco_eval import COCO, COCOeval_faster

    from ssdlite.eval.backends import _box_evaluator_class, _results_as_coco

    for seed in (0, 3):
        gt, dets = _make_case(seed)
        dets.append({"image_id": 3, "category_id": 99, "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.5})  # stray class
        outs = []
        for cls, index in ((COCOeval_faster, True), (_box_evaluator_class(), False)):
            g = copy.deepcopy(gt)
            ev = cls(COCO(g), _results_as_coco(COCO, g, copy.deepcopy(dets), index=index), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            outs.append(ev)
        stock, ours = outs
        assert ours._nonempty_iou_pairs == stock._nonempty_iou_pairs
        assert np.array_equal(ours.eval["precision"], stock.eval["precision"])
        assert np.array_equal(ours.eval["recall"], stock.eval["recall"])
        assert np.array_equal(ours.eval["scores"], stock.eval["scores"])
        assert list(ours.stats) == list(stock.stats)


def test_repeated_or_zero_gt_ids_are_renumbered():
    gt = _one_image_gt(crowd=False)
    gt["annotations"][0]["id"] = gt["annotations"][1]["id"] = 0
    perfect = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "score": 0.8}]
    for e in EVALUATORS:
        assert evaluate_coco(gt, perfect, evaluator=e).stats[0] == pytest.approx(1.0, abs=TOL)
    assert [a["id"] for a in gt["annotations"]] == [0, 0], "the caller's dict is left alone"


def test_bad_inputs_raise_value_errors(tmp_path):
    gt, dets = _make_case(0)
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_coco(gt, dets + [{"image_id": 99999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}])
    for evaluator in EVALUATORS:
        bad = copy.deepcopy(dets)
        del bad[3]["score"]
        with pytest.raises(ValueError, match="#3"):
            evaluate_coco(gt, bad, evaluator=evaluator)
        bad = copy.deepcopy(dets)
        bad[5]["bbox"] = [1, 2, 3]
        with pytest.raises(ValueError, match="#5"):
            evaluate_coco(gt, bad, evaluator=evaluator)
        bad = copy.deepcopy(dets)
        bad[-1]["score"] = float("nan")
        with pytest.raises(ValueError, match=f"#{len(bad) - 1}"):
            evaluate_coco(gt, bad, evaluator=evaluator)
        bad = copy.deepcopy(dets)
        bad[2]["score"] = "high"
        with pytest.raises(ValueError, match="#2"):
            evaluate_coco(gt, bad, evaluator=evaluator)
    with pytest.raises(ValueError, match="evaluator"):
        evaluate_coco(gt, dets, evaluator="nope")
    with pytest.raises(ValueError, match="categories"):
        evaluate_coco({"images": [], "annotations": []}, [])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        evaluate_coco(tmp_path / "broken.json", [])
    with pytest.raises(OSError, match="missing.json"):
        evaluate_coco(tmp_path / "missing.json", [])


# ----------------------------------------------------------------------------- helpers and reports


def test_detections_to_coco_results_round_trip():
    torch = pytest.importorskip("torch")
    gt = _one_image_gt(crowd=False)
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 90.0, 90.0]])  # xyxy px
    res = detections_to_coco_results(1, boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), [1])
    assert res == [
        {"image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 20.0, 20.0], "score": pytest.approx(0.9)},
        {"image_id": 1, "category_id": 1, "bbox": [50.0, 50.0, 40.0, 40.0], "score": pytest.approx(0.8)},
    ]
    assert all(type(v) is float for d in res for v in d["bbox"]) and type(res[0]["score"]) is float
    assert evaluate_coco(gt, res).stats[0] == pytest.approx(1.0, abs=TOL)
    # full precision kept, numpy input, dict mapping
    out = detections_to_coco_results(7, np.array([[0.125, 1.0625, 3.3, 4.7]]), [0.5], [2], {2: 90})
    assert out[0]["category_id"] == 90 and out[0]["bbox"][:2] == [0.125, 1.0625]
    assert out[0]["bbox"][2] == pytest.approx(3.175, abs=1e-12)
    assert detections_to_coco_results(1, np.zeros((0, 4)), [], [], [1]) == []
    with pytest.raises(ValueError, match="no category id"):
        detections_to_coco_results(1, boxes, [0.9, 0.8], [0, 1], [1])
    with pytest.raises(ValueError, match="differ in length"):
        detections_to_coco_results(1, boxes, [0.9], [0, 0], [1])


def test_format_summary_matches_pycocotools_wording():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets = _make_case(3)
    ours = evaluate_coco(gt, dets, evaluator="pycocotools")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    reference = [ln for ln in printed.getvalue().splitlines() if ln.startswith(" Average")]
    assert format_summary(ours).splitlines() == reference
    table = format_per_class(ours)
    assert "cat11" in table and "mean" in table
    assert len(table.splitlines()) == len(ours.category_ids) + 4


def test_to_json_and_plot(tmp_path):
    gt, dets = _make_case(1)
    r = evaluate_coco(gt, dets)
    j = json.loads(json.dumps(r.to_json()))
    assert j["stats"] == r.stats and [j[k] for k in STAT_NAMES] == r.stats
    assert j["per_class"] == r.per_class and set(j["per_class"]) == {c["name"] for c in gt["categories"]}
    assert r.precision.shape == (10, 101, 6, 4, 3)
    png = plot_pr_curves(r, tmp_path / "sub" / "pr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # an evaluation without any detection still plots (flat curves)
    assert plot_pr_curves(evaluate_coco(gt, []), tmp_path / "empty.png").exists()


def test_eval_tool_results_mode(tmp_path, capsys):
    from ssdlite.tools import eval as eval_tool

    gt, dets = _make_case(2)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    parser = eval_tool.build_parser()
    args = parser.parse_args(["--annotations", str(tmp_path / "gt.json"), "--results", str(tmp_path / "dt.json"),
                              "--json-out", str(tmp_path / "out" / "metrics.json")])
    assert eval_tool.main(args) == 0
    shown = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in shown
    assert "cat11" in shown
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    expected = evaluate_coco(gt, dets, evaluator="pycocotools")
    assert len(metrics["stats"]) == 12
    assert all(abs(a - b) <= TOL for a, b in zip(metrics["stats"], expected.stats))
    assert metrics["AP"] == metrics["stats"][0] and metrics["AR100"] == metrics["stats"][8]
    assert metrics["per_class"]["cat11"] == -1.0
    assert (tmp_path / "out" / "metrics_pr.png").stat().st_size > 0

    # pycocotools evaluator and an explicit plot path through the shared runner
    from ssdlite.apps.cli import run

    code = run(eval_tool.main, eval_tool.build_parser(), [
        "--annotations", str(tmp_path / "gt.json"), "--results", str(tmp_path / "dt.json"),
        "--evaluator", "pycocotools", "--plot", str(tmp_path / "pr.png"), "--no-per-class"])
    assert code == 0 and (tmp_path / "pr.png").exists()
    # neither or both modes: one readable error, exit code 2
    assert run(eval_tool.main, eval_tool.build_parser(), ["--annotations", str(tmp_path / "gt.json")]) == 2
    assert "either --results" in capsys.readouterr().err


def test_eval_tool_model_mode_wiring(tmp_path, monkeypatch, capsys):
    """Model mode: Detector.from_checkpoint(...) -> predict_coco(...) -> results file + metrics.

    The detector and the prediction loop are stand-ins here (their own tests cover them);
    this checks the tool passes the flags through and scores what predict_coco returns.
    """
    import sys
    import types

    import ssdlite
    from ssdlite.tools import eval as eval_tool

    gt, _ = _make_case(1)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "images").mkdir()
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in gt["annotations"] if not a["iscrowd"]]
    calls = {}

    class FakeDetector:
        @classmethod
        def from_checkpoint(cls, path, **kwargs):
            calls["from_checkpoint"] = (path, kwargs)
            return cls()

    def fake_predict_coco(detector, images_dir, annotations, batch_size=8):
        calls["predict_coco"] = (images_dir, annotations, batch_size)
        return perfect

    monkeypatch.setattr(ssdlite, "Detector", FakeDetector, raising=False)
    monkeypatch.setitem(sys.modules, "ssdlite.eval.predict",
                        types.SimpleNamespace(predict_coco=fake_predict_coco))
    args = eval_tool.build_parser().parse_args([
        "--checkpoint", str(tmp_path / "m.pt"), "--images", str(tmp_path / "images"),
        "--annotations", str(tmp_path / "gt.json"), "--set", "postprocess.score_thresh=0.05",
        "--batch-size", "4", "--results-out", str(tmp_path / "dt.json"), "--json-out", str(tmp_path / "m.json")])
    assert eval_tool.main(args) == 0
    path, kwargs = calls["from_checkpoint"]
    assert path == str(tmp_path / "m.pt")
    assert kwargs == {"backend": "torch", "device": "cpu", "overrides": ["postprocess.score_thresh=0.05"], "score_thresh": 0.05,
                      "weights_dir": None}
    assert calls["predict_coco"] == (str(tmp_path / "images"), str(tmp_path / "gt.json"), 4)
    assert json.loads((tmp_path / "dt.json").read_text()) == perfect
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["AP"] == pytest.approx(1.0, abs=TOL)
    assert (tmp_path / "m_pr.png").exists()
    with pytest.raises(ValueError, match="either --results"):
        eval_tool.main(eval_tool.build_parser().parse_args([
            "--checkpoint", "m.pt", "--results", "dt.json", "--annotations", "gt.json"]))
