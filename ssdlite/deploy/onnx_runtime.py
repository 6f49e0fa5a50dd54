"""The ONNX Runtime back end: runs an ``ssdlite.deploy.export`` file, reads its config from the metadata.

This module imports numpy and onnxruntime only (never torch); ``Detector`` adds the shared
preprocess and postprocess around it (the postprocess uses torch ops).

>>> runner = OnnxRunner("model.onnx", threads=2)
>>> cls_logits, box_deltas = runner(batch)            # batch (N, 3, H, W) float32, normalized
>>> det = Detector(None, runner.config(), runner=runner)  # what Detector.from_checkpoint does
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ssdlite.deploy.onnx_format import OUTPUTS, check_metadata, read_anchors

__all__ = ["OnnxRunner", "read_metadata"]

def read_metadata(path: str | Path, session: Any | None = None) -> dict[str, str]:
    """The ``ssdlite.*`` metadata of an exported file; ValueError naming the file if it has none."""
    if session is None:
        import onnxruntime as ort

        session = _open_session(Path(path), ort.SessionOptions())
    return check_metadata(dict(session.get_modelmeta().custom_metadata_map), path)


def _open_session(path: Path, options: Any) -> Any:
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise ValueError(f"{path} is not a loadable ONNX model: {str(e).strip().splitlines()[0]}") from None


class OnnxRunner:
    """Runs an exported ssdlite network with ONNX Runtime on the CPU.

    Args:
        path: a ``.onnx`` written by :func:`ssdlite.deploy.export.export_onnx`.
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
        spinning: let idle intra-op threads spin-wait for work (ONNX Runtime's default). Spinning
            trades CPU for a little latency; turning it off keeps the threads from competing with
            the postprocess and with other processes (see the latency benchmark).
        optimized_path: also write the graph after ONNX Runtime's optimizations there.

    Attributes:
        name: ``"onnxruntime"``. outputs: ``"raw"`` or ``"nms"``. feature_sizes: ``[(h, w), ...]``.
        input_size: ``(H, W)``. class_names: list of names. What the raw outputs mean, as the export
        stored it: anchors ``(A, 4)`` float32 xyxy input px, box_weights, classification.
        postprocess: the stored postprocess settings (dict). batch_size: fixed batch or None (dynamic).
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        *,
        spinning: bool = False,
        optimized_path: str | Path | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads) if threads else 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if optimized_path is not None:
            options.optimized_model_filepath = str(optimized_path)
        self.session = _open_session(self.path, options)
        meta = read_metadata(self.path, self.session)
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
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.batch_size = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]
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

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        expected = (3, *self.input_size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"{self.path}: expected a batch (N, {expected[0]}, {expected[1]}, {expected[2]}), got {batch.shape}")
        return self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch)})

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
        return f"OnnxRunner({str(self.path)!r}, outputs={self.outputs!r}, input={self.input_size})"
