"""Running a trained model: the :class:`Detector` (PyTorch, ONNX Runtime or OpenVINO back end, or
``backend="auto"``), ONNX export and its verification, the ONNX file format, and BatchNorm folding.

Submodules load on first use: the ONNX back ends (``onnx_runtime``, ``openvino_runtime``) import no torch.
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
    "OpenVinoRunner": "ssdlite.deploy.openvino_runtime",
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
