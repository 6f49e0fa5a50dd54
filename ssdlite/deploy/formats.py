"""The export formats, one row each: file suffix, the extra its converter needs, the exporter, the runtime that verifies it.

``ssdlite export --format NAME`` (default: from the ``--out`` suffix, else ``onnx``) reads this
table; a new format is one row here plus its exporter, a function
``(checkpoint: Path, out: Path, **options) -> Path`` that writes ``out`` atomically with the
model's metadata inside, and (for ``--verify``) a back end in :mod:`ssdlite.deploy.backends`
that runs the file. This module imports no torch and no converter.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["ExportFormat", "EXPORT_FORMATS", "format_names", "format_for", "exporter"]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # what --out should end with
    package: str | None  # the converter's import (checked before anything is built)
    extra: str | None  # pip install 'ssdlite[EXTRA]'
    exporter: str  # "module:function"
    backend: str | None  # the back end that runs the file (--verify, Detector); None: conversion only
    description: str
    int8: str | None = None  # "module:function" writing an int8 file of this format (--int8); None: no int8


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", ".onnx", "onnx", None, "ssdlite.deploy.export:export_onnx_file", "onnxruntime",
                     "ONNX (BN folded, metadata inside), for ONNX Runtime and OpenVINO",
                     int8="ssdlite.eval.int8:export_int8_file"),
        ExportFormat("ncnn", ".param", "pnnx", "ncnn", "ssdlite.deploy.export_ncnn:export_ncnn_file", "ncnn",
                     "ncnn through pnnx: model.param + model.bin + model.json (metadata), for phones and small boards"),
        ExportFormat("coreml", ".mlpackage", "coremltools", "coreml", "ssdlite.deploy.export_coreml:export_coreml_file", None,
                     "CoreML ML Program (.mlpackage, metadata in its user-defined fields), for Apple devices; conversion only"),
        ExportFormat("tflite", ".tflite", "litert_torch", "tflite", "ssdlite.deploy.tflite_export:export_tflite_file", "litert",
                     "LiteRT / TFLite (NHWC, fp32 or full-integer int8, metadata inside), for phones and small boards",
                     int8="ssdlite.eval.int8:export_tflite_int8_file"),
    )
}


def format_names() -> list[str]:
    """The ``--format`` choices of ``ssdlite export``."""
    return list(EXPORT_FORMATS)


def format_for(name: str | None, out: str | Path) -> ExportFormat:
    """The format asked for, or the one whose suffix ``out`` has (``onnx`` if none fits)."""
    if name is not None:
        if name not in EXPORT_FORMATS:
            raise ValueError(f"export format {name!r} is not one of {format_names()}")
        return EXPORT_FORMATS[name]
    suffix = Path(out).suffix.lower()
    for f in EXPORT_FORMATS.values():
        if suffix == f.suffix:
            return f
    return EXPORT_FORMATS["onnx"]


def exporter(fmt: ExportFormat, int8: bool = False) -> Callable[..., Any]:
    """The exporter function of a format (its int8 exporter with ``int8``), its converter package
    checked first (one line if missing); ValueError in one line for ``int8`` on a format without one."""
    from ssdlite.deploy.backends import require

    if int8 and fmt.int8 is None:
        with_int8 = [f.name for f in EXPORT_FORMATS.values() if f.int8]
        raise ValueError(f"--int8 applies to --format {' / '.join(with_int8)}, not {fmt.name}")
    if fmt.package:
        require(fmt.package, fmt.extra, f"export --format {fmt.name}")
    module, func = (fmt.int8 if int8 else fmt.exporter).split(":")
    return getattr(importlib.import_module(module), func)
