"""The OpenVINO back end: runs an ``ssdlite.deploy.export`` ``.onnx`` with OpenVINO on the CPU.

OpenVINO reads the ONNX file itself (no conversion step, no other file); the metadata, outputs and
batch handling are those of every ssdlite ONNX runner (:class:`~ssdlite.deploy.onnx_reader.ExportedRunner`).
Imports numpy and openvino only (never torch); install with ``pip install 'ssdlite[openvino]'``.

Precision: on CPUs with bf16 units (AVX-512 BF16, AMX) OpenVINO runs a float model in bf16 unless
told otherwise, which moves scores and boxes by far more than float rounding. This runner asks
for f32 (exact, the same detections as PyTorch and ONNX Runtime) unless ``precision="bf16"`` is
given, and reports in ``runner.precision`` what the compiled model actually runs: ``"fp32"``,
``"bf16"`` (only where the CPU has it; elsewhere OpenVINO keeps f32 and the runner says so) or
``"int8"`` for a quantized (QDQ) graph, which OpenVINO executes in int8 by itself.

>>> runner = OpenVinoRunner("model.onnx", threads=2)       # precision="bf16" to opt in
>>> cls_logits, box_deltas = runner(batch)                # batch (N, 3, H, W) float32, normalized
>>> det = Detector(None, runner.config(), runner=runner)  # what Detector.from_checkpoint does
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssdlite.deploy.onnx_reader import QUANTIZED_OPS, ExportedRunner, scan_onnx

__all__ = ["OpenVinoRunner", "OPENVINO_PRECISIONS"]

# precision= accepted -> OpenVINO's INFERENCE_PRECISION_HINT
OPENVINO_PRECISIONS = {"fp32": "f32", "f32": "f32", "bf16": "bf16"}
# OpenVINO's element type name -> what runner.precision says
_RAN = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


class OpenVinoRunner(ExportedRunner):
    """Runs an exported ssdlite network with OpenVINO on the CPU.

    Args:
        path: a ``.onnx`` written by :func:`ssdlite.deploy.export.export_onnx` (raw or ``--with-nms``,
            fixed or dynamic batch, float or QDQ int8).
        threads: ``INFERENCE_NUM_THREADS`` (None: OpenVINO's default, one per core). Always one
            stream and the latency performance hint: one frame at a time, as fast as possible.
        precision: ``"fp32"`` (default, exact) or ``"bf16"`` (opt in: faster on CPUs with bf16
            units, detections move a little).

    Attributes: those of :class:`~ssdlite.deploy.onnx_reader.ExportedRunner` (name ``"openvino"``,
    precision as run) and ``compiled`` (the ``openvino.CompiledModel``).
    """

    name = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None, *, precision: str = "fp32") -> None:
        import openvino as ov

        self.path = Path(path)
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"precision={precision!r} is not one of {sorted(set(OPENVINO_PRECISIONS))}")
        meta, ops = scan_onnx(self.path)  # a missing or unreadable file fails here, naming it
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as e:  # OpenVINO raises its own exception types
            raise ValueError(f"{self.path} is not a loadable ONNX model: {_first_line(e)}") from None
        properties = {
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
        }
        if threads:
            properties["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(model, "CPU", properties)
        except Exception as e:
            raise ValueError(f"OpenVINO cannot compile {self.path}: {_first_line(e)}") from None
        ran = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        ran = ran.get_type_name() if hasattr(ran, "get_type_name") else str(ran)
        self.precision = "int8" if ops & QUANTIZED_OPS else _RAN.get(ran, ran)
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self._request = self.compiled.create_infer_request()
        dim = model.input(0).get_partial_shape()[0]
        self._describe(meta, dim.get_length() if dim.is_static else None, [o.get_any_name() for o in model.outputs])

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self._request.infer({0: batch})
        return [np.asarray(result[o]) for o in self.compiled.outputs]


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
