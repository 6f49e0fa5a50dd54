"""Check that an exported file (in its own runtime) and the PyTorch back end give the same detections.

:func:`verify_export` runs both on the same images and pairs their detections
(:func:`compare_detections`); ``tools/export.py --verify`` prints the :class:`VerifyReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["verify_export", "VerifyReport", "compare_detections", "default_verify_images"]


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

    def summary(self) -> str:
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
