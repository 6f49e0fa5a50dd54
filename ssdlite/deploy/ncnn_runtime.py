"""The ncnn back end: runs an ``ssdlite export --format ncnn`` model with the ``ncnn`` Python package.

An ncnn model is three files sharing one stem (:func:`ncnn_files`): ``model.param`` (the graph,
text), ``model.bin`` (the weights) and ``model.json`` (our metadata: the same ``ssdlite.*`` keys
an ONNX export carries in its ``metadata_props``, :func:`ssdlite.deploy.onnx_format.build_metadata`,
as a JSON object of strings; ncnn files have no metadata field). The graph has raw outputs only:
input ``in0`` one image ``(3, H, W)`` float32, normalized; outputs ``out0`` ``(A, C + 1)``
(``cls_logits``, column 0 = background) and ``out1`` ``(A, 4)`` (``box_deltas``).

This module imports numpy and ncnn only (never torch).

>>> runner = NcnnRunner("model.param", threads=2)
>>> cls_logits, box_deltas = runner(batch)            # batch (N, 3, H, W) float32, normalized
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ssdlite.deploy.onnx_format import check_metadata
from ssdlite.deploy.onnx_reader import ExportedRunner

__all__ = ["NcnnRunner", "ncnn_files", "read_ncnn_metadata", "INPUT", "OUTPUTS"]

INPUT = "in0"  # the blob names pnnx gives the traced network's input and outputs
OUTPUTS = ("out0", "out1")  # cls_logits, box_deltas


def ncnn_files(path: str | Path) -> tuple[Path, Path, Path]:
    """``(model.param, model.bin, model.json)`` of an ncnn export named by its ``.param`` file."""
    path = Path(path)
    if path.suffix.lower() != ".param":
        raise ValueError(f"an ncnn model is named by its .param file (model.param + model.bin + model.json), not {path}")
    return path, path.with_suffix(".bin"), path.with_suffix(".json")


def read_ncnn_metadata(path: str | Path) -> dict[str, str]:
    """The ``ssdlite.*`` metadata stored beside an ncnn export; ValueError naming the file if absent or foreign."""
    _, _, meta_path = ncnn_files(path)
    if not meta_path.is_file():
        raise ValueError(f"{path}: its metadata {meta_path.name} is missing beside it (export with `ssdlite export --format ncnn`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{meta_path} is not readable JSON: {e}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path} is not a JSON object of ssdlite metadata")
    return check_metadata({str(k): str(v) for k, v in meta.items()}, meta_path)


class NcnnRunner(ExportedRunner):
    """Runs an ncnn export on the CPU, one image at a time.

    Args:
        path: the ``.param`` of an ncnn export (its ``.bin`` and ``.json`` beside it).
        threads: ncnn threads (None: ncnn's default, the physical cores).
        fp16: let ncnn store and compute in fp16 where the CPU can (ncnn's own default). Off by
            default so the outputs match PyTorch's to float32 rounding; on, they differ by ~1e-2
            (relative) and ncnn may be faster on CPUs with fp16 arithmetic.

    Attributes: as :class:`~ssdlite.deploy.onnx_runtime.OnnxRunner` (``outputs`` is always ``"raw"``).
    """

    name = "ncnn"

    def __init__(self, path: str | Path, threads: int | None = None, *, fp16: bool = False) -> None:
        import ncnn

        param, weights, _ = ncnn_files(path)
        self.path = param
        for p in (param, weights):
            if not p.is_file():
                raise FileNotFoundError(f"ncnn model file {p} does not exist")
        self._read_meta(read_ncnn_metadata(param))
        if self.outputs != "raw":
            raise ValueError(f"{param}: an ncnn export has raw outputs, this metadata says {self.outputs!r}")
        self.batch_size = None  # any batch, run image by image
        self.fp16 = bool(fp16)

        net = ncnn.Net()
        for option in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
            setattr(net.opt, option, self.fp16 and option != "use_bf16_storage")
        if threads:
            net.opt.num_threads = int(threads)
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            raise ValueError(f"{param} / {weights.name} is not a loadable ncnn model")
        if list(net.input_names()) != [INPUT] or list(net.output_names()) != list(OUTPUTS):
            raise ValueError(f"{param}: blobs {list(net.input_names())} -> {list(net.output_names())} are not an ssdlite export's {INPUT} -> {list(OUTPUTS)}")
        self.net = net
        self.threads = int(net.opt.num_threads)

    def _run_one(self, image: np.ndarray) -> list[np.ndarray]:
        import ncnn

        image = np.ascontiguousarray(image, dtype=np.float32)
        with self.net.create_extractor() as ex:
            ex.input(INPUT, ncnn.Mat(image))
            outs = []
            for name in OUTPUTS:
                ret, mat = ex.extract(name)
                if ret != 0:
                    raise RuntimeError(f"{self.path}: ncnn failed to compute {name} (code {ret})")
                outs.append(np.array(mat, dtype=np.float32))  # a copy: the Mat is the extractor's
        return outs

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``batch (N, 3, H, W)`` float32 normalized -> ``(cls_logits (N, A, C+1), box_deltas (N, A, 4))`` numpy."""
        expected = (3, *self.input_size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"{self.path}: expected a batch (N, {expected[0]}, {expected[1]}, {expected[2]}), got {batch.shape}")
        parts = [self._run_one(image) for image in batch]
        return np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])

    def __repr__(self) -> str:
        return f"NcnnRunner({str(self.path)!r}, input={self.input_size}, fp16={self.fp16})"
