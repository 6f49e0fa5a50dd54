"""torchrun / DDP helpers: NCCL on GPU, gloo on CPU; rank 0 writes logs and checkpoints."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "is_main", "world_size", "rank", "all_gather_list", "barrier", "cleanup", "broadcast_flag", "all_reduce_max", "broadcast_buffers", "free_port"]


def init_distributed(device: str) -> bool:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1); returns whether it did."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_list(items: list[Any]) -> list[Any]:
    """Concatenate a picklable list from every rank (rank order); the list itself when not distributed."""
    if not dist.is_initialized():
        return items
    gathered: list[list[Any] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in (part or [])]


def broadcast_flag(flag: bool) -> bool:
    """True on every rank when any rank says True (e.g. a SIGTERM seen by one process)."""
    if not dist.is_initialized():
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_reduce_max(values: list[float]) -> list[float]:
    """Element-wise maximum over ranks (float64), the same list on every rank; ``values`` itself
    when not distributed. One collective for several per-step decisions (elapsed time, stop flags)."""
    if not dist.is_initialized():
        return [float(v) for v in values]
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [float(v) for v in t.tolist()]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank. DDP broadcasts
    them at the start of each forward, but the forward then updates each rank's copy with its own
    batch: after the last step the ranks' statistics differ, and an evaluation sharded over ranks
    would not score the weights that rank 0 saves."""
    if not dist.is_initialized():
        return
    for buf in module.buffers():
        if buf.is_floating_point() or buf.dtype in (torch.int64, torch.int32):
            dist.broadcast(buf.data, src=src)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it), e.g. for ``MASTER_PORT`` of processes
    started on one machine."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
