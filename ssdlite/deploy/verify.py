"""Check that an exported file (in its own runtime) and the PyTorch back end give the same detections.

:func:`verify_export` runs both on the same images and pairs their detections
(:func:`compare_detections`); ``tools/export.py --verify`` prints the :class:`VerifyReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["verify_export", "VerifyReport", "compare_detections", "match_quantized", "default_verify_images", "INT8_TOLERANCE"]

# How a quantized (int8) file is compared with PyTorch: int8 arithmetic moves scores and boxes a little, so
# detections are paired as COCO's AP50 pairs them (same label, IoU >= iou) instead of by exact coordinates.
# margin / min_score: detections scoring above max(score_thresh + margin, min_score) must be paired (the confident
# ones an app shows; partners may score down to score_thresh); min_match: the share of them that must find a partner (and at most 1 - min_match extra ones);
# raw_rel: mean |int8 - torch| / std(torch) of each raw output, over all images.
INT8_TOLERANCE = {"iou": 0.5, "margin": 0.05, "min_score": 0.3, "min_match": 0.85, "raw_rel": 0.15}


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_export`: ``ok`` and the worst differences seen."""

    ok: bool
    images: int
    compared: int  # detections compared (above the floor)
    max_box_diff: float  # px, of the original images
    max_score_diff: float
    max_logit_diff: float | None  # raw exports only
    max_delta_diff: float | None
    problems: list[str] = field(default_factory=list)  # worst first
    floor: float = 0.0  # detections scoring above this were required to match
    matched: int | None = None  # quantized files: detections paired at IoU >= INT8_TOLERANCE["iou"]
    raw_rel_diff: dict | None = None  # quantized files: mean |diff| / std(torch) of each raw output

    def summary(self) -> str:
        if self.matched is not None:
            return self._summary_quantized()
        raw = (
            f", raw outputs max |diff| logits {self.max_logit_diff:.2e} deltas {self.max_delta_diff:.2e}"
            if self.max_logit_diff is not None
            else ""
        )
        head = (
            f"{'OK' if self.ok else 'MISMATCH'}: {self.images} images, {self.compared} detections compared (score > {self.floor:.4g}), "
            f"max box diff {self.max_box_diff:.4f} px, max score diff {self.max_score_diff:.2e}{raw}"
        )
        if self.problems:
            shown = self.problems[:10]
            more = f"\n  ... and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
            head += "\n  " + "\n  ".join(shown) + more
        return head

    def _summary_quantized(self) -> str:
        rate = self.matched / self.compared if self.compared else 1.0
        rel = ", ".join(f"{k} {v:.3f}" for k, v in (self.raw_rel_diff or {}).items())
        head = (
            f"{'OK' if self.ok else 'MISMATCH'} (int8, paired at IoU >= {INT8_TOLERANCE['iou']}): {self.images} images, "
            f"{self.matched}/{self.compared} detections (score > {self.floor:.4g}) matched ({100 * rate:.1f}%, need "
            f"{100 * INT8_TOLERANCE['min_match']:.0f}%), matched pairs max box diff {self.max_box_diff:.2f} px, max score diff "
            f"{self.max_score_diff:.3f}; raw outputs mean |diff| / std {rel} (tolerance {INT8_TOLERANCE['raw_rel']})"
        )
        if self.problems:
            head += "\n  " + "\n  ".join(self.problems[:10]) + (f"\n  ... and {len(self.problems) - 10} more" if len(self.problems) > 10 else "")
        return head


def default_verify_images() -> list[Path]:
    """Images to verify an export on: the photos of ``<shared data>/photos/darknet/*.jpg`` when that
    folder exists, else four generated shape scenes (written once to a temp folder and reused), so
    ``--verify`` works in any clone."""
    from ssdlite._paths import shared_data_dir

    root = shared_data_dir()
    photos = sorted((root / "photos" / "darknet").glob("*.jpg")) if root else []
    return photos or _generated_images()


def _generated_images(count: int = 4, size: int = 416) -> list[Path]:
    """``count`` synthetic scenes (shapes on textured backgrounds) as PNG files in a temp folder."""
    import tempfile

    import cv2

    from ssdlite.data.synthetic import render_image
    from ssdlite.files import atomic_write

    folder = Path(tempfile.gettempdir()) / f"ssdlite-verify-images-{count}-{size}"
    paths = [folder / f"scene_{i}.png" for i in range(count)]
    for i, path in enumerate(paths):
        if not path.is_file():
            rgb, _ = render_image(np.random.default_rng(i), size=size)
            ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"cannot encode the generated image {path}")
            atomic_write(path, lambda f, data=png: f.write(data.tobytes()))
    return paths


def compare_detections(
    ref: Any,
    other: Any,
    floor: float,
    box_tol: float = 0.5,
    score_tol: float = 1e-4,
    tag: str = "",
) -> tuple[int, list[tuple[float, str]], float, float]:
    """Match two detection lists of one image (``boxes (N,4)``, ``scores (N,)``, ``labels (N,)``).

    Every detection scoring above ``floor`` in either list must have a partner in the other
    list with the same label, ``|score diff| <= score_tol`` and every box coordinate within
    ``box_tol``. Pairs are formed greedily by descending reference score, each partner being the
    closest box of that label; reference detections just under the floor (within
    ``2 * score_tol``) take part in the pairing without being required to match.

    Returns:
        (detections compared, problems as (severity, message), max box diff, max score diff)
    """
    problems: list[tuple[float, str]] = []
    max_box = max_score = 0.0
    compared = 0
    r_boxes, r_scores, r_labels = (np.asarray(x) for x in (ref.boxes, ref.scores, ref.labels))
    o_boxes, o_scores, o_labels = (np.asarray(x) for x in (other.boxes, other.scores, other.labels))
    used = np.zeros(len(o_scores), dtype=bool)

    def show(box: np.ndarray) -> list[float]:
        return np.round(box, 2).tolist()

    for i in np.argsort(-r_scores, kind="stable"):
        if r_scores[i] <= floor - 2 * score_tol:
            break
        required = r_scores[i] > floor
        compared += int(required)
        same = np.nonzero((o_labels == r_labels[i]) & ~used)[0]
        if len(same) == 0:
            if required:
                problems.append((1e9, f"{tag}missing from the exported file's result: label {r_labels[i]} score {r_scores[i]:.5f} box {show(r_boxes[i])}"))
            continue
        box_diff = np.abs(o_boxes[same] - r_boxes[i]).max(axis=1)
        j = same[int(np.argmin(box_diff))]
        d_box, d_score = float(box_diff.min()), float(abs(o_scores[j] - r_scores[i]))
        within = d_box <= box_tol and d_score <= score_tol
        if not within and not required:
            continue  # below the floor: pair only what agrees
        used[j] = True
        if required:
            max_box, max_score = max(max_box, d_box), max(max_score, d_score)
        if not within:
            problems.append(
                (max(d_box / box_tol, d_score / score_tol),
                 f"{tag}label {r_labels[i]}: score torch {r_scores[i]:.6f} vs export {o_scores[j]:.6f} (diff {d_score:.2e}), "
                 f"box torch {show(r_boxes[i])} vs export {show(o_boxes[j])} (max diff {d_box:.3f} px)")
            )
    for j in np.nonzero(~used & (o_scores > floor))[0]:
        problems.append((1e9, f"{tag}extra in the exported file's result: label {o_labels[j]} score {o_scores[j]:.5f} box {show(o_boxes[j])}"))
    return compared, problems, max_box, max_score


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of ``boxes`` (K, 4)."""
    wh = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def match_quantized(ref: Any, other: Any, floor: float, iou: float = 0.5, tag: str = "") -> tuple[int, int, list[str], list[float], list[float]]:
    """Pair the detections of a quantized file (``other``) with PyTorch's (``ref``) as COCO's AP50 does.

    Reference detections are taken by descending score; each takes the unused ``other`` detection
    of its label with the highest IoU, if that IoU is ``>= iou``. Those scoring above ``floor`` are
    required (counted); the ones below it only soak up partners. ``other`` detections above
    ``floor`` left without a partner are extras.

    Returns:
        (required, matched, problems (missing / extra, one line each), box diffs px, score diffs) of the matched pairs
    """
    r_boxes, r_scores, r_labels = (np.asarray(x) for x in (ref.boxes, ref.scores, ref.labels))
    o_boxes, o_scores, o_labels = (np.asarray(x) for x in (other.boxes, other.scores, other.labels))
    used = np.zeros(len(o_scores), dtype=bool)
    required = matched = 0
    problems: list[str] = []
    box_diffs: list[float] = []
    score_diffs: list[float] = []
    for i in np.argsort(-r_scores, kind="stable"):
        need = bool(r_scores[i] > floor)
        required += int(need)
        same = np.nonzero((o_labels == r_labels[i]) & ~used)[0]
        overlaps = _iou(r_boxes[i], o_boxes[same]) if len(same) else np.zeros(0)
        if len(same) and overlaps.max() >= iou:
            j = same[int(np.argmax(overlaps))]
            used[j] = True
            if need:
                matched += 1
                box_diffs.append(float(np.abs(o_boxes[j] - r_boxes[i]).max()))
                score_diffs.append(float(abs(o_scores[j] - r_scores[i])))
        elif need:
            best = f"best IoU {overlaps.max():.2f}" if len(same) else "no detection of that label"
            problems.append(f"{tag}missing from the int8 result: label {r_labels[i]} score {r_scores[i]:.3f} box {[round(float(v), 1) for v in r_boxes[i]]} ({best})")
    for j in np.nonzero(~used & (o_scores > floor))[0]:
        problems.append(f"{tag}extra in the int8 result: label {o_labels[j]} score {o_scores[j]:.3f} box {[round(float(v), 1) for v in o_boxes[j]]}")
    return required, matched, problems, box_diffs, score_diffs


def _floor(dets: Sequence[Any], thresh: float, cap: int, margin: float) -> float:
    """Scores above this are compared: the threshold, or the lowest kept score when the per-image cap cut
    the list (what lies just below a cut may differ by rounding), plus a margin."""
    floor = thresh
    for d in dets:
        if len(d.scores) >= cap:
            floor = max(floor, float(np.min(d.scores)))
    return floor + margin


def verify_export(
    onnx_path: str | Path,
    checkpoint: str | Path,
    images: Sequence[str | Path] | None = None,
    *,
    backend: str | None = None,
    threads: int | None = None,
    score_thresh: float | None = None,
    box_tol: float = 0.5,
    score_tol: float = 1e-4,
    margin: float | None = None,
    raw_atol: float = 1e-3,
    raw_rtol: float = 1e-4,
) -> VerifyReport:
    """Run the PyTorch back end on ``checkpoint`` and ``backend`` (default: the one that runs the
    file, ONNX Runtime for ``.onnx``) on the exported ``onnx_path`` and compare.

    Both run at ``score_thresh`` (default: the checkpoint config's). Detections scoring above
    ``score_thresh + margin`` (``margin`` defaults to ``10 * score_tol``; raised to the lowest
    kept score + margin where ``detections_per_img`` cut the list) must match one to one: same
    label, scores within ``score_tol``, boxes within ``box_tol`` px of the original image.
    Works with random weights too: what is compared is what both back ends must agree on.
    ``images`` default to :func:`default_verify_images`. A ``with_nms`` export is compared the
    same way (its boxes scaled back to the image like the Detector's). For raw exports the
    network outputs themselves must also agree within ``raw_atol + raw_rtol * max|output|``.

    A quantized file (its runner's ``precision`` is ``"int8"``) cannot agree to 1e-4: its
    detections are paired as COCO's AP50 pairs them and judged by :data:`INT8_TOLERANCE` (the
    share of confident detections matched, the mean raw-output error relative to the outputs'
    spread); ``box_tol`` / ``score_tol`` / ``raw_*`` do not apply to it.
    """
    from ssdlite.data.images import load_image
    from ssdlite.deploy.detector import Detector, Detections, preprocess
    from ssdlite.deploy.backends import default_backend, make_runner

    paths = [Path(p) for p in (images if images is not None else default_verify_images())]
    if not paths:
        raise ValueError("no images to verify on: the list of images is empty")
    frames = [load_image(p) for p in paths]
    kwargs = {} if score_thresh is None else {"score_thresh": score_thresh}
    ref_det = Detector.from_checkpoint(checkpoint, backend="torch", threads=threads, **kwargs)
    thresh = ref_det.cfg.postprocess.score_thresh
    cap = ref_det.cfg.postprocess.detections_per_img
    runner = make_runner(backend or default_backend(onnx_path), onnx_path, threads=threads)

    ref, other = [], []
    max_logit = max_delta = None
    quantized = getattr(runner, "precision", "fp32") == "int8"
    abs_sum = {"cls_logits": 0.0, "box_deltas": 0.0}
    moments = {k: [0.0, 0.0, 0] for k in abs_sum}  # sum, sum of squares, count of the torch outputs
    if getattr(runner, "outputs", "raw") == "raw":
        onnx_det = Detector(None, runner.config(), runner=runner, **kwargs)
        max_logit = max_delta = raw_scale = 0.0
        for frame in frames:
            batch, maps = preprocess([frame], ref_det.input_size, ref_det.cfg.preprocess)
            t_cls, t_box = ref_det.raw(batch)
            o_cls, o_box = onnx_det.raw(batch)
            t_cls, t_box = t_cls.numpy(), t_box.numpy()
            max_logit = max(max_logit, float(np.abs(t_cls - o_cls).max()))
            max_delta = max(max_delta, float(np.abs(t_box - o_box).max()))
            raw_scale = max(raw_scale, float(np.abs(t_cls).max()), float(np.abs(t_box).max()))
            for key, t, o in (("cls_logits", t_cls, o_cls), ("box_deltas", t_box, o_box)):
                abs_sum[key] += float(np.abs(t.astype(np.float64) - o).sum())
                moments[key][0] += float(t.sum(dtype=np.float64))
                moments[key][1] += float(np.square(t, dtype=np.float64).sum())
                moments[key][2] += t.size
            ref += ref_det.postprocess(t_cls, t_box, maps)
            other += onnx_det.postprocess(o_cls, o_box, maps)
    else:
        if score_thresh is not None and abs(score_thresh - runner.postprocess["score_thresh"]) > 1e-12:
            raise ValueError(
                f"{onnx_path} has NMS in the graph at score_thresh {runner.postprocess['score_thresh']}; "
                f"it cannot be verified at {score_thresh}"
            )
        thresh = runner.postprocess["score_thresh"]
        for frame in frames:
            ref += ref_det([frame])
            batch, maps = preprocess([frame], ref_det.input_size, ref_det.cfg.preprocess)
            (boxes, scores, labels), = runner.detect(batch)
            names = [ref_det.class_names[i] for i in labels]
            other.append(Detections(maps[0].to_image(boxes), scores, labels, names))

    if quantized and max_logit is not None:
        return _verify_quantized(paths, ref, other, thresh, cap, abs_sum, moments, max_logit, max_delta)
    floor = _floor(ref + other, thresh, cap, 10 * score_tol if margin is None else margin)
    compared, problems = 0, []
    max_box = max_score = 0.0
    for path, a, b in zip(paths, ref, other):
        n, probs, mb, ms = compare_detections(a, b, floor, box_tol, score_tol, tag=f"{path.name}: ")
        compared += n
        problems += probs
        max_box, max_score = max(max_box, mb), max(max_score, ms)
    if max_logit is not None:
        # raw outputs: what the detections hide when scores are flat (e.g. untrained weights)
        raw_tol = raw_atol + raw_rtol * raw_scale
        for what, diff in (("cls_logits", max_logit), ("box_deltas", max_delta)):
            if diff > raw_tol:
                problems.append((diff / raw_tol, f"raw {what} differ by up to {diff:.2e} (tolerance {raw_tol:.2e})"))
    problems.sort(key=lambda p: -p[0])
    return VerifyReport(
        ok=not problems,
        images=len(paths),
        compared=compared,
        max_box_diff=max_box,
        max_score_diff=max_score,
        max_logit_diff=max_logit,
        max_delta_diff=max_delta,
        problems=[m for _, m in problems],
        floor=floor,
    )


def _verify_quantized(paths: Sequence[Path], ref: list, other: list, thresh: float, cap: int, abs_sum: dict, moments: dict,
                      max_logit: float, max_delta: float) -> VerifyReport:
    """The verdict on a quantized file (see :data:`INT8_TOLERANCE` and :func:`match_quantized`)."""
    tol = INT8_TOLERANCE
    floor = max(_floor(ref + other, thresh, cap, tol["margin"]), tol["min_score"])
    required = matched = 0
    problems: list[str] = []
    box_diffs: list[float] = []
    score_diffs: list[float] = []
    for path, a, b in zip(paths, ref, other):
        n, m, probs, bd, sd = match_quantized(a, b, floor, tol["iou"], tag=f"{path.name}: ")
        required, matched = required + n, matched + m
        problems += probs
        box_diffs += bd
        score_diffs += sd
    verdicts = []
    if required and matched < tol["min_match"] * required:
        verdicts.append(f"only {matched} of {required} detections found a partner ({100 * matched / required:.1f}% < {100 * tol['min_match']:.0f}%)")
    extras = sum(p.split(": ", 1)[-1].startswith("extra") for p in problems)
    if extras > (1 - tol["min_match"]) * max(required, 1):
        verdicts.append(f"{extras} extra detections for {required} compared")
    rel = {}
    for key, (s1, s2, n) in moments.items():
        std = float(np.sqrt(max(s2 / n - (s1 / n) ** 2, 0.0))) if n else 0.0
        rel[key] = abs_sum[key] / n / max(std, 1e-12) if n else 0.0
        if rel[key] > tol["raw_rel"]:
            verdicts.append(f"raw {key} mean |diff| is {rel[key]:.3f} of their std (tolerance {tol['raw_rel']})")
    return VerifyReport(
        ok=not verdicts,
        images=len(paths),
        compared=required,
        max_box_diff=max(box_diffs, default=0.0),
        max_score_diff=max(score_diffs, default=0.0),
        max_logit_diff=max_logit,
        max_delta_diff=max_delta,
        problems=verdicts + problems,
        floor=floor,
        matched=matched,
        raw_rel_diff=rel,
    )
