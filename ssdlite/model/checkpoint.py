"""Checkpoints: written atomically, read with ``weights_only=True``, self-describing.

A checkpoint is a dict of plain types and tensors only (so ``torch.load(weights_only=True)``
accepts it and no file can run code):

    {"format": "ssdlite", "version": 1, "config": to_dict(cfg), "model": state_dict,
     ... optional training state: "optimizer", "scheduler", "ema", "epoch", "step", ...}
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssdlite.config import Config, from_dict, to_dict, trained_config
from ssdlite.files import atomic_write

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "CheckpointError",
    "NonFiniteWeightsError",
    "FORMAT",
]

FORMAT = "ssdlite"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or does not fit the model; the message says which."""


class NonFiniteWeightsError(ValueError):
    """A model to be saved holds NaN or infinite values (training diverged); nothing was written."""


def _non_finite(tensors: Any) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or inf."""
    if not isinstance(tensors, dict):
        return []
    return [k for k, v in tensors.items() if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_checkpoint(path: str | Path, model: nn.Module, cfg: Config, **extra: Any) -> None:
    """Write ``{"format", "version", "config", "model", **extra}`` to ``path`` atomically.

    Raises :class:`NonFiniteWeightsError` (nothing written) when the model or its EMA holds NaN or
    inf values, and ``OSError`` naming the file when the write fails (disk full, ...); either way
    the previous file at ``path`` is intact.
    """
    state = {"format": FORMAT, "version": VERSION, "config": to_dict(cfg), "model": _unwrap(model).state_dict(), **extra}
    bad = _non_finite(state["model"]) + [f"ema:{k}" for k in _non_finite(state.get("ema"))]
    if bad:
        skipped = extra.get("nonfinite_total")
        raise NonFiniteWeightsError(
            f"refusing to write {path}: {len(bad)} weight tensors hold NaN or inf ({', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''}): training diverged"
            + (f" ({skipped} non-finite loss{'es' if skipped != 1 else ''} skipped so far)" if isinstance(skipped, int) and skipped else "")
            + f". The learning rate is probably too high (train.lr={_fmt(cfg.train.lr)}): lower train.lr, raise "
            "train.warmup_epochs or set train.clip_grad_norm. The previous file (if any) is intact."
        )
    # Serialize in memory first: torch.save turns a failing write (e.g. ENOSPC) into an opaque
    # RuntimeError from its zip writer; writing the bytes ourselves keeps the OSError.
    try:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write(path, lambda f: f.write(buf.getbuffer()))
    except OSError as e:
        err = OSError(f"could not write checkpoint {path}: {e.strerror or e}; the previous file (if any) is intact")
        err.errno = e.errno  # e.g. errno.ENOSPC, for callers that check it
        raise err from e


def _fmt(v: float) -> str:
    return f"{v:g}" if math.isfinite(v) else str(v)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel / EMA wrappers


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely (``weights_only=True``); raise :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} {'is not a file' if path.exists() else 'does not exist'}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {path} was refused: it contains Python objects other than tensors and plain data "
            f"(loading it could run code), or is not a checkpoint at all ({str(e).splitlines()[0]})"
        ) from None
    except Exception as e:  # noqa: BLE001 - garbage makes the unpickler raise anything (KeyError, IndexError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is not readable (truncated or not a torch file): {first}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state or "config" not in state:
        raise CheckpointError(
            f"{path} is not an ssdlite checkpoint (no 'format': 'ssdlite' with 'config' and 'model'); "
            "import a torchvision file with `ssdlite convert-torchvision`"
        )
    for key in ("model", "ema"):
        sd = state.get(key)
        if key == "ema" and sd is None:
            continue
        if not isinstance(sd, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
            raise CheckpointError(f"checkpoint {path}: '{key}' is not a state dict (tensor name -> tensor)")
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"checkpoint {path}: 'config' is not a mapping")
    return state


def config_of(state: dict, overrides: list[str] | tuple[str, ...] = (), source: str = "checkpoint") -> Config:
    """The config stored in a checkpoint (old keys migrated), with ``key=value`` overrides.

    Overrides of what training fixed (any ``model.*`` key, the input normalization) are refused
    with a ``ConfigError`` naming the key (:func:`ssdlite.config.trained_config`).
    """
    return trained_config(state["config"], overrides, source)


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
    """Rebuild the model of a checkpoint (a file, or the name of published weights such as ``"coco"``)
    from its stored config and load its weights (EMA when present)."""
    from ssdlite.model import build_model
    from ssdlite.model.pretrained import resolve_checkpoint

    path = resolve_checkpoint(path)
    state = load_checkpoint(path)
    try:
        from_dict(state["config"])
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: its stored config is not valid: {e}") from None
    cfg = config_of(state, overrides, str(path))  # an error here names the --set key
    model = build_model(cfg, load_backbone_weights=False)
    weights = state["ema"] if use_ema and isinstance(state.get("ema"), dict) else state["model"]
    load_state_dict_strict(model, weights, str(path))
    return model, cfg
