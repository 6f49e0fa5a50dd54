"""Seeds and random-number state: what makes a resumed run replay an uninterrupted one exactly.

:class:`SeededDataset` seeds every sample's augmentation from (seed, epoch, index);
:func:`rng_state` / :func:`set_rng_state` carry the Python, NumPy and torch generators through a
checkpoint; :func:`seed_everything` seeds all three at start-up.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["SeededDataset", "rng_state", "set_rng_state", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class SeededDataset(torch.utils.data.Dataset):
    """Seeds every sample's augmentation from (seed, epoch, index): the same sample gets the same
    augmentation whichever worker loads it, so a resumed run replays an uninterrupted one exactly."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        s = (self.seed * 1_000_003 + self.epoch * 100_003 + index) % (2**31)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        transform = getattr(self.dataset, "transform", None)
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(s)
        return self.dataset[index]


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((3, tuple(int(v) for v in py[:-1]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"])))
    torch.set_rng_state(state["torch"])
