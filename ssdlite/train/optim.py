"""Optimizer, learning-rate schedule and weight EMA for training."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ssdlite.config import TrainConfig

__all__ = ["build_optimizer", "lr_factor", "WarmupCosine", "build_scheduler", "set_time_progress", "ModelEMA", "scaled_lr"]


def scaled_lr(t: TrainConfig, world_size: int) -> float:
    """``t.lr`` is for a total batch of ``t.reference_batch``; scale linearly to the real total batch."""
    return t.lr * (t.batch_size * world_size) / t.reference_batch


def build_optimizer(model: nn.Module, t: TrainConfig, world_size: int = 1) -> torch.optim.Optimizer:
    """``t.optimizer``: SGD with momentum ``t.momentum`` (the papers'), or AdamW (betas
    ``(t.momentum, 0.999)``); ``t.weight_decay`` on conv/linear weights, ``t.norm_weight_decay`` on
    BN and biases (AdamW's decay is decoupled: use e.g. 0.05 there, not SGD's 4e-5)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm))
            (no_decay if is_norm or name == "bias" else decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": t.norm_weight_decay}]
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=scaled_lr(t, world_size), betas=(t.momentum, 0.999))
    return torch.optim.SGD(groups, lr=scaled_lr(t, world_size), momentum=t.momentum, nesterov=False)


def lr_factor(step: int, total_steps: int, warmup_steps: int, warmup_start: float = 0.001, min_progress: float = 0.0) -> float:
    """Linear warm-up from ``warmup_start`` to 1 over ``warmup_steps``, then cosine to 0 at ``total_steps``.

    ``min_progress`` in [0, 1] moves the cosine at least that far (a time budget that will end the
    run before ``total_steps``: the cosine then follows the fraction of the budget used).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = max(min(1.0, (step - warmup_steps) / span), min(1.0, max(0.0, min_progress)))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """The LR factor of :func:`lr_factor` as a callable object, so ``LambdaLR.state_dict()`` saves its
    fields (``min_progress`` included) and a resumed run restores them."""

    def __init__(self, total_steps: int, warmup_steps: int, warmup_start: float = 0.001) -> None:
        self.total_steps, self.warmup_steps, self.warmup_start = int(total_steps), int(warmup_steps), float(warmup_start)
        self.min_progress = 0.0

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.warmup_steps, self.warmup_start, self.min_progress)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule (its state is the step count and :class:`WarmupCosine`'s fields, so resuming
    restores it exactly)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps))


def set_time_progress(scheduler: torch.optim.lr_scheduler.LambdaLR, progress: float) -> None:
    """Let the cosine of a :func:`build_scheduler` schedule follow ``progress`` (fraction of a time
    budget used, 0..1) when that is ahead of the step count; takes effect at the next ``step()``."""
    for fn in scheduler.lr_lambdas:
        if isinstance(fn, WarmupCosine):
            fn.min_progress = max(fn.min_progress, min(1.0, float(progress)))


class ModelEMA:
    """Exponential moving average of weights (buffers copied), with the usual warm-up of the decay:
    ``d = decay * (1 - exp(-updates / 2000))`` so early averages are not dominated by the random init.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1.0 - math.exp(-self.updates / 2000.0))
        ema_state = self.module.state_dict()
        for k, v in model.state_dict().items():
            e = ema_state[k]
            if v.dtype.is_floating_point:
                e.mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                e.copy_(v)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = updates
