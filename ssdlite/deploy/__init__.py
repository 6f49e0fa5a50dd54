"""Running a trained model: the :class:`Detector` (PyTorch or ONNX Runtime back end), ONNX export
and its verification, the ONNX file format, and BatchNorm folding.

Submodules load on first use: the ONNX Runtime back end (``onnx_runtime``) imports no torch.
"""

from __future__ import annotations

from ssdlite._lazy import lazy_attributes

_LAZY = {
    "Detector": "ssdlite.deploy.detector",
    "Detections": "ssdlite.deploy.detector",
    "preprocess": "ssdlite.deploy.detector",
    "export_onnx": "ssdlite.deploy.export",
    "verify_export": "ssdlite.deploy.verify",
    "OnnxRunner": "ssdlite.deploy.onnx_runtime",
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
