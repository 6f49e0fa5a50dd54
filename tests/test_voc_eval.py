"""Pascal VOC metrics (ssdlite.eval.voc): hand-computed answers, a published answer, a plain
reference implementation on random cases, and the eval tool's --metric."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ssdlite.eval.coco import METRICS, evaluate_coco
from ssdlite.eval.report import format_voc
from ssdlite.eval.voc import VOC_METRICS, evaluate_voc, voc_ap

TOL = 1e-12


def _gt(objects: list[tuple], images: int, categories: int = 1) -> dict:
    """COCO ground truth from (image, category, [x, y, w, h], flags dict) tuples."""
    anns = [{"id": i, "image_id": im, "category_id": c, "bbox": list(b), "area": b[2] * b[3], **flags}
            for i, (im, c, b, flags) in enumerate(objects, 1)]
    return {"images": [{"id": i} for i in range(1, images + 1)], "annotations": anns,
            "categories": [{"id": c, "name": "abcdefgh"[c - 1]} for c in range(1, categories + 1)]}


def _dets(rows: list[tuple]) -> list[dict]:
    """COCO results from (image, category, [x, y, w, h], score) tuples, in that order."""
    return [{"image_id": im, "category_id": c, "bbox": list(b), "score": s} for im, c, b, s in rows]


def _both(gt: dict, dets: list[dict]) -> tuple[dict, dict]:
    r = evaluate_coco(gt, dets, metrics=VOC_METRICS).voc
    return r["voc07"].per_class, r["voc"].per_class


# ----------------------------------------------------------------------------- hand-computed answers


def test_ties_keep_results_order_and_duplicates_are_false_positives():
    # 3 positives: G1 on image 1, G2 and G3 on image 2.
    gt = _gt([(1, 1, [0, 0, 10, 10], {}), (2, 1, [0, 0, 10, 10], {}), (2, 1, [20, 20, 10, 10], {})], 2)
    d1 = (1, 1, [0, 0, 10, 10], 0.9)    # TP (G1)
    d2 = (1, 1, [0, 0, 10, 10], 0.8)    # G1 again: FP (duplicate)
    d3 = (2, 1, [20, 20, 10, 10], 0.8)  # same score as d2, after it in the results: TP (G3)
    d4 = (2, 1, [50, 50, 10, 10], 0.7)  # FP
    # ranked TP FP TP FP: recall 1/3 1/3 2/3 2/3, precision 1 1/2 2/3 1/2; envelope 1 2/3 2/3 1/2
    # voc:   1/3 * 1 + 1/3 * 2/3 = 5/9
    # voc07: t = 0 .. 0.3 -> 1 (4 points), t = 0.4 .. 0.6 -> 2/3 (3 points), t >= 0.7 -> 0: 6/11
    ap07, ap = _both(gt, _dets([d1, d2, d3, d4]))
    assert ap["a"] == pytest.approx(5 / 9, abs=TOL) and ap07["a"] == pytest.approx(6 / 11, abs=TOL)
    # d3 listed before d2: ranked TP TP FP FP, recall 1/3 2/3 2/3 2/3, precision 1 1 2/3 1/2
    # voc: 2/3 * 1 = 2/3; voc07: t = 0 .. 0.6 -> 1 (7 points): 7/11
    ap07, ap = _both(gt, _dets([d1, d3, d2, d4]))
    assert ap["a"] == pytest.approx(2 / 3, abs=TOL) and ap07["a"] == pytest.approx(7 / 11, abs=TOL)


@pytest.mark.parametrize("flag", ["difficult", "ignore"])
def test_difficult_objects_are_neither_positives_nor_false_positives(flag):
    gt = _gt([(1, 1, [0, 0, 10, 10], {}), (1, 1, [30, 0, 10, 10], {flag: 1})], 1)
    dets = _dets([
        (1, 1, [30, 0, 10, 10], 0.9),   # on the difficult object: ignored
        (1, 1, [60, 0, 10, 10], 0.8),   # FP
        (1, 1, [0, 0, 10, 10], 0.7),    # TP
        (1, 1, [30, 0, 10, 10], 0.65),  # the difficult object again: ignored, not a duplicate
    ])
    # 1 positive; ign FP TP ign: recall 0 0 1 1, precision 0 (0/0) 0 1/2 1/2 -> voc 1/2, voc07 1/2
    ap07, ap = _both(gt, dets)
    assert ap["a"] == pytest.approx(0.5, abs=TOL) and ap07["a"] == pytest.approx(0.5, abs=TOL)
    assert evaluate_voc(gt, dets).num_positives == {"a": 1}
    # an ordinary object instead: 2 positives, TP FP TP FP: recall 1/2 1/2 1 1, precision
    # 1 1/2 2/3 1/2, envelope 1 2/3 2/3 1/2 -> voc 1/2 + 1/2 * 2/3 = 5/6, voc07 (6 + 5 * 2/3) / 11 = 28/33
    ap07, ap = _both(_gt([(1, 1, [0, 0, 10, 10], {}), (1, 1, [30, 0, 10, 10], {})], 1), dets)
    assert ap["a"] == pytest.approx(5 / 6, abs=TOL) and ap07["a"] == pytest.approx(28 / 33, abs=TOL)


def test_difficult_only_class_no_gt_class_empty_image_and_class_without_detections():
    gt = _gt([
        (1, 1, [0, 0, 10, 10], {}),                # a
        (1, 2, [0, 0, 10, 10], {"difficult": 1}),  # b: only a difficult object
        (3, 4, [0, 0, 10, 10], {}),                # d: never detected
    ], images=3, categories=4)                     # c: no object at all; image 2: no object
    dets = _dets([
        (1, 1, [0, 0, 10, 10], 0.9),   # a: TP
        (2, 1, [0, 0, 10, 10], 0.95),  # a on the empty image: FP, ranked first
        (1, 2, [0, 0, 10, 10], 0.9),   # b: on the difficult object
        (1, 3, [0, 0, 10, 10], 0.9),   # c: a class without objects
    ])
    # a: FP TP: recall 0 1, precision 0 1/2 -> voc 1 * 1/2, voc07 11 * 1/2 / 11: both 0.5
    # b, c: no positive -> undefined (-1), out of the mean; d: 1 positive, no detection -> 0
    for metric in VOC_METRICS:
        r = evaluate_voc(gt, dets, metric)
        assert r.per_class == pytest.approx({"a": 0.5, "b": -1.0, "c": -1.0, "d": 0.0}, abs=TOL)
        assert r.num_positives == {"a": 1, "b": 0, "c": 0, "d": 1}
        assert r.mAP == pytest.approx(0.25, abs=TOL)
    text = format_voc(evaluate_coco(gt, dets, metrics=["voc07", "voc"]))
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[3:] if line.strip()}
    assert rows["b"] == ["2", "0", "-", "-"] and rows["c"] == ["3", "0", "-", "-"]
    assert rows["a"] == ["1", "1", "0.500", "0.500"] and rows["mean"] == ["0.250", "0.250"]


def test_no_detections_and_no_objects():
    gt = _gt([(1, 1, [0, 0, 10, 10], {})], 2)
    for metric in VOC_METRICS:
        assert evaluate_voc(gt, [], metric).per_class == {"a": 0.0}
        nothing = evaluate_voc(_gt([], 2), _dets([(1, 1, [0, 0, 1, 1], 0.5)]), metric)
        assert nothing.per_class == {"a": -1.0} and nothing.mAP == -1.0


def test_iou_of_exactly_one_half_matches():
    # IoU = 50 / 100 = 0.5 exactly: the devkit's ovmax >= 0.5 makes it a TP (">" would give AP 0)
    gt = _gt([(1, 1, [0, 0, 10, 10], {})], 1)
    ap07, ap = _both(gt, _dets([(1, 1, [0, 0, 10, 5], 0.9)]))
    assert ap["a"] == 1.0 and ap07["a"] == 1.0
    ap07, ap = _both(gt, _dets([(1, 1, [0, 0, 10, 4.999], 0.9)]))
    assert ap["a"] == 0.0 and ap07["a"] == 0.0


def test_best_object_taken_means_false_positive_and_iou_ties_go_to_the_first_object():
    g1, g2 = (1, 1, [0, 0, 10, 10], {}), (1, 1, [2, 0, 10, 10], {})
    d1 = (1, 1, [0, 0, 10, 10], 0.9)    # IoU 1 with g1, 80/120 with g2: TP (g1)
    d2 = (1, 1, [0.5, 0, 10, 10], 0.8)  # IoU 95/105 with g1 (taken), 85/115 with g2: FP (the devkit
    #                                     takes the best object, taken or not; COCO would take g2)
    # FP case: recall 1/2 1/2, precision 1 1/2 -> voc 1/2, voc07 t <= 0.5 -> 1 (6 points): 6/11
    ap07, ap = _both(_gt([g1, g2], 1), _dets([d1, d2]))
    assert ap["a"] == pytest.approx(0.5, abs=TOL) and ap07["a"] == pytest.approx(6 / 11, abs=TOL)
    d3 = (1, 1, [1, 0, 10, 10], 0.8)    # IoU 90/110 with both: the first in annotation order
    ap07, ap = _both(_gt([g1, g2], 1), _dets([d1, d3]))  # g1 first, taken: FP as above
    assert ap["a"] == pytest.approx(0.5, abs=TOL) and ap07["a"] == pytest.approx(6 / 11, abs=TOL)
    ap07, ap = _both(_gt([g2, g1], 1), _dets([d1, d3]))  # g2 first, free: TP TP -> 1
    assert ap["a"] == 1.0 and ap07["a"] == 1.0


def test_crowd_regions_absorb_unmatched_detections():
    gt = _gt([(1, 1, [0, 0, 10, 10], {}), (1, 1, [50, 50, 40, 40], {"iscrowd": 1})], 1)
    dets = _dets([
        (1, 1, [60, 60, 10, 10], 0.9),  # inside the crowd region (intersection / own area = 1): ignored
        (1, 1, [0, 0, 10, 10], 0.8),    # TP
        (1, 1, [85, 85, 10, 10], 0.7),  # a quarter inside the crowd: FP
    ])
    # 1 positive (a crowd is none); ign TP FP: recall 0 1 1, precision 0 1 1/2 -> 1 and 1
    ap07, ap = _both(gt, dets)
    assert ap["a"] == 1.0 and ap07["a"] == 1.0


def test_eleven_thresholds_are_exact_tenths():
    # 10 positives, 3 TPs: recall exactly 3/10. np.arange(0, 1.1, 0.1)[3] = 0.30000000000000004
    # would miss it (3/11); the definition takes it: t = 0, 0.1, 0.2, 0.3 -> 1: 4/11
    assert voc_ap(np.array([0.1, 0.2, 0.3]), np.ones(3), "voc07") == pytest.approx(4 / 11, abs=TOL)
    assert voc_ap(np.array([0.1, 0.2, 0.3]), np.ones(3), "voc") == pytest.approx(0.3, abs=TOL)
    assert np.arange(0, 1.1, 0.1)[3] > 3 / 10  # why it matters
    gt = _gt([(i, 1, [0, 0, 10, 10], {}) for i in range(1, 11)], 10)
    r = evaluate_voc(gt, _dets([(i, 1, [0, 0, 10, 10], 1 - i / 10) for i in range(1, 4)]), "voc07")
    assert r.mAP == pytest.approx(4 / 11, abs=TOL)


# The 7-image example of Padilla et al., "A Survey on Performance Metrics for Object-Detection
# Algorithms" (github.com/rafaelpadilla/Object-Detection-Metrics, MIT): one class, 15 objects,
# 24 detections, boxes [x, y, w, h] read with the devkit's +1 (x2 = x + w inclusive).
_PADILLA_GT = {
    1: [(25, 16, 38, 56), (129, 123, 41, 62)], 2: [(123, 11, 43, 55), (38, 132, 59, 45)],
    3: [(16, 14, 35, 48), (123, 30, 49, 44), (99, 139, 47, 47)], 4: [(53, 42, 40, 52), (154, 43, 31, 34)],
    5: [(59, 31, 44, 51), (48, 128, 34, 52)], 6: [(36, 89, 52, 76), (62, 58, 44, 67)],
    7: [(28, 31, 55, 63), (58, 67, 50, 58)],
}
_PADILLA_DT = {
    1: [(.88, 5, 67, 31, 48), (.70, 119, 111, 40, 67), (.80, 124, 9, 49, 67)],
    2: [(.71, 64, 111, 64, 58), (.54, 26, 140, 60, 47), (.74, 19, 18, 43, 35)],
    3: [(.18, 109, 15, 77, 39), (.67, 86, 63, 46, 45), (.38, 160, 62, 36, 53), (.91, 105, 131, 47, 47),
        (.44, 18, 148, 40, 44)],
    4: [(.35, 83, 28, 28, 26), (.78, 28, 68, 42, 67), (.45, 87, 89, 25, 39), (.14, 10, 155, 60, 26)],
    5: [(.62, 50, 38, 28, 46), (.44, 95, 11, 53, 28), (.95, 29, 131, 72, 29), (.23, 29, 163, 72, 29)],
    6: [(.45, 43, 48, 74, 38), (.84, 17, 155, 29, 35), (.43, 95, 110, 25, 42)],
    7: [(.48, 16, 20, 101, 88), (.95, 33, 116, 37, 49)],
}


def test_published_answer_padilla():
    # +1 convention -> continuous box [x - 1, y - 1, w + 1, h + 1] (module docstring, 4)
    gt = _gt([(i, 1, [x - 1, y - 1, w + 1, h + 1], {}) for i, boxes in _PADILLA_GT.items()
              for x, y, w, h in boxes], 7)
    dets = _dets([(i, 1, [x - 1, y - 1, w + 1, h + 1], s) for i, rows in _PADILLA_DT.items()
                  for s, x, y, w, h in rows])
    # their tests/test_case_1 (review_object_detection_metrics): AP by IoU threshold
    published = {"voc07": {0.3: 0.2683982683, 0.5: 0.0303030303, 0.75: 0.0},
                 "voc": {0.1: 0.3371980676, 0.3: 0.2456866804, 0.5: 0.0222222222, 0.75: 0.0}}
    for metric, answers in published.items():
        for thr, want in answers.items():
            assert evaluate_voc(gt, dets, metric, iou_threshold=thr).mAP == pytest.approx(want, abs=1e-10)
    # Their 11-point AP at IoU 0.1 is 0.3333333333: recall reaches exactly 9/15 = 0.6 (precision
    # 9/23 there), which their thresholds (np.linspace: 0.6000000000000001) miss; exact tenths count it.
    got = evaluate_voc(gt, dets, "voc07", iou_threshold=0.1).mAP
    assert got == pytest.approx(0.3333333333 + 9 / 23 / 11, abs=1e-10)
    assert evaluate_voc(gt, dets, "voc", iou_threshold=0.5).num_positives == {"a": 15}


# ----------------------------------------------------------------------------- a plain reference


def _iou(a: tuple, b: tuple, pixel: float) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + pixel
    ih = min(a[3], b[3]) - max(a[1], b[1]) + pixel
    if iw <= 0 or ih <= 0:
        return 0.0
    union = (a[2] - a[0] + pixel) * (a[3] - a[1] + pixel) + (b[2] - b[0] + pixel) * (b[3] - b[1] + pixel) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def _in_crowd(d: tuple, c: tuple, pixel: float) -> float:
    iw = min(d[2], c[2]) - max(d[0], c[0]) + pixel
    ih = min(d[3], c[3]) - max(d[1], c[1]) + pixel
    area = (d[2] - d[0] + pixel) * (d[3] - d[1] + pixel)
    return iw * ih / area if iw > 0 and ih > 0 and area > 0 else 0.0


def reference_ap(objects: list, detections: list, category: int, metric: str, thr: float, pixel: float) -> float:
    """One class's AP, one detection at a time, as VOCevaldet.m / VOCap.m / the VOC2007 loop.

    objects: (image, category, (x1, y1, x2, y2), difficult, crowd); detections: (image,
    category, (x1, y1, x2, y2), score). ``pixel`` = 1 is the devkit's inclusive-corner +1.
    """
    mine = [{"image": o[0], "box": o[2], "difficult": o[3], "crowd": o[4] and not o[3], "taken": False}  # difficult wins
            for o in objects if o[1] == category]
    npos = sum(1 for o in mine if not o["difficult"] and not o["crowd"])
    if npos == 0:
        return -1.0
    ranked = sorted((d for d in detections if d[1] == category), key=lambda d: -d[3])  # stable
    tp, fp = [], []
    for image, _, box, _ in ranked:
        best, jmax = -1.0, None
        for o in mine:
            if o["image"] == image and not o["crowd"]:
                ov = _iou(box, o["box"], pixel)
                if ov > best:
                    best, jmax = ov, o
        if best >= thr:
            if jmax["difficult"]:
                tp.append(0), fp.append(0)
            elif not jmax["taken"]:
                jmax["taken"] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        elif any(o["image"] == image and o["crowd"] and _in_crowd(box, o["box"], pixel) >= thr for o in mine):
            tp.append(0), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    rec, prec, ctp, cfp = [], [], 0, 0
    for t, f in zip(tp, fp):
        ctp, cfp = ctp + t, cfp + f
        rec.append(ctp / npos)
        prec.append(ctp / (ctp + cfp) if ctp + cfp else 0.0)
    if metric == "voc07":
        ap = 0.0
        for k in range(11):
            ap += max([p for r, p in zip(rec, prec) if r >= k / 10], default=0.0) / 11
        return ap
    mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def _random_case(rng: random.Random) -> tuple[list, list, int, int]:
    """Integer corners on a small grid (exact 0.5 IoUs), repeated objects (IoU ties), few distinct
    scores (score ties), difficult and crowd objects, empty images, duplicates, zero-size boxes."""
    images, categories = rng.randint(1, 6), rng.randint(1, 3)

    def box() -> tuple:
        x, y = rng.randint(0, 12), rng.randint(0, 12)
        return (x, y, x + rng.choice([0, 2, 4, 4, 5, 8, 10]), y + rng.choice([0, 2, 4, 4, 5, 8, 10]))

    objects = [(rng.randint(1, images), rng.randint(1, categories), box(), rng.random() < 0.2, rng.random() < 0.08)
               for _ in range(rng.randint(0, 12))]
    objects += [(o[0], o[1], o[2], rng.random() < 0.3, False) for o in objects if rng.random() < 0.25]  # IoU ties
    detections = []
    for _ in range(rng.randint(0, 25)):
        near = [o for o in objects if rng.random() < 0.7]
        if near and rng.random() < 0.6:  # on or near an object: duplicates and partial overlaps
            o = rng.choice(near)
            dx, dy = rng.choice([0, 0, 1, -2, 3]), rng.choice([0, 0, 1, 2])
            b = (o[2][0] + dx, o[2][1] + dy, o[2][2] + dx, o[2][3] + dy)
            detections.append((o[0], o[1] if rng.random() < 0.9 else rng.randint(1, categories), b,
                               rng.choice([0.1, 0.3, 0.5, 0.5, 0.7, 0.9])))
        else:
            detections.append((rng.randint(1, images), rng.randint(1, categories), box(),
                               rng.choice([0.1, 0.3, 0.5, 0.7, 0.9])))
    return objects, detections, images, categories


def _as_coco(objects: list, detections: list, images: int, categories: int, pixel: float) -> tuple[dict, list]:
    """Corners -> COCO boxes; with pixel = 1 the devkit's inclusive corners: [x1 - 1, y1 - 1, w + 1, h + 1]."""
    def xywh(b: tuple) -> list:
        return [b[0] - pixel, b[1] - pixel, b[2] - b[0] + pixel, b[3] - b[1] + pixel]

    gt = _gt([(im, c, xywh(b), {"difficult": int(diff), "iscrowd": int(crowd)})
              for im, c, b, diff, crowd in objects], images, categories)
    return gt, _dets([(im, c, xywh(b), s) for im, c, b, s in detections])


@pytest.mark.parametrize("pixel", [0.0, 1.0], ids=["continuous", "devkit+1"])
def test_matches_plain_reference_on_random_cases(pixel):
    """continuous: our COCO boxes against the reference on the same corners; devkit+1: VOC-style
    inclusive integer corners scored with the devkit's +1, against ours on the converted boxes."""
    rng = random.Random(13)
    for case in range(400):
        objects, detections, images, categories = _random_case(rng)
        gt, dets = _as_coco(objects, detections, images, categories, pixel)
        got = evaluate_coco(gt, dets, metrics=VOC_METRICS).voc
        for metric in VOC_METRICS:
            want = {"abcdefgh"[c - 1]: reference_ap(objects, detections, c, metric, 0.5, pixel)
                    for c in range(1, categories + 1)}
            assert got[metric].per_class.keys() == want.keys()
            for name, value in want.items():
                assert abs(got[metric].per_class[name] - value) <= TOL, (case, metric, name)
            defined = [v for v in want.values() if v >= 0]
            assert abs(got[metric].mAP - (np.mean(defined) if defined else -1.0)) <= TOL


# ----------------------------------------------------------------------------- API and tool


def test_coco_and_voc_together_and_errors():
    objects, detections, images, categories = _random_case(random.Random(5))
    gt, dets = _as_coco(objects, detections, images, categories, 0.0)
    both = evaluate_coco(gt, dets, metrics=["coco", "voc07", "voc"])
    coco_only = evaluate_coco(gt, dets)
    assert both.stats == coco_only.stats and not coco_only.voc
    assert set(both.voc) == {"voc07", "voc"} and both.voc["voc"].mAP == evaluate_voc(gt, dets, "voc").mAP
    voc_only = evaluate_coco(gt, dets, metrics=["voc07"])
    assert voc_only.stats == [] and "stats" not in voc_only.to_json() and "AP" not in voc_only.to_json()
    j = json.loads(json.dumps(both.to_json()))
    assert j["voc07"]["mAP"] == both.voc["voc07"].mAP and j["AP"] == both.stats[0]
    assert set(METRICS) == {"coco", *VOC_METRICS}
    with pytest.raises(ValueError, match="metrics must be some of"):
        evaluate_coco(gt, dets, metrics=["voc12"])
    with pytest.raises(ValueError, match="VOC metrics must be among"):
        evaluate_voc(gt, dets, "coco")
    with pytest.raises(ValueError, match="bbox"):
        evaluate_voc(gt, [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 0.5}])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_voc(gt, [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": float("nan")}])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_voc(gt, [{"image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}])


def test_eval_tool_metric_flag(tmp_path, capsys):
    from ssdlite.apps.cli import run
    from ssdlite.tools import eval as eval_tool

    assert eval_tool.METRICS == METRICS
    gt = _gt([(1, 1, [0, 0, 10, 10], {}), (1, 2, [0, 0, 10, 10], {"difficult": 1})], 2, categories=2)
    dets = _dets([(1, 1, [0, 0, 10, 10], 0.9), (2, 1, [0, 0, 10, 10], 0.95)])
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    common = ["--annotations", str(tmp_path / "gt.json"), "--results", str(tmp_path / "dt.json")]
    assert run(eval_tool.main, eval_tool.build_parser(),
               common + ["--metric", "coco", "voc07", "voc", "--json-out", str(tmp_path / "m.json")]) == 0
    shown = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in shown and "VOC mAP @[ IoU=0.50 ] 11-point" in shown
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["voc07"]["per_class"] == {"a": 0.5, "b": -1.0} and metrics["voc"]["mAP"] == 0.5
    assert len(metrics["stats"]) == 12 and (tmp_path / "m_pr.png").exists()
    # VOC alone: no COCO stats, no plot; --plot asks for COCO curves
    assert run(eval_tool.main, eval_tool.build_parser(),
               common + ["--metric", "voc", "--json-out", str(tmp_path / "v.json")]) == 0
    shown = capsys.readouterr().out
    assert "Average Precision" not in shown and "area under the interpolated curve" in shown
    assert set(json.loads((tmp_path / "v.json").read_text())) == {"voc", "num_images", "num_detections"}
    assert not (tmp_path / "v_pr.png").exists()
    assert run(eval_tool.main, eval_tool.build_parser(), common + ["--metric", "voc", "--plot", "p.png"]) == 2
    assert "add --metric coco" in capsys.readouterr().err


def test_a_voc_split_s_difficult_objects_follow_the_devkit_not_the_crowd_rule():
    """A VOC split's difficult object is an ignore region (iscrowd 1) for COCO and "difficult" for VOC:
    a small detection inside it is an FP by the devkit's IoU rule (a crowd would swallow it)."""
    from ssdlite.eval.voc import evaluate_voc

    gt = {"images": [{"id": 1, "width": 200, "height": 200}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 1,
                           "difficult": 1},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [120, 120, 50, 50], "area": 2500, "iscrowd": 0}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},  # inside the difficult one, IoU 0.16
            {"image_id": 1, "category_id": 1, "bbox": [120, 120, 50, 50], "score": 0.8}]
    # devkit: FP (0.9) then TP (0.8): precision at recall 1 is 1/2, AP 0.5; as a crowd the FP would be ignored (AP 1)
    assert evaluate_voc(gt, dets, "voc").per_class["a"] == pytest.approx(0.5)
    crowd = {**gt, "annotations": [{**gt["annotations"][0], "difficult": 0}, gt["annotations"][1]]}
    assert evaluate_voc(crowd, dets, "voc").per_class["a"] == pytest.approx(1.0)
