"""Training launcher: one process, or several DDP processes over gloo on one machine (the demo's
``processes > 1``), each set up as torchrun would set it up, and none left behind when the
launching process dies."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["train_demo_model"]


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGTERM this process when its parent dies (the trainer then saves ``last.pt`` and
    exits), so that a killed demo leaves no training process behind."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # another libc: no parent-death signal, nothing else changes
        return
    if os.getppid() != parent_pid:  # the parent died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _train_worker(rank: int, world: int, port: int, cfg: Any, out: str, threads: int, progress: bool, parent_pid: int) -> None:
    """One DDP training process (``torch.multiprocessing.spawn`` target): what torchrun would set up."""
    import torch

    _die_with_parent(parent_pid)

    from ssdlite import distributed as dist
    from ssdlite.train.trainer import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    try:
        Trainer(cfg, out, device="cpu", progress=progress and rank == 0).fit()
    finally:
        dist.cleanup()


def train_demo_model(cfg: Any, out_dir: str | os.PathLike, processes: int = 1, threads: int = 1, progress: bool = True
                     ) -> tuple[int, int, Any]:
    """Train ``cfg`` into ``out_dir`` with :class:`~ssdlite.train.trainer.Trainer`, in this process
    (``processes == 1``, ``threads`` torch threads) or in ``processes`` DDP processes over gloo
    (``threads`` each; ``train.batch_size`` is per process).

    Returns ``(steps, images seen, EvalResult of the final evaluation of the last weights or None)``;
    the result is None with several processes (its stats are in ``metrics.jsonl``).
    """
    import torch

    from ssdlite.train.trainer import Trainer

    if processes <= 1:
        torch.set_num_threads(threads)
        trainer = Trainer(cfg, out_dir, device="cpu", progress=progress)
        trainer.fit()
        return trainer.step, trainer.step * cfg.train.batch_size, trainer.last_eval
    import torch.multiprocessing as mp

    from ssdlite.distributed import free_port

    try:
        mp.spawn(_train_worker, args=(processes, free_port(), cfg, str(out_dir), threads, progress, os.getpid()), nprocs=processes, join=True)
    except mp.ProcessRaisedException as e:  # the child's traceback is in the message; keep its last line
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"a training process failed: {last}") from e
    rows = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = int(rows[-1]["step"]) if rows else 0
    return steps, steps * cfg.train.batch_size * processes, None
