"""A shuffling sampler whose order depends only on (seed, epoch) and that can start mid-epoch.

It plays DistributedSampler's role (each rank takes every ``world``-th index of one shared
permutation, padded to equal length) and adds ``start`` so that a resumed run sees exactly the
samples an uninterrupted run would have seen next.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler"]


class ResumableSampler(Sampler[int]):
    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1) -> None:
        if size <= 0:
            raise ValueError("the training set is empty: no images to sample (check data.train and the data report)")
        self.size, self.seed, self.shuffle, self.rank, self.world = size, seed, shuffle, rank, world
        self.per_rank = math.ceil(size / world)
        self.epoch = 0
        self.start = 0  # samples of this rank's share to skip (resume mid-epoch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """This rank's indices for the current epoch, before skipping."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            perm = torch.randperm(self.size, generator=g).tolist()
        else:
            perm = list(range(self.size))
        perm += perm[: self.per_rank * self.world - self.size]  # pad so every rank has the same count
        return perm[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start
