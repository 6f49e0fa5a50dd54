"""Load a state-dict file into a backbone, with errors that name the file, the tensor and both shapes."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

# containers under which checkpoints often keep the state dict
_NESTED_KEYS = ("state_dict", "model")
_PREFIXES = ("module.",)  # DistributedDataParallel
_IGNORED_SUFFIX = "num_batches_tracked"  # batch-norm counters: never required, never an error


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a ``torch.save``-d state dict (possibly nested under ``model`` / ``state_dict``).

    Loaded with ``weights_only=True``. ``ValueError`` naming the file when it is missing or is not a
    state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"weights file {str(path)!r} was refused: it holds Python objects other than tensors and plain "
            "data, so loading it could run code (only state dicts of tensors are accepted)"
        ) from None
    except Exception as e:  # noqa: BLE001 - any other unpickling failure means "not a state dict file"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"weights file {str(path)!r} is not a PyTorch state-dict file ({first[:200]})") from e
    for key in _NESTED_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"weights file {str(path)!r} holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"weights file {str(path)!r}: entry {bad[0]!r} is a {type(obj[bad[0]]).__name__}, not a tensor")
    state = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    return state


def _cut_from_extractor(model: nn.Module, key: str) -> bool:
    """Whether a feature extractor lacks tensor ``key`` by design: a classifier one or a layer after its last tap."""
    if key.startswith("classifier."):
        return True
    full_depth = getattr(model, "full_depth", None)  # a MobileNet: layers of the whole network
    head, _, rest = key.partition(".")
    index = rest.split(".", 1)[0]
    return full_depth is not None and head == "features" and index.isdigit() and len(model.features) <= int(index) < full_depth


def load_weights(
    model: nn.Module,
    path: str | Path | Mapping[str, Tensor],
    description: str = "the model",
    ignore_unexpected: bool = False,
    partial: bool = False,
) -> list[str]:
    """Copy the tensors of ``path`` (a file, or a state dict already read) into ``model``.

    Names must match (see ``read_state_dict``). A model without a ``classifier`` (feature
    extractor) ignores the file's ``classifier.*`` tensors and those of the ``features`` layers it
    cut after its last tap. Every other tensor must exist on both sides with the same shape, else
    ``ValueError`` naming the file, the tensor key and both shapes. ``ignore_unexpected`` skips file
    tensors the model lacks (a timm ``features_only`` body loading its classifier's file).
    ``partial`` loads every tensor that fits and keeps the model's own initialization for the
    others (a reduced tail from full-size ImageNet weights); it returns the keys that start from
    scratch (empty otherwise).
    """
    where = f"weights file {str(path)!r}" if not isinstance(path, Mapping) else description
    state = dict(path) if isinstance(path, Mapping) else read_state_dict(path)
    own = model.state_dict()
    if getattr(model, "classifier", None) is None:
        state = {k: v for k, v in state.items() if not _cut_from_extractor(model, k)}
    if partial:
        fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        scratch = [k for k in own if k not in fits and not k.endswith(_IGNORED_SUFFIX)]
        if not fits:
            raise ValueError(f"{where}: no tensor fits {description}; is it weights of another architecture?")
        model.load_state_dict({k: fits.get(k, own[k]) for k in own}, strict=True)
        return scratch
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(
                f"{where}: tensor {key!r} has shape {tuple(value.shape)} in the file "
                f"but {tuple(own[key].shape)} in {description}"
            )
    missing = [k for k in own if k not in state and not k.endswith(_IGNORED_SUFFIX)]
    if missing:
        k = missing[0]
        raise ValueError(
            f"{where}: tensor {k!r} of shape {tuple(own[k].shape)} needed by {description} is missing from the file "
            f"({len(missing)} missing of {len(own)}; the file has {len(state)} tensors, e.g. {next(iter(state), '-')!r})"
        )
    unexpected = [k for k in state if k not in own and not k.endswith(_IGNORED_SUFFIX)]
    if unexpected and not ignore_unexpected:
        k = unexpected[0]
        raise ValueError(
            f"{where}: tensor {k!r} of shape {tuple(state[k].shape)} in the file has no place in {description} "
            f"({len(unexpected)} such tensors)"
        )
    merged = {k: state.get(k, own[k]) for k in own}
    model.load_state_dict(merged, strict=True)
    return []
