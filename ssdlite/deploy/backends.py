"""The inference back ends, one row each: which files they run, what they need installed, their runner.

Every tool's ``--backend`` choices, ``Detector.from_checkpoint``'s dispatch and the benchmarks'
back-end lists come from :data:`BACKENDS`; a new back end is one row here plus its runner module
(a class taking ``(path, threads=...)`` that declares ``name``, ``input_size``, ``anchors``,
``box_weights``, ``classification``, ``precision`` and ``config(overrides)``, as
:class:`~ssdlite.deploy.onnx_runtime.OnnxRunner`; the ONNX runners share :mod:`ssdlite.deploy.onnx_reader`).
``"auto"`` (:data:`AUTO`) is no row: :mod:`ssdlite.deploy.auto` picks one of the rows.

This module imports no torch and no runtime: asking for a back end whose package is missing is
one ``MissingExtra`` error naming the ``pip install`` that brings it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AUTO", "Backend", "BACKENDS", "MissingExtra", "backend_names", "default_backend", "check_backend", "require", "make_runner", "installed"]


class MissingExtra(ImportError):
    """A back end or export format needs an optional package that is not installed."""


@dataclass(frozen=True)
class Backend:
    name: str
    suffixes: tuple[str, ...]  # the model files it runs (lower case); () = any file no other row claims
    package: str | None  # the import that must work (None: always there)
    extra: str | None  # the pip extra that installs it: pip install 'ssdlite[EXTRA]'
    runner: str | None  # "module:Class" taking (path, threads=...); None for torch (built from the model)
    description: str


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", (), None, None, None, "PyTorch eager (BN folded, channels_last)"),
        Backend("onnxruntime", (".onnx",), "onnxruntime", None, "ssdlite.deploy.onnx_runtime:OnnxRunner",
                "ONNX Runtime on the CPU, reading an exported .onnx"),
        Backend("openvino", (".onnx",), "openvino", "openvino", "ssdlite.deploy.openvino_runtime:OpenVinoRunner",
                "OpenVINO on the CPU, reading an exported .onnx (fp32 unless precision='bf16'; QDQ files run int8)"),
        Backend("ncnn", (".param",), "ncnn", "ncnn", "ssdlite.deploy.ncnn_runtime:NcnnRunner",
                "ncnn on the CPU (fp32), reading an ncnn export (model.param + .bin + .json)"),
        Backend("litert", (".tflite",), "ai_edge_litert", "tflite", "ssdlite.deploy.litert_runtime:LiteRtRunner",
                "LiteRT (TFLite) interpreter, XNNPACK on the CPU, reading an exported .tflite (fp32 or int8)"),
    )
}


AUTO = "auto"  # Detector.from_checkpoint(backend="auto"): the fastest installed one, measured once (deploy/auto.py)


def backend_names(auto: bool = False) -> list[str]:
    """The ``--backend`` choices of every tool (with ``"auto"`` last where a tool runs ``Detector.from_checkpoint``)."""
    return [*BACKENDS, AUTO] if auto else list(BACKENDS)


def installed(name: str) -> bool:
    """Whether the package a back end needs can be imported (without importing it)."""
    package = BACKENDS[name].package
    return package is None or importlib.util.find_spec(package) is not None


def require(package: str, extra: str | None, what: str) -> Any:
    """Import ``package`` or raise :class:`MissingExtra` with the one line that says how to get it."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        how = f"pip install 'ssdlite[{extra}]'" if extra else f"pip install {package}"
        raise MissingExtra(f"{what} needs the Python package '{package}', which is not installed ({e}); install it with: {how}") from None


def default_backend(path: str | Path) -> str:
    """The back end a model file runs on when none is asked for: the first row whose suffixes fit."""
    suffix = Path(path).suffix.lower()
    for b in BACKENDS.values():
        if suffix in b.suffixes:
            return b.name
    return "torch"


def _runs(b: Backend, path: str | Path) -> bool:
    suffix = Path(path).suffix.lower()
    if b.suffixes:
        return suffix in b.suffixes
    return default_backend(path) == b.name


def check_backend(name: str, path: str | Path) -> Backend:
    """The row of ``name``; ValueError if unknown or if it cannot run ``path``."""
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r} is not one of {backend_names()}")
    b = BACKENDS[name]
    if not _runs(b, path):
        fits = default_backend(path)
        kinds = " / ".join(b.suffixes) if b.suffixes else "checkpoint (.pt)"
        how = f"backend {fits!r}" if fits != "torch" else "backend 'torch'; export it with `ssdlite export` first"
        raise ValueError(f"the {name} back end runs {kinds} files, not {path}: use {how}")
    return b


def make_runner(name: str, path: str | Path, threads: int | None = None, **options: Any) -> Any:
    """The runner of a file-based back end (not torch), its package checked first."""
    b = check_backend(name, path)
    if b.runner is None:
        raise ValueError(f"the {name} back end is built from a model, not a file runner")
    if b.package:
        require(b.package, b.extra, f"the {name} back end")
    module, cls = b.runner.split(":")
    return getattr(importlib.import_module(module), cls)(path, threads=threads, **options)
