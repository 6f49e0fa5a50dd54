"""The ONNX Runtime back end: runs an ``ssdlite.deploy.export`` file, reads its config from the metadata.

This module imports numpy and onnxruntime only (never torch); ``Detector`` adds the shared
preprocess and postprocess around it (the postprocess uses torch ops).

>>> runner = OnnxRunner("model.onnx", threads=2)
>>> cls_logits, box_deltas = runner(batch)            # batch (N, 3, H, W) float32, normalized
>>> det = Detector(None, runner.config(), runner=runner)  # what Detector.from_checkpoint does
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ssdlite.deploy.onnx_format import check_metadata
from ssdlite.deploy.onnx_reader import QUANTIZED_OPS, ExportedRunner, scan_onnx

__all__ = ["OnnxRunner", "read_metadata"]


def read_metadata(path: str | Path, session: Any | None = None) -> dict[str, str]:
    """The ``ssdlite.*`` metadata of an exported file; ValueError naming the file if it has none."""
    if session is None:
        return check_metadata(scan_onnx(path)[0], path)
    return check_metadata(dict(session.get_modelmeta().custom_metadata_map), path)


def _open_session(path: Path, options: Any) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise ValueError(f"{path} is not a loadable ONNX model: {str(e).strip().splitlines()[0]}") from None


class OnnxRunner(ExportedRunner):
    """Runs an exported ssdlite network with ONNX Runtime on the CPU.

    Args:
        path: a ``.onnx`` written by :func:`ssdlite.deploy.export.export_onnx`.
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
        spinning: let idle intra-op threads spin-wait for work (ONNX Runtime's default). Spinning
            trades CPU for a little latency; turning it off keeps the threads from competing with
            the postprocess and with other processes (see the latency benchmark).
        optimized_path: also write the graph after ONNX Runtime's optimizations there.

    Attributes: those of :class:`~ssdlite.deploy.onnx_reader.ExportedRunner` (name ``"onnxruntime"``;
    precision ``"fp32"``, or ``"int8"`` for a quantized graph) and ``session``.
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
        meta, ops = scan_onnx(self.path)  # a missing or unreadable file fails here, naming it
        self.precision = "int8" if ops & QUANTIZED_OPS else "fp32"
        self.session = _open_session(self.path, options)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self._describe(meta, inp.shape[0], [o.name for o in self.session.get_outputs()])

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: batch})
