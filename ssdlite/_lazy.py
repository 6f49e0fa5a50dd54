"""Package attributes that import their module on first use, so ``import ssdlite`` (or
``ssdlite.data``, ``ssdlite.deploy``) stays cheap: the ONNX Runtime back end never pays for torch,
and ``from ssdlite.data import load_image`` does not import albumentations."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose names ``table`` maps to the module defining each."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(table) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
