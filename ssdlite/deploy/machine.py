"""The machine a model runs on: CPU model, cores and the vector / int8 / bf16 instruction sets that
decide CPU inference speed. Every benchmark prints it beside its table (figures from different
machines are not comparable; ratios measured side by side in one run are), and it is part of the
key of ``backend="auto"``'s cached choice (:mod:`ssdlite.deploy.auto`). Imports no torch."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_description", "VECTOR_FLAGS"]

# /proc/cpuinfo flags that change what ONNX Runtime / PyTorch kernels can use
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
                "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve")


def cpu_description(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """``"<model> | <n> cores | avx2 fma avx512f ..."``: the CPU model, the cores this process may use
    and which of :data:`VECTOR_FLAGS` it has (``platform.processor()`` where /proc/cpuinfo is absent)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and model in ("", platform.processor(), platform.machine()):
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    found = " ".join(f for f in VECTOR_FLAGS if f in flags) or "no vector flags read"
    return f"{model} | {cores} cores | {found}"
