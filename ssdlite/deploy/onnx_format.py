"""The ssdlite ONNX file: what an export stores beside the graph, in one place for the writer
(:mod:`ssdlite.deploy.export`) and the readers (:mod:`ssdlite.deploy.onnx_reader`, used by every
ONNX back end). Imports numpy only.

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
from pathlib import Path
from typing import Sequence

import numpy as np

from ssdlite.config import Config, to_dict
from ssdlite.data.names import class_names_of

__all__ = ["FORMAT", "FORMAT_VERSION", "SUPPORTED_VERSIONS", "OUTPUTS", "build_metadata", "check_metadata", "read_anchors"]

FORMAT = "ssdlite-onnx"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)  # versions this code reads
# graph output names of each variant (``ssdlite.outputs``)
OUTPUTS: dict[str, list[str]] = {
    "raw": ["cls_logits", "box_deltas"],
    "nms": ["boxes", "scores", "labels", "batch_index"],
}


def build_metadata(
    cfg: Config,
    feature_sizes: Sequence[tuple[int, int]],
    anchors: np.ndarray,
    outputs: str,
    *,
    box_weights: Sequence[float],
    classification: str,
) -> dict[str, str]:
    """The ``metadata_props`` of an export (see the module docstring); all values are strings.

    ``anchors``, ``box_weights`` and ``classification`` are what the network's outputs mean, as
    the model declares them (``SSDLite.anchors()``, ``.box_weights``, ``.classification``).
    """
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs={outputs!r} is not one of {list(OUTPUTS)}")
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
                "classification": classification,
                "box_weights": [float(w) for w in box_weights],
            }
        ),
        "ssdlite.feature_sizes": json.dumps([list(s) for s in feature_sizes]),
        "ssdlite.anchors": base64.b64encode(anchors.tobytes()).decode("ascii"),
        "ssdlite.anchors_shape": json.dumps(list(anchors.shape)),
    }


def check_metadata(meta: dict[str, str], path: str | Path) -> dict[str, str]:
    """``meta`` if it is the metadata of an ssdlite export this code reads; ValueError naming the file otherwise."""
    if meta.get("ssdlite.format") != FORMAT:
        raise ValueError(
            f"{path} is not an ssdlite export (no metadata 'ssdlite.format' = {FORMAT!r}); "
            "export a checkpoint with `python tools/export.py --checkpoint CKPT --out model.onnx`"
        )
    version = int(meta.get("ssdlite.format_version", "0"))
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"{path}: ssdlite export format version {version} is not supported (this code reads {SUPPORTED_VERSIONS})")
    return meta


def read_anchors(meta: dict[str, str]) -> np.ndarray:
    """The ``(A, 4)`` float32 xyxy input-pixel anchors stored by :func:`build_metadata`."""
    shape = json.loads(meta["ssdlite.anchors_shape"])
    return np.frombuffer(base64.b64decode(meta["ssdlite.anchors"]), dtype="<f4").reshape(shape).astype(np.float32)
