"""Checkpoints: written atomically, read with ``weights_only=True``, self-describing.

A checkpoint is a dict of plain types and tensors only (so ``torch.load(weights_only=True)``
accepts it and no file can run code):

    {"format": "ssdlite", "version": 1, "config": to_dict(cfg), "model": state_dict,
     ... optional training state: "optimizer", "scheduler", "ema", "epoch", "step", ...}
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssdlite.config import Config, from_dict, to_dict

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "atomic_write", "CheckpointError", "FORMAT"]

FORMAT = "ssdlite"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or does not fit the model; the message says which."""


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync, then rename over ``path``.

    A crash or a failing write (e.g. a full disk) leaves the previous file at ``path`` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_checkpoint(path: str | Path, model: nn.Module, cfg: Config, **extra: Any) -> None:
    """Write ``{"format", "version", "config", "model", **extra}`` to ``path`` atomically."""
    state = {"format": FORMAT, "version": VERSION, "config": to_dict(cfg), "model": _unwrap(model).state_dict(), **extra}
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except OSError as e:
        raise OSError(f"could not write checkpoint {path}: {e.strerror or e}; the previous file (if any) is intact") from e


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel / EMA wrappers


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely (``weights_only=True``); raise :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {path} was refused: it contains Python objects other than tensors and plain data "
            f"(loading it could run code), or is not a checkpoint at all ({str(e).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is not readable (truncated or not a torch file): {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state or "config" not in state:
        raise CheckpointError(
            f"{path} is not an ssdlite checkpoint (no 'format': 'ssdlite' with 'config' and 'model'); "
            "import a torchvision file with `ssdlite convert-torchvision`"
        )
    return state


def config_of(state: dict, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config stored in a checkpoint, with optional ``key=value`` overrides."""
    return from_dict(state["config"], overrides)


def load_state_dict_strict(model: nn.Module, state_dict: dict, source: str) -> None:
    """``load_state_dict`` that names every missing, unexpected or mis-shaped tensor on failure."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} tensors differ in shape ({'; '.join(shapes[:5])}{' ...' if len(shapes) > 5 else ''})")
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''})")
        raise CheckpointError(f"{source} does not fit the model built from its config: " + "; ".join(parts))
    model.load_state_dict(state_dict)


def load_model(path: str | Path, overrides: list[str] | tuple[str, ...] = (), use_ema: bool = True) -> tuple[nn.Module, Config]:
    """Rebuild the model of a checkpoint from its stored config and load its weights (EMA when present)."""
    from ssdlite.model import build_model

    state = load_checkpoint(path)
    cfg = config_of(state, overrides)
    model = build_model(cfg, load_backbone_weights=False)
    weights = state["ema"] if use_ema and isinstance(state.get("ema"), dict) else state["model"]
    load_state_dict_strict(model, weights, str(path))
    return model, cfg
