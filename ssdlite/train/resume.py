"""Exact resume: the training state a checkpoint carries beside the weights, and restoring it.

``last.pt`` holds the model, optimizer, scheduler, AMP scaler, EMA, epoch / step counters,
elapsed time, metrics history and the RNG states, so that a resumed run ends with the same
weights as an uninterrupted one (tests/test_train.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssdlite.config import from_dict, to_dict
from ssdlite.model.checkpoint import load_checkpoint, load_state_dict_strict
from ssdlite.train.seeding import rng_state, set_rng_state

__all__ = ["training_state", "restore_training_state"]


def training_state(tr: Any) -> dict:
    """Everything beside the weights that a resumed run needs to continue exactly (saved in every ``last.pt``)."""
    return {
        "optimizer": tr.optimizer.state_dict(),
        "scheduler": tr.scheduler.state_dict(),
        "scaler": tr.scaler.state_dict(),
        "ema": tr.ema.state_dict() if tr.ema else None,
        "ema_updates": tr.ema.updates if tr.ema else 0,
        "epoch": tr.epoch,
        "step": tr.step,
        "epoch_step": tr.epoch_step,
        "best_ap": tr.best_ap,
        "nonfinite_total": tr.nonfinite_total,
        "elapsed_s": tr.elapsed(),
        "history": tr.history,
        "rng": rng_state(),
        "world_size": tr.world,
    }


def restore_training_state(tr: Any, path: Path) -> None:
    """Load ``path`` (a ``last.pt``) into the trainer: weights, optimizer, schedule, scaler, EMA, counters and RNG
    states; ``ValueError`` naming the keys when the checkpoint was trained with another model config."""
    state = load_checkpoint(path, map_location=tr.device)
    saved = to_dict(from_dict(state["config"]))  # an older version's checkpoint: moved keys migrated, defaults filled
    diffs = _dict_diff(saved["model"], to_dict(tr.cfg)["model"], "model.")
    if diffs:
        shown = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, a, b in diffs[:5])
        raise ValueError(f"{path} was trained with a different model config ({shown}); resume with the same --config and --set values")
    load_state_dict_strict(tr.model, state["model"], str(path))
    tr.optimizer.load_state_dict(state["optimizer"])
    tr.scheduler.load_state_dict(state["scheduler"])
    tr.scaler.load_state_dict(state["scaler"])
    if tr.ema and state.get("ema"):
        tr.ema.load_state_dict(state["ema"], state.get("ema_updates", 0))
    tr.epoch, tr.step, tr.epoch_step = state["epoch"], state["step"], state["epoch_step"]
    tr.best_ap = state.get("best_ap", -1.0)
    tr.nonfinite_total = state.get("nonfinite_total", 0)
    tr.elapsed_s = float(state.get("elapsed_s", 0.0))
    tr.history = list(state.get("history", []))
    if state.get("world_size", 1) == tr.world:
        set_rng_state(state["rng"])


def _dict_diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two nested dicts, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _dict_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [(prefix.rstrip("."), a, b)]
