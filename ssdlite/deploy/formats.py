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


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", ".onnx", "onnx", None, "ssdlite.deploy.export:export_onnx_file", "onnxruntime",
                     "ONNX (BN folded, metadata inside), for ONNX Runtime"),
        ExportFormat("tflite", ".tflite", "litert_torch", "tflite", "ssdlite.deploy.tflite_export:export_tflite_file", "litert",
                     "LiteRT / TFLite (NHWC, fp32 or full-integer int8, metadata inside), for phones and small boards"),
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


def exporter(fmt: ExportFormat) -> Callable[..., Any]:
    """The exporter function of a format, its converter package checked first (one line if missing)."""
    from ssdlite.deploy.backends import require

    if fmt.package:
        require(fmt.package, fmt.extra, f"export --format {fmt.name}")
    module, func = fmt.exporter.split(":")
    return getattr(importlib.import_module(module), func)
