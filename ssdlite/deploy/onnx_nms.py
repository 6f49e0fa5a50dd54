"""Decoding and NMS inside the ONNX graph, for runtimes without ssdlite's postprocess (``--with-nms``).

:func:`decoded_module` wraps the network so that the exported graph ends in decoded boxes and
per-class scores; :func:`append_nms` then adds ONNX ``NonMaxSuppression`` and the per-image cap.
The steps are those of :mod:`ssdlite.model.postprocess` (see :mod:`ssdlite.deploy.onnx_format`
for the outputs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssdlite.config import Config

__all__ = ["decoded_module", "append_nms"]


def decoded_module(model: Any, cfg: Config):
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
    anchors = model.anchors((h, w))
    topk = min(cfg.postprocess.topk_candidates, int(anchors.shape[0]))

    class Decoded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.register_buffer("anchors", anchors.clone().float())

        def forward(self, images):
            cls_logits, box_deltas = self.net(images)
            scores = class_scores(cls_logits, model.classification).transpose(1, 2)  # (N, C, A)
            kth = torch.topk(scores, topk, dim=2).values[:, :, -1:]  # (N, C, 1)
            scores = torch.where(scores >= kth, scores, torch.zeros_like(scores))
            boxes = decode(box_deltas, self.anchors, model.box_weights)
            x = boxes[..., 0::2].clamp(min=0, max=w)
            y = boxes[..., 1::2].clamp(min=0, max=h)
            boxes = torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)
            return boxes, scores

    return Decoded().eval()


def append_nms(graph: Any, cfg: Config) -> None:
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
