"""Export to a self-contained LiteRT (TFLite) file, fp32 or full-integer int8.

:func:`export_tflite` folds BatchNorm into the convolutions and converts the network with
``litert-torch`` (``pip install 'ssdlite[tflite]'``) straight from the PyTorch module:

* The graph takes ``images`` ``(1, H, W, 3)`` (channels last, as LiteRT models take images) and
  returns ``cls_logits`` ``(1, A, C + 1)`` and ``box_deltas`` ``(1, A, 4)``, the same raw outputs
  as the ONNX export, in the same anchor order. The head outputs are flattened from channels-last
  maps (``permute(0, 2, 3, 1).reshape``: the same numbers as the model's ``_flatten_head``), so the
  converter's NHWC graph has no transposes: every op is a LiteRT builtin (CONV_2D,
  DEPTHWISE_CONV_2D, HARD_SWISH, MEAN, MUL, ADD, PAD, RESHAPE, CONCATENATION).
* ``int8=True``: post-training full-integer quantization with ``ai-edge-quantizer``
  (``static_wi8_ai8``: int8 weights per output channel, symmetric; int8 activations per tensor,
  min/max calibrated on the ``calibration`` folder's images, preprocessed as ``Detector`` does).
  Every op runs on int8; ``int8_io="int8"`` (default) makes the input and outputs int8 too (what
  NPUs and the Edge TPU want; scale / zero point are the tensors' own), ``"float"`` keeps float32
  input and outputs with a QUANTIZE / DEQUANTIZE at the ends.
* The file carries the ``ssdlite.*`` metadata of :func:`ssdlite.deploy.onnx_format.build_metadata`
  (:mod:`ssdlite.deploy.tflite_format`), so ``Detector.from_checkpoint("model.tflite")`` and a
  mobile app need nothing else. The file is opened in LiteRT's interpreter before it is written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ssdlite.config import Config
from ssdlite.deploy.onnx_format import OUTPUTS, build_metadata
from ssdlite.deploy.quantize import DEFAULT_CALIBRATION_COUNT, calibration_images, load_calibration
from ssdlite.deploy.tflite_format import INPUT, SIGNATURE, tflite_metadata, with_metadata

__all__ = ["export_tflite", "export_tflite_file", "INT8_IO"]

INT8_IO = ("int8", "float")  # input / output types of an int8 file


def _channels_last(model: Any) -> Any:
    """The folded network as ``images (N, H, W, 3) -> {"cls_logits", "box_deltas"}``."""
    import torch
    from torch import nn

    class ChannelsLast(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def _flatten(self, heads: Any, maps: list, k: int) -> torch.Tensor:
            # (N, A_l*k, H, W) -> (N, H, W, A_l*k) -> (N, H*W*A_l, k): torchvision's anchor order, as _flatten_head
            return torch.cat([head(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, k) for head, x in zip(heads, maps)], 1)

        def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            maps = self.net.features(images.permute(0, 3, 1, 2))
            return {
                "cls_logits": self._flatten(self.net.cls_heads, maps, self.net.num_classes + 1),
                "box_deltas": self._flatten(self.net.box_heads, maps, 4),
            }

    return ChannelsLast(model).eval()


def _quantize(fp32: bytes, batch_nhwc: np.ndarray, int8_io: str, threads: int | None) -> bytes:
    """Full-integer int8 of the fp32 flatbuffer ``fp32``, calibrated on ``batch_nhwc`` (ai-edge-quantizer)."""
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    recipes = recipe_manager.RecipeManager()
    recipes.add_static_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    if int8_io == "float":  # the virtual INPUT / OUTPUT ops left unquantized: a QUANTIZE / DEQUANTIZE at the ends
        for op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            recipes.add_quantization_config(".*", op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    q = quantizer.Quantizer(bytearray(fp32), recipes.get_quantization_recipe())
    samples = [{INPUT: batch_nhwc[i : i + 1]} for i in range(len(batch_nhwc))]
    ranges = q.calibrate({SIGNATURE: samples}, num_threads=int(threads or os.cpu_count() or 1))
    return bytes(q.quantize(ranges, enable_progress_report=False).quantized_model)


def _check_file(content: bytes, h: int, w: int, anchors: int, columns: int, int8_io: str | None) -> None:
    """Open ``content`` in LiteRT's interpreter: the signature's input / output names, shapes and types."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    runner = interpreter.get_signature_runner(SIGNATURE)
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    want_type = np.int8 if int8_io == "int8" else np.float32
    expected = {"cls_logits": (1, anchors, columns), "box_deltas": (1, anchors, 4)}
    problems = []
    if list(inputs) != [INPUT] or tuple(inputs[INPUT]["shape"]) != (1, h, w, 3) or inputs[INPUT]["dtype"] != want_type:
        problems.append(f"input {[(k, tuple(v['shape']), v['dtype'].__name__) for k, v in inputs.items()]}")
    if set(outputs) != set(OUTPUTS["raw"]):
        problems.append(f"outputs {sorted(outputs)}")
    else:
        problems += [f"output {k} {tuple(outputs[k]['shape'])} {outputs[k]['dtype'].__name__}" for k, shape in expected.items()
                     if tuple(outputs[k]["shape"]) != shape or outputs[k]["dtype"] != want_type]
    if problems:
        raise ValueError(f"the converted LiteRT model does not have the expected signature {SIGNATURE!r}: {'; '.join(problems)}")


def export_tflite(
    checkpoint_or_model: Any,
    cfg: Config | None,
    out_path: str | Path,
    *,
    int8: bool = False,
    calibration: str | Path | Sequence[Path] | None = None,
    calibration_count: int | None = DEFAULT_CALIBRATION_COUNT,
    int8_io: str = "int8",
    threads: int | None = None,
) -> Path:
    """Export an ssdlite model to a self-contained ``.tflite`` (see the module docstring).

    Args:
        checkpoint_or_model: a ``.pt`` checkpoint path (its config is used when ``cfg`` is None)
            or an ``SSDLite`` module (``cfg`` required).
        out_path: where to write the file (atomically, parent folders created).
        int8: full-integer int8 (post-training, calibrated on ``calibration``); else fp32.
        calibration: a folder of images like the ones the model will see, or a list of image
            files (int8 only; required).
        calibration_count: how many of the folder's images (evenly spaced); None: all.
        int8_io: ``"int8"`` (input and outputs int8 too) or ``"float"`` (float32 input / outputs).
        threads: CPU threads of the calibration runs.

    Returns:
        The path written.
    """
    import torch

    from ssdlite.deploy.export import _resolve
    from ssdlite.deploy.fuse import fuse_conv_bn
    from ssdlite.files import atomic_write

    if int8_io not in INT8_IO:
        raise ValueError(f"int8_io={int8_io!r} is not one of {list(INT8_IO)}")
    if int8 and calibration is None:
        raise ValueError("an int8 export needs calibration images: give --calibration DIR (a folder of images like the model's input)")
    if not int8 and calibration is not None:
        raise ValueError("--calibration is for an int8 export: add --int8 (or drop --calibration)")
    started = time.perf_counter()
    paths: list[Path] = []  # a bad folder fails before the conversion
    if int8:
        paths = [Path(p) for p in calibration] if isinstance(calibration, (list, tuple)) else calibration_images(
            calibration, calibration_count)
    model, cfg = _resolve(checkpoint_or_model, cfg)
    model = fuse_conv_bn(model).float().cpu().eval()
    h, w = cfg.model.input_size
    anchors = model.anchors((h, w))
    columns = cfg.model.num_classes + 1
    net = _channels_last(model)
    sample = torch.zeros(1, h, w, 3)
    with torch.inference_mode():
        cls_logits = net(sample)["cls_logits"]
    if tuple(cls_logits.shape[1:]) != (anchors.shape[0], columns):
        raise ValueError(
            f"the network gives {cls_logits.shape[1]} anchors x {cls_logits.shape[2]} columns at input {h}x{w} but the "
            f"config describes {anchors.shape[0]} anchors x {columns} columns; model and config do not fit"
        )
    content = _convert(net, sample)
    quantization = None
    if int8:
        batch, skipped = load_calibration(paths, (h, w), cfg.preprocess)
        content = _quantize(content, np.ascontiguousarray(batch.transpose(0, 2, 3, 1)), int8_io, threads)
        quantization = {
            "format": "tflite-int8",
            "tool": "ai-edge-quantizer static_wi8_ai8",
            "weights": "int8 symmetric per output channel",
            "activations": "int8 asymmetric per tensor, min/max calibration",
            "io": int8_io,
            "calibration_images": len(batch),
            "calibration_skipped": len(skipped),
            "calibration_source": str(calibration) if not isinstance(calibration, (list, tuple)) else f"{len(paths)} files",
            "seconds": round(time.perf_counter() - started, 1),
        }
    _check_file(content, h, w, anchors.shape[0], columns, int8_io if int8 else None)
    meta = build_metadata(cfg, model.feature_sizes((h, w)), anchors.numpy(), "raw",
                          box_weights=model.box_weights, classification=model.classification)
    content = with_metadata(content, tflite_metadata(meta, quantization))
    out_path = Path(out_path)
    atomic_write(out_path, lambda f: f.write(content))
    return out_path


def _convert(net: Any, sample: Any) -> bytes:
    """The fp32 LiteRT flatbuffer of ``net`` traced at ``sample`` (litert-torch, its progress lines off)."""
    import litert_torch

    litert_torch.config.show_progress = False
    edge = litert_torch.convert(net, sample_kwargs={INPUT: sample})
    return bytes(edge.model_content())


def export_tflite_file(checkpoint: str | Path, out: str | Path, *, int8: bool = False, calibration: str | Path | None = None,
                       calibration_count: int | None = DEFAULT_CALIBRATION_COUNT, int8_io: str = "int8",
                       threads: int | None = None) -> Path:
    """The ``tflite`` row of :data:`ssdlite.deploy.formats.EXPORT_FORMATS`: :func:`export_tflite` of a checkpoint."""
    return export_tflite(checkpoint, None, out, int8=int8, calibration=calibration, calibration_count=calibration_count,
                         int8_io=int8_io, threads=threads)
