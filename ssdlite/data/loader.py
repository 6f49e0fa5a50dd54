"""Batching: :func:`collate`, :func:`build_loader` and per-worker seeding (:func:`seed_worker`)."""

from __future__ import annotations

import random
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, get_worker_info

__all__ = ["collate", "build_loader", "seed_worker", "skipped_samples"]

_skipped = 0  # samples dropped by collate in this process (the main one when workers == 0)


def skipped_samples() -> int:
    """How many ``None`` samples :func:`collate` dropped in this process.

    With DataLoader workers collate runs in the workers; the dataset's own counters
    (``CocoDetection.stats``: ``missing_images``, ``unreadable_images``) are shared with them
    and are the numbers to report.
    """
    return _skipped


def collate(batch: Sequence[tuple[torch.Tensor, dict[str, Any]] | None]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """``[(image (3, H, W), target), ...]`` -> ``(images (N, 3, H, W), [target, ...])``.

    ``None`` samples (unreadable images) are dropped and counted, so a batch can be smaller than
    the batch size, or empty: then ``images`` is ``(0, 3, 0, 0)`` and the list is empty.
    """
    global _skipped
    samples = [s for s in batch if s is not None]
    _skipped += len(batch) - len(samples)
    if not samples:
        return torch.zeros((0, 3, 0, 0)), []
    shapes = {tuple(s[0].shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"collate needs images of one size, got {sorted(shapes)}; resize them in the dataset transform")
    return torch.stack([s[0] for s in samples]), [s[1] for s in samples]


def _datasets(ds: Any) -> list[Any]:
    """``ds`` and the datasets it wraps (Subset-like ``.dataset``, ConcatDataset)."""
    if isinstance(ds, ConcatDataset):
        return [leaf for d in ds.datasets for leaf in _datasets(d)]
    inner = getattr(ds, "dataset", None)  # Subset and other wrappers
    if isinstance(inner, Dataset):
        return [ds, *_datasets(inner)]
    return [ds]


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random``, numpy and the dataset transforms per worker.

    Torch gives each worker the seed ``base_seed + worker_id`` (base drawn from the loader's
    generator), so workers differ from each other and runs with the same generator seed repeat.
    OpenCV runs one thread per worker: :func:`build_loader` sets that before the workers fork
    (calling ``cv2.setNumThreads`` in a forked worker can deadlock).
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = get_worker_info()
    if info is None:
        return
    for k, ds in enumerate(_datasets(info.dataset)):
        reseed = getattr(getattr(ds, "transform", None), "set_random_seed", None)
        if callable(reseed):
            reseed((seed + 7919 * k) % 2**32)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    seed: int = 0,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader of ``(images (N, 3, H, W), [target, ...])`` batches (see :func:`collate`).

    ``sampler`` (e.g. a ``DistributedSampler``) replaces ``shuffle``. The shuffling order and the
    worker seeds come from a generator seeded with ``seed``. ``pin_memory`` defaults to CUDA
    being available, ``persistent_workers`` to ``workers > 0``.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    kwargs: dict[str, Any] = {}
    if workers > 0:
        # OpenCV's thread pool does not survive fork: a worker that touches it (even
        # cv2.setNumThreads) can hang forever on a lock copied from this process. One thread here
        # shuts the pool down before the workers fork, and they inherit the setting (the workers
        # are the parallelism; the training process does not decode).
        cv2.setNumThreads(1)
        kwargs["persistent_workers"] = True if persistent_workers is None else persistent_workers
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        worker_init_fn=seed_worker,
        generator=generator,
        **kwargs,
    )
