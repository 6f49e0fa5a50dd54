"""The import rules of ARCHITECTURE.md, checked on the source: which folder may import which.

Every ``import`` / ``from ... import`` in the library is read with ``ast`` (also those inside
functions, which run later but are dependencies all the same) and resolved to the folder it
names. A rule broken here is a layer leaking into one below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ssdlite._paths import REPO_ROOT

# folder -> the ssdlite folders it may import (itself always); "torch" marks those allowed torch.
# The order is the layering: each folder may import only folders listed before it.
ALLOWED: dict[str, set[str]] = {
    "ssdlite._paths": set(),
    "ssdlite._lazy": set(),
    "ssdlite.files": set(),
    "ssdlite.distributed": set(),  # torch.distributed helpers: training and distributed evaluation
    "ssdlite.config": {"backbones"},  # only load_config's backbone-name check (see TORCH_FREE_EXCEPT)
    "ssdlite.weights": {"ssdlite.files", "ssdlite._lazy"},  # registry rows and the downloader: no torch
    "ssdlite.data": {"ssdlite.config", "ssdlite.files", "ssdlite._paths", "ssdlite._lazy"},
    "ssdlite.model": {"ssdlite.config", "ssdlite.files", "ssdlite.data", "ssdlite.weights", "backbones"},
    "ssdlite.deploy": {"ssdlite.config", "ssdlite.files", "ssdlite.data", "ssdlite.model", "ssdlite._paths", "ssdlite._lazy",
                       "ssdlite.weights"},
    "ssdlite.eval": {"ssdlite.config", "ssdlite.files", "ssdlite.data", "ssdlite.model", "ssdlite.deploy", "ssdlite._paths",
                     "ssdlite.distributed"},
    "ssdlite.train": {"ssdlite.config", "ssdlite.files", "ssdlite.data", "ssdlite.model", "ssdlite.deploy", "ssdlite.eval",
                      "ssdlite.distributed"},
    "ssdlite.apps": {"ssdlite.config", "ssdlite.files", "ssdlite.data", "ssdlite.model", "ssdlite.deploy", "ssdlite.eval",
                     "ssdlite.train", "ssdlite._paths", "ssdlite.distributed", "ssdlite.weights", "backbones"},
    "ssdlite": {"ssdlite.config", "ssdlite.model", "ssdlite.deploy", "ssdlite.apps", "ssdlite._lazy"},  # the package's own __init__/__main__
    "backbones": set(),  # knows nothing of detection
}
# modules that must not import torch (the ONNX Runtime back end and what it reads) ...
TORCH_FREE = ("ssdlite/config", "ssdlite/files.py", "ssdlite/_paths.py", "ssdlite/deploy/onnx_runtime.py", "ssdlite/deploy/backends.py", "ssdlite/deploy/formats.py",
              "ssdlite/deploy/onnx_format.py", "ssdlite/deploy/onnx_reader.py", "ssdlite/deploy/openvino_runtime.py", "ssdlite/deploy/ncnn_runtime.py",
              "ssdlite/deploy/auto.py", "ssdlite/deploy/machine.py", "ssdlite/data/images.py", "ssdlite/data/names.py", "ssdlite/weights",
              "ssdlite/deploy/litert_runtime.py", "ssdlite/deploy/tflite_format.py")
# ... except in these functions, which the ONNX Runtime back end never calls
TORCH_FREE_EXCEPT = {("ssdlite/config/loader.py", "check_backbone_name")}


def _library_files() -> list[Path]:
    files = sorted((REPO_ROOT / "ssdlite").rglob("*.py")) + sorted((REPO_ROOT / "backbones").rglob("*.py"))
    return [f for f in files if "tools" not in f.relative_to(REPO_ROOT).parts]  # ssdlite/tools links to tools/


def _folder(module: str) -> str | None:
    """``ssdlite.model.loss`` -> ``ssdlite.model``; ``backbones._common`` -> ``backbones``; else None."""
    parts = module.split(".")
    if parts[0] == "backbones":
        return "backbones"
    if parts[0] != "ssdlite":
        return None
    if len(parts) == 1:
        return "ssdlite"
    candidate = ".".join(parts[:2])
    return candidate if candidate in ALLOWED else "ssdlite"


def _own_folder(path: Path) -> str:
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return _folder(".".join(parts)) or ""


def _imports(path: Path, skip_functions: set[str] = frozenset()) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts[:-1])
    skipped = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in skip_functions for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module in ("ssdlite", "backbones"):  # "from ssdlite import distributed" names a submodule
                found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def test_every_library_folder_has_a_rule():
    folders = {_own_folder(f) for f in _library_files()}
    assert folders <= set(ALLOWED), sorted(folders - set(ALLOWED))


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_imports_follow_the_layers(path):
    own = _own_folder(path)
    broken = []
    for line, module in _imports(path):
        target = _folder(module)
        if target is None or target == own:
            continue
        if own == "ssdlite" and target == "ssdlite":
            continue
        if target not in ALLOWED[own]:
            broken.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {module} ({own} may import {sorted(ALLOWED[own])})")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("rel", TORCH_FREE)
def test_onnx_runtime_path_imports_no_torch(rel):
    target = REPO_ROOT / rel
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    for path in files:
        rel_path = str(path.relative_to(REPO_ROOT))
        skip = {f for p, f in TORCH_FREE_EXCEPT if p == rel_path}
        heavy = [(line, m) for line, m in _imports(path, skip) if m.split(".")[0] in ("torch", "torchvision", "backbones")]
        assert not heavy, f"{path.relative_to(REPO_ROOT)} imports {heavy}"


def test_one_place_builds_anchors():
    """Only ``build_model`` creates an AnchorGenerator; everything else asks the model (or the exported file)."""
    builders = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "AnchorGenerator":
                builders.append(str(path.relative_to(REPO_ROOT)))
    assert builders == ["ssdlite/model/network.py"], builders


def test_no_library_module_over_400_lines():
    long = {str(p.relative_to(REPO_ROOT)): n for p in _library_files() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
