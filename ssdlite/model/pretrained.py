"""Weights by name for the model: ImageNet backbones for ``build_model`` and whole detectors for
``Detector.from_checkpoint`` / the tools, resolved through :mod:`ssdlite.weights` (registry rows,
verified downloads, the torch.hub cache).

``model.backbone.weights`` takes a file path, a registry name or ``imagenet`` (the backbone's
default row: the weights torchvision's detection recipes start from). A reduced-tail backbone has
no ImageNet weights of its own: it loads every layer of the full network's weights that fits and
reports once which layers start from scratch, as torchvision trains its reduced tail from
scratch. A detector name (``coco`` or a full name) is downloaded once and converted to an
ssdlite checkpoint beside the download, which later uses read directly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import backbones
from ssdlite.config import BackboneConfig
from ssdlite.weights.download import fetch
from ssdlite.weights.registry import WEIGHTS, WeightsEntry, imagenet_for, lookup

__all__ = ["load_backbone_weights", "resolve_checkpoint", "backbone_entry"]

log = logging.getLogger("ssdlite.weights")
_REPORTED: set[tuple] = set()


def backbone_entry(b: BackboneConfig) -> WeightsEntry | None:
    """The registry row ``model.backbone.weights`` names (``imagenet`` or a name), None for a path; ValueError if it does not fit."""
    if b.weights is None:
        return None
    entry = imagenet_for(b.name, b.width_mult) if b.weights == "imagenet" else lookup(b.weights)
    if entry is None:
        return None
    if entry.kind != "backbone":
        raise ValueError(f"model.backbone.weights={b.weights!r} is a {entry.kind}, not backbone weights; "
                         f"use it as a checkpoint (--checkpoint {b.weights})")
    name, width = entry.fits
    if name != b.name or abs(width - b.width_mult) > 1e-9:
        raise ValueError(f"model.backbone.weights={b.weights!r} fits {name} at width_mult={width}, "
                         f"not {b.name} at width_mult={b.width_mult}")
    return entry


def load_backbone_weights(backbone: Any, b: BackboneConfig, weights_dir: str | os.PathLike | None = None,
                          progress: bool = True) -> list[str]:
    """Load ``model.backbone.weights`` (path, name or ``imagenet``) into ``backbone``; returns the keys that start
    from scratch (a reduced tail's layers that the full network's weights do not fit)."""
    entry = backbone_entry(b)
    if entry is None:  # a file path
        path = Path(b.weights)
        weights: Any = path
    else:
        path = fetch(entry, weights_dir, progress)
        weights = backbones.read_state_dict(path)
        if entry.layout == "in_order":
            weights = _in_order(weights, backbone.state_dict(), entry.name)
    description = f"{b.name}(width_mult={b.width_mult}, reduced_tail={b.reduced_tail})"
    scratch = backbones.load_weights(backbone, weights, description, partial=b.reduced_tail)
    key = (str(path), b.name, b.width_mult, b.reduced_tail)
    if scratch and key not in _REPORTED:
        _REPORTED.add(key)
        log.warning("%s: %d of %d backbone tensors start from scratch (the reduced tail has no ImageNet weights): %s",
                    entry.name if entry else path, len(scratch), len(backbone.state_dict()), _layers(scratch))
    return scratch


def _layers(keys: list[str]) -> str:
    """``features.13.block.2.fc1.weight, ...`` -> ``features.13.block.2, features.14, ...`` (in order, once each)."""
    seen: dict[str, None] = {}
    for k in keys:
        parts = k.split(".")
        seen[".".join(parts[:4] if parts[0] == "features" and len(parts) > 4 and parts[2] == "block" else parts[:2])] = None
    return ", ".join(seen)


def _in_order(state: dict, own: dict, name: str) -> dict:
    """Map a file of another naming onto ours: the file's convolution / norm tensors in order, one for one,
    each shape checked (classifier and counters left out)."""
    keep = lambda k: not k.endswith("num_batches_tracked") and not k.startswith("classifier")  # noqa: E731
    theirs = [(k, v) for k, v in state.items() if keep(k)]
    ours = [k for k in own if keep(k)]
    if len(theirs) < len(ours):
        raise ValueError(f"{name}: the file has {len(theirs)} tensors for our {len(ours)}; not the architecture it claims")
    mapped = {}
    for k, (their_key, v) in zip(ours, theirs):
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{name}: tensor {their_key!r} {tuple(v.shape)} does not fit our {k!r} {tuple(own[k].shape)}")
        mapped[k] = v
    return mapped


def resolve_checkpoint(name_or_path: str | os.PathLike, weights_dir: str | os.PathLike | None = None,
                       progress: bool = True) -> Path:
    """A checkpoint file: the path itself when it exists or is not a registry name, else the named detector,
    downloaded (verified) and converted to an ssdlite checkpoint beside the download on first use."""
    path = Path(name_or_path)
    entry = None if path.exists() else lookup(str(name_or_path))
    if entry is None:
        return path
    if entry.kind != "detector":
        names = ", ".join(w.name for w in WEIGHTS if w.kind == "detector")
        raise ValueError(f"{name_or_path} names {entry.kind} weights (for model.backbone.weights), not a detector; "
                         f"detectors: {names} (alias coco)")
    raw = fetch(entry, weights_dir, progress)
    converted = raw.with_name(f"{raw.stem}.ssdlite.pt")
    if not converted.is_file() or converted.stat().st_mtime < raw.stat().st_mtime:
        from ssdlite.model.convert import convert_torchvision_file

        convert_torchvision_file(raw, converted)
    return converted
