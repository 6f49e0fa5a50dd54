"""Export to a self-contained ONNX file.

:func:`export_onnx` folds BatchNorm into the convolutions, traces the network (or, with
``with_nms``, the network plus decoding and NMS: :mod:`ssdlite.deploy.onnx_nms`) and stores
everything a runtime needs beside the graph (:mod:`ssdlite.deploy.onnx_format`: the file format).
:mod:`ssdlite.deploy.verify` checks an export against the PyTorch back end.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ssdlite.config import Config
from ssdlite.deploy.onnx_format import build_metadata

__all__ = ["export_onnx", "export_onnx_file", "MIN_OPSET", "MAX_OPSET"]

MIN_OPSET, MAX_OPSET = 13, 20  # what torch's TorchScript exporter writes and our NMS graph needs (ReduceSum axes input)


def _resolve(checkpoint_or_model: Any, cfg: Config | None):
    """(model, cfg) from a checkpoint path or a model + config."""
    if isinstance(checkpoint_or_model, (str, os.PathLike)):
        from ssdlite.model.checkpoint import load_model

        model, stored = load_model(checkpoint_or_model)
        return model, cfg if cfg is not None else stored
    if cfg is None:
        raise ValueError("export_onnx: a model needs its config (cfg=...); a checkpoint path carries its own")
    return checkpoint_or_model, cfg


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

    from ssdlite.deploy.fuse import fuse_conv_bn
    from ssdlite.deploy.onnx_nms import append_nms, decoded_module
    from ssdlite.files import atomic_write

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET}")
    model, cfg = _resolve(checkpoint_or_model, cfg)
    out_path = Path(out_path)
    model = fuse_conv_bn(model).float().cpu().eval()  # a folded copy; the caller's model is untouched
    h, w = cfg.model.input_size
    feature_sizes = model.feature_sizes((h, w))
    anchors = model.anchors((h, w))  # what the outputs mean, from the model itself
    dummy = torch.zeros(1, 3, h, w)
    with torch.inference_mode():
        cls_logits, _ = model(dummy)
    if cls_logits.shape[1] != anchors.shape[0] or cls_logits.shape[2] != cfg.model.num_classes + 1:
        raise ValueError(
            f"the network gives {cls_logits.shape[1]} anchors x {cls_logits.shape[2]} columns at input {h}x{w} but the "
            f"config describes {anchors.shape[0]} anchors x {cfg.model.num_classes + 1} columns; model and config do not fit"
        )

    if with_nms:
        module, outputs = decoded_module(model, cfg), ["decoded_boxes", "class_scores"]
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
        append_nms(proto.graph, cfg)
    proto.producer_name = "ssdlite"
    proto.doc_string = (
        f"ssdlite {cfg.model.backbone.name} SSDLite {h}x{w}, {cfg.model.num_classes} classes; "
        f"{'decode + NMS in the graph' if with_nms else 'raw outputs, postprocess with ssdlite.model.postprocess'}"
    )
    meta = build_metadata(cfg, feature_sizes, anchors.numpy(), "nms" if with_nms else "raw",
                          box_weights=model.box_weights, classification=model.classification)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    atomic_write(out_path, lambda f: f.write(proto.SerializeToString()))
    return out_path


def export_onnx_file(checkpoint: str | Path, out: str | Path, *, opset: int = 17, dynamic_batch: bool = False,
                     with_nms: bool = False) -> Path:
    """The ``onnx`` row of :data:`ssdlite.deploy.formats.EXPORT_FORMATS`: :func:`export_onnx` of a checkpoint."""
    return export_onnx(checkpoint, None, out, opset=opset, dynamic_batch=dynamic_batch, with_nms=with_nms)
