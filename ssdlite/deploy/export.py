"""Export to a self-contained ONNX file, and check that both back ends agree.

Two variants (``ssdlite.outputs`` in the metadata):

``"raw"`` (default)
    The network only, BatchNorm folded into the convolutions. Input ``images`` float32
    ``(N, 3, H, W)``, already resized and normalized (:func:`ssdlite.deploy.detector.preprocess`);
    outputs ``cls_logits`` ``(N, A, C + 1)`` (column 0 = background) and ``box_deltas``
    ``(N, A, 4)``. Anchors, decoding and NMS stay outside the graph, in
    :mod:`ssdlite.model.postprocess`, so ``Detector.from_checkpoint("model.onnx")`` gives the same
    detections as the PyTorch back end.
``"nms"`` (``with_nms=True``)
    For runtimes without our postprocess: softmax (or sigmoid for focal models), per-class top-k,
    box decoding and clipping, ONNX ``NonMaxSuppression`` (per class) and the per-image cap are
    in the graph. Outputs ``boxes`` ``(D, 4)`` float32 xyxy in pixels of the *network input*
    (scale by ``(W_img / W, H_img / H)`` for a stretched image), ``scores`` ``(D,)`` float32,
    ``labels`` ``(D,)`` int64 0-based class indices and ``batch_index`` ``(D,)`` int64, sorted by
    score descending. Same steps as ``ssdlite.model.postprocess``: scores strictly above
    ``score_thresh``, the ``topk_candidates`` best of each class (the others zeroed before NMS),
    per-class NMS at ``nms_thresh``, at most ``detections_per_img`` per image; ties in score
    may be ordered differently. The thresholds are fixed at export (re-export to change them).
    ``tools/export.py --with-nms --verify`` checks it against the PyTorch back end.

Every file carries in ``metadata_props`` (all strings): ``ssdlite.format`` (``"ssdlite-onnx"``),
``ssdlite.format_version``, ``ssdlite.outputs``, ``ssdlite.config`` (the full config as JSON,
:func:`ssdlite.config.to_dict`), ``ssdlite.class_names`` (JSON list), ``ssdlite.input_size``
(JSON ``[H, W]``), ``ssdlite.preprocess`` (JSON: resize, mean, std, pad_value),
``ssdlite.postprocess`` (JSON: thresholds, top-k, classification, box_weights),
``ssdlite.feature_sizes`` (JSON ``[[h, w], ...]``), ``ssdlite.anchors`` (base64 of little-endian
float32 ``(A, 4)`` xyxy input pixels) and ``ssdlite.anchors_shape`` (JSON ``[A, 4]``).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ssdlite.config import Config, class_names_of, to_dict

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "export_onnx",
    "build_metadata",
    "verify_export",
    "VerifyReport",
    "compare_detections",
    "default_verify_images",
]

FORMAT = "ssdlite-onnx"
FORMAT_VERSION = 1
MIN_OPSET, MAX_OPSET = 13, 20  # what torch's TorchScript exporter writes and our NMS graph needs (ReduceSum axes input)


# ----------------------------------------------------------------------------- metadata


def build_metadata(cfg: Config, feature_sizes: Sequence[tuple[int, int]], anchors: np.ndarray, outputs: str) -> dict[str, str]:
    """The ``metadata_props`` of an export (see the module docstring); all values are strings."""
    anchors = np.ascontiguousarray(anchors, dtype="<f4")
    p = cfg.postprocess
    return {
        "ssdlite.format": FORMAT,
        "ssdlite.format_version": str(FORMAT_VERSION),
        "ssdlite.outputs": outputs,
        "ssdlite.config": json.dumps(to_dict(cfg)),
        "ssdlite.class_names": json.dumps(class_names_of(cfg.model)),
        "ssdlite.input_size": json.dumps(list(cfg.model.input_size)),
        "ssdlite.preprocess": json.dumps(
            {
                "resize": cfg.preprocess.resize,
                "mean": list(cfg.preprocess.mean),
                "std": list(cfg.preprocess.std),
                "pad_value": cfg.preprocess.pad_value,
                "color": "RGB",
                "layout": "NCHW",
                "formula": "(pixel / 255 - mean) / std",
            }
        ),
        "ssdlite.postprocess": json.dumps(
            {
                "score_thresh": p.score_thresh,
                "topk_candidates": p.topk_candidates,
                "nms_thresh": p.nms_thresh,
                "detections_per_img": p.detections_per_img,
                "classification": cfg.loss.classification,
                "box_weights": list(cfg.loss.box_weights),
            }
        ),
        "ssdlite.feature_sizes": json.dumps([list(s) for s in feature_sizes]),
        "ssdlite.anchors": base64.b64encode(anchors.tobytes()).decode("ascii"),
        "ssdlite.anchors_shape": json.dumps(list(anchors.shape)),
    }


# ----------------------------------------------------------------------------- export


def _resolve(checkpoint_or_model: Any, cfg: Config | None):
    """(model, cfg) from a checkpoint path or a model + config."""
    if isinstance(checkpoint_or_model, (str, os.PathLike)):
        from ssdlite.model.checkpoint import load_model

        model, stored = load_model(checkpoint_or_model)
        return model, cfg if cfg is not None else stored
    if cfg is None:
        raise ValueError("export_onnx: a model needs its config (cfg=...); a checkpoint path carries its own")
    return checkpoint_or_model, cfg


def _decoded_module(model: Any, anchors: Any, cfg: Config):
    """Wrap the network: images -> (boxes (N, A, 4) xyxy clipped input px, scores (N, C, A)).

    Scores are the softmax over the C + 1 columns without the background (sigmoid for focal
    models), then kept only where they are among the ``topk_candidates`` best of their class
    (others set to 0, below any score threshold), as ``ssdlite.model.postprocess`` selects them.
    """
    import torch
    from torch import nn

    from ssdlite.model.box_coder import decode
    from ssdlite.model.postprocess import class_scores

    h, w = cfg.model.input_size
    topk = min(cfg.postprocess.topk_candidates, int(anchors.shape[0]))

    class Decoded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.register_buffer("anchors", anchors.clone().float())

        def forward(self, images):
            cls_logits, box_deltas = self.net(images)
            scores = class_scores(cls_logits, cfg.loss.classification).transpose(1, 2)  # (N, C, A)
            kth = torch.topk(scores, topk, dim=2).values[:, :, -1:]  # (N, C, 1)
            scores = torch.where(scores >= kth, scores, torch.zeros_like(scores))
            boxes = decode(box_deltas, self.anchors, cfg.loss.box_weights)
            x = boxes[..., 0::2].clamp(min=0, max=w)
            y = boxes[..., 1::2].clamp(min=0, max=h)
            boxes = torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)
            return boxes, scores

    return Decoded().eval()


def _append_nms(graph: Any, cfg: Config) -> None:
    """Replace the graph outputs (decoded_boxes (N,A,4), class_scores (N,C,A)) by NMS results.

    Outputs: boxes (D, 4), scores (D,), labels (D,) int64, batch_index (D,) int64, sorted by
    score descending, at most ``detections_per_img`` per image.
    """
    from onnx import TensorProto, helper, numpy_helper

    p = cfg.postprocess
    nodes = []

    def const(name: str, value: Any, dtype: Any) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str | list[str], **attrs: Any) -> str | list[str]:
        outs = [output] if isinstance(output, str) else output
        nodes.append(helper.make_node(op, inputs, outs, name=f"ssdlite_{outs[0]}", **attrs))
        return output

    c_max = const("nms_max_per_class", [p.topk_candidates], np.int64)
    c_iou = const("nms_iou_thresh", [p.nms_thresh], np.float32)
    c_score = const("nms_score_thresh", [p.score_thresh], np.float32)
    c_i0 = const("nms_idx0", 0, np.int64)
    c_i1 = const("nms_idx1", 1, np.int64)
    c_i2 = const("nms_idx02", [0, 2], np.int64)
    c_ax1 = const("nms_axis1", [1], np.int64)
    c_ax0 = const("nms_axis0", [0], np.int64)
    c_one = const("nms_one", 1, np.int64)
    c_cap = const("nms_cap", p.detections_per_img, np.int64)

    sel = node("NonMaxSuppression", ["decoded_boxes", "class_scores", c_max, c_iou, c_score], "nms_selected", center_point_box=0)
    batch_idx = node("Gather", [sel, c_i0], "nms_batch", axis=1)  # (K,)
    label_idx = node("Gather", [sel, c_i1], "nms_class", axis=1)  # (K,) class column (background excluded)
    box_sel = node("Gather", [sel, c_i2], "nms_batch_anchor", axis=1)  # (K, 2)
    boxes_k = node("GatherND", ["decoded_boxes", box_sel], "nms_boxes_k")  # (K, 4)
    scores_k = node("GatherND", ["class_scores", sel], "nms_scores_k")  # (K,)
    k = node("Shape", [scores_k], "nms_k")  # [K]
    top_s, top_i = node("TopK", [scores_k, k], ["nms_sorted_scores", "nms_order"], axis=0, largest=1, sorted=1)
    b_sorted = node("Gather", [batch_idx, top_i], "nms_sorted_batch", axis=0)
    l_sorted = node("Gather", [label_idx, top_i], "nms_sorted_labels", axis=0)
    bx_sorted = node("Gather", [boxes_k, top_i], "nms_sorted_boxes", axis=0)
    # rank of each detection inside its image: cumulative count over a one-hot (K, N) of batch indices
    shape_in = node("Shape", ["images"], "nms_images_shape")
    n = node("Gather", [shape_in, c_i0], "nms_n", axis=0)
    batch_range = node("Range", [c_i0, n, c_one], "nms_batch_range")
    onehot_b = node("Equal", [node("Unsqueeze", [b_sorted, c_ax1], "nms_b_col"), node("Unsqueeze", [batch_range, c_ax0], "nms_r_row")], "nms_onehot_b")
    onehot = node("Cast", [onehot_b], "nms_onehot", to=TensorProto.INT64)
    cum = node("CumSum", [onehot, c_i0], "nms_cumsum")
    rank1 = node("ReduceSum", [node("Mul", [cum, onehot], "nms_cum_own"), c_ax1], "nms_rank1", keepdims=0)
    keep = node("LessOrEqual", [rank1, c_cap], "nms_keep")
    node("Compress", [bx_sorted, keep], "boxes", axis=0)
    node("Compress", [top_s, keep], "scores", axis=0)
    node("Compress", [l_sorted, keep], "labels", axis=0)
    node("Compress", [b_sorted, keep], "batch_index", axis=0)

    graph.node.extend(nodes)
    while len(graph.output):
        graph.output.pop()
    graph.output.extend(
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["detections", 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["detections"]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, ["detections"]),
            helper.make_tensor_value_info("batch_index", TensorProto.INT64, ["detections"]),
        ]
    )


def export_onnx(
    checkpoint_or_model: Any,
    cfg: Config | None,
    out_path: str | Path,
    opset: int = 17,
    dynamic_batch: bool = False,
    with_nms: bool = False,
) -> Path:
    """Export an ssdlite model to a self-contained ONNX file (see the module docstring).

    Args:
        checkpoint_or_model: a ``.pt`` checkpoint path (its config is used when ``cfg`` is None)
            or an ``SSDLite`` module (``cfg`` required).
        cfg: the model's config, or None with a checkpoint.
        out_path: where to write the ``.onnx`` (written atomically, parent folders created).
        opset: ONNX opset, 13..20.
        dynamic_batch: a symbolic batch dimension instead of a fixed batch of 1.
        with_nms: put decoding + NMS in the graph (outputs boxes/scores/labels/batch_index).

    Returns:
        The path written. The file passes ``onnx.checker.check_model(full_check=True)``.
    """
    import onnx
    import torch

    from ssdlite.model.anchors import AnchorGenerator
    from ssdlite.files import atomic_write
    from ssdlite.deploy.fuse import fuse_conv_bn

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET}")
    model, cfg = _resolve(checkpoint_or_model, cfg)
    out_path = Path(out_path)
    model = fuse_conv_bn(model).float().cpu().eval()  # a folded copy; the caller's model is untouched
    h, w = cfg.model.input_size
    feature_sizes = model.feature_sizes((h, w))
    anchors = AnchorGenerator(cfg.model.anchors)((h, w), feature_sizes)
    dummy = torch.zeros(1, 3, h, w)
    with torch.inference_mode():
        cls_logits, _ = model(dummy)
    if cls_logits.shape[1] != anchors.shape[0] or cls_logits.shape[2] != cfg.model.num_classes + 1:
        raise ValueError(
            f"the network gives {cls_logits.shape[1]} anchors x {cls_logits.shape[2]} columns at input {h}x{w} but the "
            f"config describes {anchors.shape[0]} anchors x {cfg.model.num_classes + 1} columns; model and config do not fit"
        )

    if with_nms:
        module, outputs = _decoded_module(model, anchors, cfg), ["decoded_boxes", "class_scores"]
    else:
        module, outputs = model, ["cls_logits", "box_deltas"]
    dynamic_axes = {"images": {0: "batch"}, **{o: {0: "batch"} for o in outputs}} if dynamic_batch else None

    with tempfile.TemporaryDirectory(prefix="ssdlite_export_") as tmp:
        raw_path = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                module,
                (dummy,),
                str(raw_path),
                dynamo=False,  # the dynamo exporter needs onnxscript; the TorchScript one writes the same ops
                opset_version=opset,
                input_names=["images"],
                output_names=outputs,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        proto = onnx.load(str(raw_path))

    if with_nms:
        _append_nms(proto.graph, cfg)
    proto.producer_name = "ssdlite"
    proto.doc_string = (
        f"ssdlite {cfg.model.backbone.name} SSDLite {h}x{w}, {cfg.model.num_classes} classes; "
        f"{'decode + NMS in the graph' if with_nms else 'raw outputs, postprocess with ssdlite.model.postprocess'}"
    )
    meta = build_metadata(cfg, feature_sizes, anchors.numpy(), "nms" if with_nms else "raw")
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    atomic_write(out_path, lambda f: f.write(proto.SerializeToString()))
    return out_path


# ----------------------------------------------------------------------------- verification


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
    """The photos of ``<shared data>/photos/darknet/*.jpg`` (empty list when the folder is absent)."""
    from ssdlite._paths import shared_data_dir

    root = shared_data_dir()
    return sorted((root / "photos" / "darknet").glob("*.jpg")) if root else []


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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
                problems.append((1e9, f"{tag}missing from the ONNX Runtime result: label {r_labels[i]} score {r_scores[i]:.5f} box {show(r_boxes[i])}"))
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
                 f"{tag}label {r_labels[i]}: score torch {r_scores[i]:.6f} vs onnx {o_scores[j]:.6f} (diff {d_score:.2e}), "
                 f"box torch {show(r_boxes[i])} vs onnx {show(o_boxes[j])} (max diff {d_box:.3f} px)")
            )
    for j in np.nonzero(~used & (o_scores > floor))[0]:
        problems.append((1e9, f"{tag}extra in the ONNX Runtime result: label {o_labels[j]} score {o_scores[j]:.5f} box {show(o_boxes[j])}"))
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
    threads: int | None = None,
    score_thresh: float | None = None,
    box_tol: float = 0.5,
    score_tol: float = 1e-4,
    margin: float | None = None,
    raw_atol: float = 1e-3,
    raw_rtol: float = 1e-4,
) -> VerifyReport:
    """Run the PyTorch back end on ``checkpoint`` and ONNX Runtime on ``onnx_path`` and compare.

    Both run at ``score_thresh`` (default: the checkpoint config's). Detections scoring above
    ``score_thresh + margin`` (``margin`` defaults to ``10 * score_tol``; raised to the lowest
    kept score + margin where ``detections_per_img`` cut the list) must match one to one: same
    label, scores within ``score_tol``, boxes within ``box_tol`` px of the original image.
    Works with random weights too: what is compared is what both back ends must agree on.
    ``images`` default to :func:`default_verify_images`. A ``with_nms`` export is compared the
    same way (its boxes scaled back to the image like the Detector's). For raw exports the
    network outputs themselves must also agree within ``raw_atol + raw_rtol * max|output|``.
    """
    from ssdlite.deploy.detector import Detector, Detections, preprocess
    from ssdlite.deploy.onnx_runtime import OnnxRunner

    paths = [Path(p) for p in (images if images is not None else default_verify_images())]
    if not paths:
        raise ValueError("no images to verify on: pass images or provide the shared data folder (photos/darknet)")
    frames = [_read_rgb(p) for p in paths]
    kwargs = {} if score_thresh is None else {"score_thresh": score_thresh}
    ref_det = Detector.from_checkpoint(checkpoint, backend="torch", threads=threads, **kwargs)
    thresh = ref_det.cfg.postprocess.score_thresh
    cap = ref_det.cfg.postprocess.detections_per_img
    runner = OnnxRunner(onnx_path, threads=threads)

    ref, other = [], []
    max_logit = max_delta = None
    if runner.outputs == "raw":
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
