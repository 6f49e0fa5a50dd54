"""The training engine behind ``tools/train.py``: one code path from the 2-core demo to 8-GPU COCO.

``Trainer(cfg, output_dir).fit()`` trains with SGD + warm-up + cosine, optional AMP (CUDA), EMA,
gradient clipping and DDP (under torchrun), evaluates on the val split, and writes atomically
``last.pt`` (every epoch, on SIGTERM and when the time budget runs out) and ``best.pt`` (by val mAP).
``resume=True`` restores everything needed for a resumed run to end with the same weights as an
uninterrupted one: model, optimizer, scheduler, scaler, EMA, epoch, step, RNG states and the
sampler position.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ssdlite.model.checkpoint import save_checkpoint
from ssdlite.config import Config
from ssdlite import distributed as dist
from ssdlite.train.logger import MetricsLogger, epoch_bar, show_step
from ssdlite.train.optim import ModelEMA, build_optimizer, build_scheduler, set_time_progress
from ssdlite.train.sampler import ResumableSampler
from ssdlite.train.resume import restore_training_state, training_state
from ssdlite.train.seeding import SeededDataset, seed_everything

__all__ = ["Trainer", "NonFiniteLossError"]

log = logging.getLogger("ssdlite.train")


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses: the run stops instead of saving NaN weights."""


class Trainer:
    """Train ``cfg`` into ``output_dir``; see the module docstring."""

    def __init__(self, cfg: Config, output_dir: str | Path, resume: bool = False, device: str = "cpu", progress: bool = True,
                 weights_dir: str | Path | None = None) -> None:
        self.out = Path(output_dir)
        self.weights_dir = weights_dir  # named backbone weights (model.backbone.weights) are cached here
        self._setup_process(cfg.train, device, progress)
        self.train_set = self._load_train_set(cfg)
        self.cfg = self._adopt_classes(cfg, self.train_set)
        self._reported: dict = {}
        self._report_data(self.train_set)
        self._build_model()
        self._build_loader()
        self._build_optimization()
        self._init_progress()
        if resume:
            self._resume(self.out / "last.pt")
        self.logger = MetricsLogger(self.out, enabled=dist.is_main(), resume=resume)

    # ------------------------------------------------------------------ set-up steps

    def _setup_process(self, t: Any, device: str, progress: bool) -> None:
        """Distributed group, device, seeds and determinism of this process."""
        self.distributed = dist.init_distributed(device)
        self.rank, self.world = dist.rank(), dist.world_size()
        if self.distributed and device.startswith("cuda"):
            device = f"cuda:{torch.cuda.current_device()}"
        self.device = torch.device(device)
        self.progress = progress and dist.is_main()
        seed_everything(t.seed + self.rank)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

    @staticmethod
    def _load_train_set(cfg: Config) -> Any:
        """The training split, with augmentation; an error when it has nothing to learn from."""
        from ssdlite.data import CocoDetection, build_transforms
        from ssdlite.data.formats import describe_split, open_split

        split = cfg.data.train
        image_dir, index = open_split(split, cfg.data.keep_empty, category_ids=list(cfg.model.category_ids) or None)
        train_set = CocoDetection(
            image_dir,
            index,
            transform=build_transforms(cfg, train=True),
            keep_empty=cfg.data.keep_empty,
            on_unreadable="substitute",  # a bad file is replaced by another sample (counted), batches keep their size
        )
        if not train_set.stats.get("boxes", 0):
            raise ValueError(
                f"{describe_split(split)} has no usable boxes in {image_dir}: nothing to learn "
                "(run `ssdlite check-data` for the details)"
            )
        return train_set

    def _build_model(self) -> None:
        """The network (SyncBN, channels_last, DDP as configured) and the loss, which reads the
        anchors, box weights and score function from the model."""
        from ssdlite.model import build_model
        from ssdlite.model.loss import SSDLiteLoss

        cfg = self.cfg
        model = build_model(cfg, weights_dir=self.weights_dir).to(self.device)
        if cfg.train.sync_bn and self.distributed:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.anchors = model.anchors(device=self.device)
        self.criterion = SSDLiteLoss(cfg.loss, classification=model.classification, box_weights=model.box_weights)
        self.ddp = (
            torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.distributed
            else model
        )

    def _build_loader(self) -> None:
        """Resumable sampler, per-sample seeded augmentation and the DataLoader."""
        from ssdlite.data import build_loader

        t = self.cfg.train
        self.sampler = ResumableSampler(len(self.train_set), seed=t.seed, rank=self.rank, world=self.world)
        self.seeded = SeededDataset(self.train_set, t.seed)
        self.loader = build_loader(
            self.seeded, batch_size=t.batch_size, shuffle=False, workers=t.workers, sampler=self.sampler, drop_last=True, seed=t.seed
        )
        self.steps_per_epoch = self.sampler.per_rank // t.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"train.batch_size={t.batch_size} is larger than the {self.sampler.per_rank} training images per process: lower it"
            )
        self.total_steps = self.steps_per_epoch * t.epochs

    def _build_optimization(self) -> None:
        """Optimizer, schedule, AMP scaler, EMA and the BatchNorm statistics a skipped step restores."""
        t, model = self.cfg.train, self.model
        self.optimizer = build_optimizer(model, t, self.world)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, round(t.warmup_epochs * self.steps_per_epoch))
        self.use_amp = t.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.ema = ModelEMA(model, t.ema_decay) if t.ema else None
        # BN running statistics move in the forward pass, before the loss is known: a skipped
        # (non-finite) step restores them, or one bad batch would leave NaN statistics for good
        self._norm_stats = [
            b for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)
            for b in (m.running_mean, m.running_var) if b is not None
        ]
        self._norm_backup = [b.clone() for b in self._norm_stats]

    def _init_progress(self) -> None:
        """Counters a checkpoint saves and a resumed run restores."""
        self.epoch, self.step, self.epoch_step = 0, 0, 0
        self.best_ap = -1.0
        self.nonfinite_total = 0
        self.elapsed_s = 0.0  # training time used by earlier runs of a resumed run (counts against the budget)
        self._start: float | None = None  # time.monotonic() at which elapsed time 0 lies, while fit() runs
        self.history: list[dict] = []
        self._stop_signal: str | None = None
        self.last_eval = None  # the EvalResult of the latest evaluation (ssdlite.eval.coco), None before the first
        self._val_gt: tuple | None = None  # (image folder, COCO json path or dict) of the val split, made on first use

    # ------------------------------------------------------------------ set-up helpers

    @staticmethod
    def _adopt_classes(cfg: Config, dataset: Any) -> Config:
        """Store the dataset's class names and category ids in the config (and so every checkpoint)."""
        n = len(dataset.category_ids)
        if n != cfg.model.num_classes:
            raise ValueError(
                f"model.num_classes={cfg.model.num_classes} but {dataset.annotation_json} has {n} categories; "
                f"set --set model.num_classes={n}"
            )
        names = tuple(cfg.model.class_names) or tuple(dataset.class_names)
        return replace(cfg, model=replace(cfg.model, class_names=names, category_ids=tuple(dataset.category_ids)))

    def _report_data(self, ds: Any) -> None:
        """Print the dataset's counts; again later when loading images found more problems."""
        if not dist.is_main():
            return
        stats = {k: v for k, v in getattr(ds, "stats", {}).items() if isinstance(v, (int, float)) and v}
        if stats == self._reported:
            return
        self._reported = stats
        msg = ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "no problems found"
        log.info("training data %s: %d images; %s", getattr(ds, "annotation_json", ""), len(ds), msg)
        print(f"data: {len(ds)} training images; {msg}", flush=True)

    # ------------------------------------------------------------------ checkpoints

    def save(self, name: str = "last.pt", **extra: Any) -> Path:
        path = self.out / name
        if dist.is_main():
            save_checkpoint(path, self.model, self.cfg, **training_state(self), **extra)
        return path

    def _resume(self, path: Path) -> None:
        restore_training_state(self, path)
        if dist.is_main():
            print(f"resumed from {path}: epoch {self.epoch}, step {self.step}", flush=True)

    # ------------------------------------------------------------------ signals

    def elapsed(self) -> float:
        """Seconds of training so far, earlier runs of a resumed run included."""
        return self.elapsed_s if self._start is None else time.monotonic() - self._start

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._stop_signal = "SIGTERM"

    # ------------------------------------------------------------------ loop

    def fit(self) -> dict:
        """Train to the end (or the time budget / SIGTERM); returns the last metrics row."""
        t = self.cfg.train
        old = signal.signal(signal.SIGTERM, self._on_sigterm) if _main_thread() else None
        start = self._start = time.monotonic() - self.elapsed_s  # a resumed run continues its time budget
        stopped = None
        try:
            while self.epoch < t.epochs and stopped is None:
                stopped = self._train_epoch(start)
                if stopped is None:  # epoch complete
                    self.epoch += 1
                    self.epoch_step = 0
                    row = {"epoch": self.epoch, "step": self.step, **self._last_train}
                    if self._has_val and (self.epoch % t.eval_every == 0 or self.epoch == t.epochs):
                        row.update(self._evaluate())
                    self._finish_epoch(row)
            if stopped == "time budget":
                row = {"epoch": self.epoch, "step": self.step, **self._last_train}
                if self._has_val:
                    row.update(self._evaluate())
                self._finish_epoch(row, partial=True)
            elif stopped == "SIGTERM":
                self.save("last.pt")
                if dist.is_main():
                    print(f"SIGTERM: saved {self.out / 'last.pt'} at epoch {self.epoch} step {self.step}; resume with --resume", flush=True)
        finally:
            self.elapsed_s, self._start = self.elapsed(), None
            if old is not None:
                signal.signal(signal.SIGTERM, old)
            self.logger.close()
        if dist.is_main():
            self.logger.plots(self.history)
        return self.history[-1] if self.history else {}

    def _finish_epoch(self, row: dict, partial: bool = False) -> None:
        self.history.append(row)
        self._report_data(self.train_set)  # file faults are found while loading: repeat the counts
        self.logger.log(row)
        ap = row.get("AP")
        if ap is not None and ap > self.best_ap:
            self.best_ap = ap
            self.save("best.pt")
        self.save("last.pt")

    def _train_epoch(self, start: float) -> str | None:
        """One epoch (from ``epoch_step`` on); returns why it stopped early ("SIGTERM", "time budget") or None."""
        t = self.cfg.train
        self.sampler.set_epoch(self.epoch, self.epoch_step * t.batch_size)
        self.seeded.epoch = self.epoch
        self.ddp.train()
        sums = {"loss": 0.0, "bbox_regression": 0.0, "classification": 0.0}
        n_ok, seen, t0 = 0, 0, time.monotonic()
        self._consecutive = 0
        bar = epoch_bar(self.progress, self.steps_per_epoch, self.epoch_step, self.epoch, self.cfg.train.epochs)
        try:
            for images, targets in self.loader:
                if self.epoch_step >= self.steps_per_epoch:
                    break
                losses = self._train_step(images, targets)
                if losses is not None:
                    n_ok += 1
                    for k in sums:
                        sums[k] += float(losses[k].detach())
                # one collective: a stop signal on any rank, and the slowest rank's elapsed time, so that
                # every rank sets the same learning rate and stops at the same step
                signal, elapsed = dist.all_reduce_max([float(self._stop_signal is not None), time.monotonic() - start])
                if t.time_budget_s > 0:  # the cosine follows the budget when it ends the run before the last epoch
                    set_time_progress(self.scheduler, elapsed / t.time_budget_s)
                self.scheduler.step()
                self.step += 1
                self.epoch_step += 1
                seen += images.shape[0] * self.world
                lr = self.scheduler.get_last_lr()[0]
                loss = show_step(bar, losses, lr, seen / max(1e-9, time.monotonic() - t0))
                if self.progress and self.step % 20 == 0:
                    self.logger.scalars({"train/loss": loss, "train/lr": lr}, self.step)
                if signal:
                    return "SIGTERM"
                if t.time_budget_s > 0 and elapsed >= t.time_budget_s:
                    return "time budget"
        finally:
            if bar is not None:
                bar.close()
            self._last_train = {k: v / max(1, n_ok) for k, v in sums.items()}
            self._last_train["images_per_s"] = seen / max(1e-9, time.monotonic() - t0)
            self._last_train["lr"] = self.scheduler.get_last_lr()[0]
            self._last_train["nonfinite_total"] = self.nonfinite_total
        return None

    def _train_step(self, images: torch.Tensor, targets: list[dict]) -> dict | None:
        """Forward, loss, backward and optimizer step on one batch; None when the loss was not
        finite on any rank (the step is skipped on all, BN statistics restored)."""
        t = self.cfg.train
        images = images.to(self.device, non_blocking=True)
        if t.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = [{k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in tg.items()} for tg in targets]
        if self._norm_stats:
            torch._foreach_copy_(self._norm_backup, self._norm_stats)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            cls_logits, box_deltas = self.ddp(images)
        losses = self.criterion(cls_logits.float(), box_deltas.float(), self.anchors, targets)
        loss = losses["loss"]
        nonfinite = dist.broadcast_flag(not bool(torch.isfinite(loss)))  # any rank: all skip
        self.optimizer.zero_grad(set_to_none=True)
        if nonfinite:
            self._skip_nonfinite_step()
            return None
        self.scaler.scale(loss).backward()
        if t.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema:
            self.ema.update(self.model)
        self._consecutive = 0
        return losses

    def _skip_nonfinite_step(self) -> None:
        if self._norm_stats:  # undo this forward's update of the BN statistics
            torch._foreach_copy_(self._norm_stats, self._norm_backup)
        self._consecutive += 1
        self.nonfinite_total += 1
        log.warning("non-finite loss at step %d (skipped; %d in a row)", self.step, self._consecutive)
        if self._consecutive >= self.cfg.train.max_nonfinite:
            raise NonFiniteLossError(
                f"{self._consecutive} consecutive non-finite losses (step {self.step}, lr {self.scheduler.get_last_lr()[0]:.4g}): "
                "the learning rate is probably too high for this batch size (lower train.lr or raise "
                "train.warmup_epochs, or set train.clip_grad_norm), or the data has broken boxes "
                "(run `ssdlite check-data`). No checkpoint with NaN weights was written."
            )

    @property
    def _has_val(self) -> bool:
        return bool(self.cfg.data.val.annotations or self.cfg.data.val.root)  # formats.split_given

    def detector(self):
        """A :class:`~ssdlite.deploy.detector.Detector` on the current weights (the EMA when on)."""
        from ssdlite.deploy.detector import Detector

        model = self.ema.module if self.ema else self.model
        return Detector(model, self.cfg, device=str(self.device))

    def _evaluate(self) -> dict:
        from ssdlite.eval.coco import STAT_NAMES
        from ssdlite.eval.predict import evaluate_detector

        if self.distributed:  # every rank scores rank 0's statistics: the weights that rank 0 saves
            dist.broadcast_buffers(self.model)
            if self.ema:
                dist.broadcast_buffers(self.ema.module)
        if self._val_gt is None:  # a VOC / YOLO val split becomes a COCO ground truth once
            from ssdlite.data.convert import split_ground_truth

            self._val_gt = split_ground_truth(self.cfg.data.val, class_names=self.cfg.model.class_names)
        result = evaluate_detector(
            self.detector(),
            *self._val_gt,
            batch_size=max(1, self.cfg.train.batch_size),
            progress=self.progress,
            distributed=self.distributed,
        )
        self.ddp.train()
        if result is None:
            return {}
        self.last_eval = result
        return dict(zip(STAT_NAMES, [float(s) for s in result.stats]))


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
