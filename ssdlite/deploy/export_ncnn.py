"""Export to ncnn (through pnnx): ``model.param`` + ``model.bin`` + ``model.json`` (our metadata).

:func:`export_ncnn` folds BatchNorm, traces the network with TorchScript and runs the ``pnnx``
converter (PyPI ``pnnx``, which ships the binary) on the trace in a temp folder beside the
target; of what pnnx writes there (the trace, ``*.pnnx.param/bin/onnx``, ``*_pnnx.py``,
``*_ncnn.py``) only the ncnn graph and weights are kept. They and the metadata JSON
(:func:`ssdlite.deploy.onnx_format.build_metadata`, the keys an ONNX export carries) are renamed
into place, the ``.param`` last, so a reader never sees a half-written model under the real names.
:class:`ssdlite.deploy.ncnn_runtime.NcnnRunner` runs the result; the file layout is described there.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ssdlite.config import Config
from ssdlite.deploy.ncnn_runtime import INPUT, OUTPUTS, ncnn_files
from ssdlite.deploy.onnx_format import build_metadata

__all__ = ["export_ncnn", "export_ncnn_file"]


@contextlib.contextmanager
def _default_sigchld():
    """SIGCHLD at its default (ignored) while the converter runs: a handler left by a DataLoader with workers
    (torch's worker-failure check) turned pnnx's exit into a kernel SIGSEGV of this process after a long
    test session; restored afterwards."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, before if before is not None else signal.SIG_DFL)


def _pnnx(trace: Path, shape: tuple[int, ...], fp16_weights: bool) -> None:
    """Run the pnnx binary on a TorchScript file in its folder; RuntimeError with pnnx's last lines if it fails."""
    import pnnx

    command = [pnnx.EXEC_PATH, trace.name, "inputshape=[" + ",".join(map(str, shape)) + "]f32",
               "device=cpu", f"fp16={int(fp16_weights)}"]
    with _default_sigchld():
        done = subprocess.run(command, cwd=trace.parent, capture_output=True, text=True)
    param, weights, _ = ncnn_files(trace.with_suffix(".ncnn.param"))
    if done.returncode != 0 or not param.is_file() or not weights.is_file():
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"pnnx failed to convert the traced network (exit code {done.returncode}): {tail}")


def export_ncnn(checkpoint_or_model: Any, cfg: Config | None, out: str | Path, *, fp16_weights: bool = False) -> Path:
    """Export an ssdlite model to ncnn; returns the ``.param`` written (``.bin`` and ``.json`` beside it).

    Args:
        checkpoint_or_model: a ``.pt`` checkpoint path or an ``SSDLite`` module (``cfg`` required).
        cfg: the model's config, or None with a checkpoint.
        out: the ``.param`` to write (``model.param`` -> ``model.param``, ``model.bin``, ``model.json``).
        fp16_weights: store the weights as fp16 in the ``.bin`` (half the size; outputs then differ
            from PyTorch's by the fp16 rounding of the weights). Default float32.
    """
    import torch

    from ssdlite.deploy.export import _resolve
    from ssdlite.deploy.fuse import fuse_conv_bn

    param, weights, meta_path = ncnn_files(out)
    model, cfg = _resolve(checkpoint_or_model, cfg)
    model = fuse_conv_bn(model).float().cpu().eval()  # a folded copy; the caller's model is untouched
    h, w = cfg.model.input_size
    anchors = model.anchors((h, w))
    meta = build_metadata(cfg, model.feature_sizes((h, w)), anchors.numpy(), "raw",
                          box_weights=model.box_weights, classification=model.classification)
    dummy = torch.zeros(1, 3, h, w)
    param.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ssdlite_ncnn_", dir=param.parent) as tmp:
        trace = Path(tmp) / "model.pt"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit.trace's deprecation and tracer notices
            traced = torch.jit.trace(model, (dummy,), check_trace=False)
        traced.save(str(trace))
        _pnnx(trace, (1, 3, h, w), fp16_weights)
        t_param, t_weights, t_meta = ncnn_files(trace.with_suffix(".ncnn.param"))
        blobs = t_param.read_text().split()
        if INPUT not in blobs or any(o not in blobs for o in OUTPUTS):
            raise RuntimeError(f"pnnx wrote a graph without the blobs {INPUT} -> {list(OUTPUTS)}; this pnnx version names them differently")
        t_meta.write_text(json.dumps(meta, indent=1))
        for src, dst in ((t_weights, weights), (t_meta, meta_path), (t_param, param)):
            os.replace(src, dst)  # same folder: atomic; the .param (the model's name) last
    return param


def export_ncnn_file(checkpoint: str | Path, out: str | Path, *, fp16_weights: bool = False) -> Path:
    """The ``ncnn`` row of :data:`ssdlite.deploy.formats.EXPORT_FORMATS`: :func:`export_ncnn` of a checkpoint."""
    return export_ncnn(checkpoint, None, out, fp16_weights=fp16_weights)
