"""The LiteRT back end: runs an ``ssdlite export --format tflite`` file in LiteRT's interpreter.

LiteRT's CPU path is XNNPACK (applied by the interpreter by default) with ``threads`` threads. The
runner takes what every runner takes, a normalized ``(N, 3, H, W)`` float32 batch, and returns the
raw ``(cls_logits, box_deltas)`` as float32, whatever the file holds: it transposes to the file's
channels-last input, quantizes the input of an int8-input file and dequantizes int8 outputs with
the tensors' own scale and zero point, and runs a batch image by image (the file has batch 1). What
the outputs mean (anchors, box weights, score function, config) comes from the file's metadata
(:mod:`ssdlite.deploy.tflite_format`). Imports numpy and ``ai_edge_litert`` only (never torch).

>>> runner = LiteRtRunner("model.tflite", threads=2)
>>> cls_logits, box_deltas = runner(batch)            # batch (N, 3, H, W) float32, normalized
>>> det = Detector(None, runner.config(), runner=runner)  # what Detector.from_checkpoint does
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ssdlite.deploy.onnx_format import OUTPUTS, check_metadata
from ssdlite.deploy.onnx_reader import ExportedRunner
from ssdlite.deploy.tflite_format import INPUT, SIGNATURE, read_metadata, read_quantization

__all__ = ["LiteRtRunner"]


class _Io:
    """One tensor of the signature: its numpy type and how real values map to it."""

    def __init__(self, details: dict[str, Any]) -> None:
        self.dtype = np.dtype(details["dtype"])
        self.shape = tuple(int(v) for v in details["shape"])
        q = details.get("quantization_parameters") or {}
        scales, zeros = np.asarray(q.get("scales", [])), np.asarray(q.get("zero_points", []))
        self.quantized = self.dtype.kind in "iu" and scales.size > 0
        if self.quantized and scales.size != 1:
            raise ValueError(f"per-channel quantized input / output tensors are not supported (scales {scales.shape})")
        self.scale = float(scales[0]) if self.quantized else 1.0
        self.zero_point = int(zeros[0]) if self.quantized else 0

    def quantize(self, x: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return x.astype(self.dtype, copy=False)
        info = np.iinfo(self.dtype)
        return np.clip(np.rint(x / self.scale) + self.zero_point, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return q.astype(np.float32, copy=False)
        return ((q.astype(np.int32) - self.zero_point) * np.float32(self.scale)).astype(np.float32)


class LiteRtRunner(ExportedRunner):
    """Runs an exported ssdlite ``.tflite`` with LiteRT's interpreter (XNNPACK) on the CPU.

    Args:
        path: a ``.tflite`` written by :func:`ssdlite.deploy.tflite_export.export_tflite`.
        threads: interpreter / XNNPACK threads (None: one per core).

    Attributes:
        name: ``"litert"``. outputs: ``"raw"``. feature_sizes: ``[(h, w), ...]``. input_size:
        ``(H, W)``. class_names: list of names. What the raw outputs mean, as the export stored
        it: anchors ``(A, 4)`` float32 xyxy input px, box_weights, classification. postprocess /
        preprocess: the stored settings (dicts). batch_size: 1. precision: ``"fp32"`` or
        ``"int8"``. quantization: the int8 record (dict) or None. io_dtype: the file's input type.
    """

    name = "litert"
    batch_size = 1

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        content = self.path.read_bytes() if self.path.is_file() else None
        if content is None:
            raise FileNotFoundError(f"LiteRT file {self.path} does not exist")
        meta = check_metadata(read_metadata(self.path, content), self.path)
        self._describe(meta)
        self.threads = int(threads) if threads else (os.cpu_count() or 1)
        try:
            self.interpreter = Interpreter(model_content=content, num_threads=self.threads)
            self.interpreter.allocate_tensors()
            signature = self.interpreter.get_signature_runner(SIGNATURE)
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"{self.path} is not a loadable LiteRT model: {str(e).strip().splitlines()[0]}") from None
        inputs, outputs = signature.get_input_details(), signature.get_output_details()
        if list(inputs) != [INPUT] or set(outputs) != set(OUTPUTS["raw"]):
            raise ValueError(f"{self.path}: signature {SIGNATURE!r} has inputs {list(inputs)} and outputs {sorted(outputs)}, "
                             f"not an ssdlite export's {[INPUT]} -> {OUTPUTS['raw']}")
        self._input = _Io(inputs[INPUT])
        self._outputs = {k: _Io(outputs[k]) for k in OUTPUTS["raw"]}
        self._input_index = int(inputs[INPUT]["index"])
        self._output_index = {k: int(outputs[k]["index"]) for k in OUTPUTS["raw"]}
        self.io_dtype = self._input.dtype.name
        h, w = self.input_size
        self._nhwc = self.preprocess.get("layout", "NHWC") == "NHWC"
        want = (1, h, w, 3) if self._nhwc else (1, 3, h, w)
        if self._input.shape != want:
            raise ValueError(f"{self.path}: input shape {self._input.shape} does not match the stored input size {h}x{w} ({want})")

    def _describe(self, meta: dict[str, str]) -> None:
        """What the metadata says (the same keys as an ONNX export's)."""
        self._read_meta(meta)
        if self.outputs != "raw":
            raise ValueError(f"{self.path}: LiteRT exports have raw outputs, the metadata says {self.outputs!r}")
        self.quantization = read_quantization(meta)
        self.precision = "int8" if self.quantization else "fp32"

    def _run_one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = image[None].transpose(0, 2, 3, 1) if self._nhwc else image[None]
        self.interpreter.set_tensor(self._input_index, self._input.quantize(np.ascontiguousarray(x, dtype=np.float32)))
        self.interpreter.invoke()
        return tuple(self._outputs[k].dequantize(self.interpreter.get_tensor(self._output_index[k]))  # type: ignore[return-value]
                     for k in OUTPUTS["raw"])

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``batch (N, 3, H, W)`` float32 normalized -> ``(cls_logits (N, A, C+1), box_deltas (N, A, 4))`` float32 numpy."""
        batch = np.asarray(batch)
        expected = (3, *self.input_size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"{self.path}: expected a batch (N, {expected[0]}, {expected[1]}, {expected[2]}), got {batch.shape}")
        parts = [self._run_one(image) for image in batch]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def __repr__(self) -> str:
        return f"LiteRtRunner({str(self.path)!r}, precision={self.precision!r}, input={self.input_size}, threads={self.threads})"
