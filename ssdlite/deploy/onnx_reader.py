"""What every runner of an ssdlite ``.onnx`` shares, whatever runtime executes the graph.

:func:`scan_onnx` reads a file's ``metadata_props`` and the operator types of its graph straight
from the protobuf (no runtime, no ``onnx`` import, the weights skipped unread), and
:class:`ExportedRunner` turns that metadata into what a runner declares (config with overrides,
class names, anchors, box weights, score function, the stored postprocess), checks the graph's
outputs against the ``"raw"`` / ``"nms"`` variant and handles a batch given to a fixed-batch file.
A runtime's runner (:class:`~ssdlite.deploy.onnx_runtime.OnnxRunner`,
:class:`~ssdlite.deploy.openvino_runtime.OpenVinoRunner`) subclasses it and supplies one method,
``_infer(batch) -> list of output arrays``. Imports numpy only (never torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ssdlite.deploy.onnx_format import OUTPUTS, check_metadata, read_anchors

__all__ = ["scan_onnx", "read_metadata", "ExportedRunner", "QUANTIZED_OPS", "PRECISIONS"]

# operators that mark a quantized (int8) graph: QDQ pairs and the integer-only operators
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"})
# what ``runner.precision`` may say
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def _varint(buf: memoryview, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """(field number, wire type, value or (start, end) of a length-delimited field) of one message."""
    i = start
    while i < end:
        tag, i = _varint(buf, i, end)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i, end)
            yield field, wire, value
            continue
        if wire == 2:
            n, i = _varint(buf, i, end)
            if i + n > end:
                raise ValueError("a field runs past the end of its message")
            yield field, wire, (i, i + n)
            i += n
            continue
        if wire not in (1, 5) or field == 0:
            raise ValueError(f"invalid wire type {wire} of field {field}")
        i += 8 if wire == 1 else 4
    if i != end:
        raise ValueError("a message runs past its end")


def scan_onnx(path: str | Path) -> tuple[dict[str, str], set[str]]:
    """``(metadata_props, operator types of the main graph)`` of an ONNX file.

    FileNotFoundError if it does not exist, ValueError naming it if it is not an ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist")
    buf = memoryview(path.read_bytes())
    meta: dict[str, str] = {}
    ops: set[str] = set()
    graphs = 0
    try:
        for field, wire, value in _fields(buf, 0, len(buf)):
            if wire != 2:
                continue
            a, b = value
            if field == 14:  # ModelProto.metadata_props: StringStringEntryProto {key = 1, value = 2}
                entry = {f: bytes(buf[s:e]).decode("utf-8") for f, w, (s, e) in _pairs(buf, a, b)}
                meta[entry.get(1, "")] = entry.get(2, "")
            elif field == 7:  # ModelProto.graph: GraphProto {node = 1}; NodeProto {op_type = 4}
                graphs += 1
                for f, w, node in _fields(buf, a, b):
                    if f == 1 and w == 2:
                        ops.update(bytes(buf[s:e]).decode("utf-8") for f2, w2, (s, e) in _pairs(buf, *node) if f2 == 4)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a loadable ONNX model: {e}") from None
    if graphs != 1:
        raise ValueError(f"{path} is not a loadable ONNX model: it has no graph")
    return meta, ops


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``ssdlite.*`` metadata of an exported file (no runtime needed); ValueError naming the file if it has none."""
    return check_metadata(scan_onnx(path)[0], path)


def _pairs(buf: memoryview, start: int, end: int):
    return ((f, w, v) for f, w, v in _fields(buf, start, end) if w == 2)


class ExportedRunner:
    """The runtime-independent part of a runner of an ssdlite ``.onnx`` (see the module docstring).

    A subclass opens its runtime on ``self.path``, calls :meth:`_describe` with the file's metadata
    and the graph's input batch dimension and output names, and implements ``_infer``.

    Attributes:
        name: the back end (``BACKENDS`` row). outputs: ``"raw"`` or ``"nms"``. feature_sizes:
        ``[(h, w), ...]``. input_size: ``(H, W)``. class_names: list of names. What the raw outputs
        mean, as the export stored it: anchors ``(A, 4)`` float32 xyxy input px, box_weights,
        classification. postprocess / preprocess: the stored settings (dicts). batch_size: fixed
        batch or None (dynamic). precision: what the arithmetic ran in (``"fp32"``, ``"bf16"``,
        ``"int8"`` for a quantized graph).
    """

    name = ""
    precision = "fp32"

    def _read_meta(self, meta: dict[str, str]) -> None:
        """What the ``ssdlite.*`` metadata of any export say (ONNX, ncnn's ``.json``, LiteRT's entries)."""
        meta = check_metadata(meta, self.path)
        self.metadata = meta
        self.outputs = meta.get("ssdlite.outputs", "raw")
        self._config_dict = json.loads(meta["ssdlite.config"])
        self.class_names: list[str] = json.loads(meta["ssdlite.class_names"])
        self.input_size = tuple(int(v) for v in json.loads(meta["ssdlite.input_size"]))
        self.feature_sizes = [tuple(int(v) for v in s) for s in json.loads(meta["ssdlite.feature_sizes"])]
        self.postprocess: dict = json.loads(meta["ssdlite.postprocess"])
        self.preprocess: dict = json.loads(meta["ssdlite.preprocess"])
        self.anchors = read_anchors(meta)
        self.box_weights = tuple(float(w) for w in self.postprocess["box_weights"])
        self.classification: str = self.postprocess["classification"]

    def _describe(self, meta: dict[str, str], batch_dim: object, output_names: Sequence[str]) -> None:
        self._read_meta(meta)
        self.batch_size = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.output_names = list(output_names)
        expected = OUTPUTS.get(self.outputs)
        if self.output_names != expected:
            raise ValueError(f"{self.path}: outputs {self.output_names} do not match an ssdlite '{self.outputs}' export {expected}")

    def config(self, overrides: Sequence[str] = ()):
        """The stored :class:`~ssdlite.config.Config` with ``key=value`` overrides (e.g. postprocess.score_thresh=0.3).

        Overrides of what training and the graph fix (any ``model.*`` key, the input normalization)
        are refused with a ``ConfigError`` naming the key; so are postprocess changes of a
        ``--with-nms`` export, whose thresholds are in the graph.
        """
        from ssdlite.config import from_dict, trained_config

        cfg = trained_config(self._config_dict, overrides, str(self.path))
        if self.outputs == "nms" and cfg.postprocess != from_dict(self._config_dict).postprocess:
            raise ValueError(f"{self.path}: the postprocess settings are part of this graph (exported --with-nms); re-export to change them")
        return cfg

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        expected = (3, *self.input_size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"{self.path}: expected a batch (N, {expected[0]}, {expected[1]}, {expected[2]}), got {batch.shape}")
        return self._infer(np.ascontiguousarray(batch))

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``batch (N, 3, H, W)`` float32 normalized -> ``(cls_logits (N, A, C+1), box_deltas (N, A, 4))`` numpy.

        A file exported with a fixed batch of 1 runs a larger batch image by image.
        """
        if self.outputs != "raw":
            raise ValueError(f"{self.path} has NMS in the graph (exported --with-nms): use runner.detect(batch), or export without --with-nms for Detector")
        if self.batch_size is not None and batch.shape[0] != self.batch_size:
            parts = [self._run(batch[i : i + 1]) for i in range(batch.shape[0])]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        cls_logits, box_deltas = self._run(batch)
        return cls_logits, box_deltas

    def detect(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For a ``--with-nms`` export: per image ``(boxes (K,4) float32 xyxy input px, scores (K,), labels (K,) int64)``."""
        if self.outputs != "nms":
            raise ValueError(f"{self.path} has raw outputs: run it through Detector (or export --with-nms for detect())")
        chunks = [batch] if self.batch_size is None else [batch[i : i + 1] for i in range(batch.shape[0])]
        results = []
        for chunk in chunks:
            boxes, scores, labels, batch_index = self._run(chunk)
            for i in range(chunk.shape[0]):
                m = batch_index == i
                results.append((boxes[m], scores[m], labels[m].astype(np.int64)))
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, outputs={self.outputs!r}, input={self.input_size}, precision={self.precision!r})"
