"""Export to CoreML: an ML Program ``.mlpackage`` with our metadata in its user-defined fields.

Conversion only: CoreML runs on Apple devices, not on this Linux CPU, so the format has no back
end and ``export --verify`` refuses it. :func:`export_coreml` folds BatchNorm, captures the
network with ``torch.export`` and converts it with ``coremltools`` (float32 compute; the
TorchScript path of coremltools 9.0 fails on torch 2.14's traced reshapes). The package has the
raw outputs of an ONNX export: input ``images`` ``(1, 3, H, W)`` float32 normalized, outputs
``cls_logits`` ``(1, A, C + 1)`` and ``box_deltas`` ``(1, A, 4)``; its ``user_defined_metadata``
holds the ``ssdlite.*`` keys of :func:`ssdlite.deploy.onnx_format.build_metadata` (anchors,
classes, preprocessing, postprocess settings), so an app needs nothing else.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ssdlite.config import Config
from ssdlite.deploy.onnx_format import OUTPUTS, build_metadata

__all__ = ["export_coreml", "export_coreml_file", "INPUT"]

INPUT = "images"


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the folder ``src`` to ``dst`` (same parent), replacing an existing ``dst`` only once ``src`` is complete."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def export_coreml(checkpoint_or_model: Any, cfg: Config | None, out: str | Path) -> Path:
    """Export an ssdlite model to a CoreML ``.mlpackage`` (a folder); returns the path written.

    Args:
        checkpoint_or_model: a ``.pt`` checkpoint path or an ``SSDLite`` module (``cfg`` required).
        cfg: the model's config, or None with a checkpoint.
        out: the ``.mlpackage`` to write.
    """
    import coremltools as ct
    import torch

    from ssdlite.deploy.export import _resolve
    from ssdlite.deploy.fuse import fuse_conv_bn

    out = Path(out)
    if out.suffix.lower() != ".mlpackage":
        raise ValueError(f"a CoreML ML Program is saved as a .mlpackage folder: --out {out} should end with .mlpackage")
    model, cfg = _resolve(checkpoint_or_model, cfg)
    model = fuse_conv_bn(model).float().cpu().eval()
    h, w = cfg.model.input_size
    anchors = model.anchors((h, w))
    meta = build_metadata(cfg, model.feature_sizes((h, w)), anchors.numpy(), "raw",
                          box_weights=model.box_weights, classification=model.classification)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coremltools' "torch version not tested" and export notices
        program = torch.export.export(model, (torch.zeros(1, 3, h, w),)).run_decompositions({})
        mlmodel = ct.convert(
            program,
            inputs=[ct.TensorType(name=INPUT, shape=(1, 3, h, w))],
            outputs=[ct.TensorType(name=name) for name in OUTPUTS["raw"]],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT32,
        )
    mlmodel.short_description = (
        f"ssdlite {cfg.model.backbone.name} SSDLite {h}x{w}, {cfg.model.num_classes} classes; raw outputs "
        "(anchors, classes and postprocess settings in the user-defined metadata ssdlite.*)"
    )
    mlmodel.author = "ssdlite"
    mlmodel.license = "see the checkpoint's source"
    mlmodel.version = meta["ssdlite.format_version"]
    mlmodel.input_description[INPUT] = f"(1, 3, {h}, {w}) float32 RGB, (pixel / 255 - mean) / std (ssdlite.preprocess)"
    mlmodel.output_description["cls_logits"] = "(1, A, C + 1) class logits per anchor, column 0 = background"
    mlmodel.output_description["box_deltas"] = "(1, A, 4) box offsets from the anchors (ssdlite.anchors, box_weights)"
    for key, value in meta.items():
        mlmodel.user_defined_metadata[key] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ssdlite_coreml_", dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        mlmodel.save(str(staged))
        _replace_dir(staged, out)
    return out


def export_coreml_file(checkpoint: str | Path, out: str | Path) -> Path:
    """The ``coreml`` row of :data:`ssdlite.deploy.formats.EXPORT_FORMATS`: :func:`export_coreml` of a checkpoint."""
    return export_coreml(checkpoint, None, out)
