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
import random
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssdlite.model.checkpoint import load_checkpoint, load_state_dict_strict, save_checkpoint
from ssdlite.config import Config, migrate, to_dict
from ssdlite.train import distributed as dist
from ssdlite.train.logger import MetricsLogger
from ssdlite.train.optim import ModelEMA, build_optimizer, build_scheduler, set_time_progress
from ssdlite.train.sampler import ResumableSampler

__all__ = ["Trainer", "NonFiniteLossError"]

log = logging.getLogger("ssdlite.train")


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses: the run stops instead of saving NaN weights."""


class _SeededDataset(torch.utils.data.Dataset):
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


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((3, tuple(int(v) for v in py[:-1]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"])))
    torch.set_rng_state(state["torch"])


class Trainer:
    """Train ``cfg`` into ``output_dir``; see the module docstring."""

    def __init__(self, cfg: Config, output_dir: str | Path, resume: bool = False, device: str = "cpu", progress: bool = True) -> None:
        self.distributed = dist.init_distributed(device)
        self.rank, self.world = dist.rank(), dist.world_size()
        if self.distributed and device.startswith("cuda"):
            device = f"cuda:{torch.cuda.current_device()}"
        self.device = torch.device(device)
        self.out = Path(output_dir)
        self.progress = progress and dist.is_main()
        t = cfg.train
        self._seed_everything(t.seed + self.rank)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

        from ssdlite.data import CocoDetection, build_transforms

        if not (cfg.data.train.images and cfg.data.train.annotations):
            raise ValueError("data.train.images and data.train.annotations must be set (in the config or with --set)")
        cat_ids = list(cfg.model.category_ids) or None
        self.train_set = CocoDetection(
            cfg.data.train.images,
            cfg.data.train.annotations,
            transform=build_transforms(cfg, train=True),
            keep_empty=cfg.data.keep_empty,
            on_unreadable="substitute",  # a bad file is replaced by another sample (counted), batches keep their size
            category_ids=cat_ids,
        )
        if not self.train_set.stats.get("boxes", 0):
            raise ValueError(
                f"{cfg.data.train.annotations} has no usable boxes in {cfg.data.train.images}: nothing to learn "
                "(run `ssdlite check-data` for the details)"
            )
        cfg = self._adopt_classes(cfg, self.train_set)
        self.cfg = cfg
        self._reported: dict = {}
        self._report_data(self.train_set)

        from ssdlite.model.loss import SSDLiteLoss
        from ssdlite.model import build_model

        model = build_model(cfg).to(self.device)
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

        from ssdlite.data import build_loader

        self.sampler = ResumableSampler(len(self.train_set), seed=t.seed, rank=self.rank, world=self.world)
        self.seeded = _SeededDataset(self.train_set, t.seed)
        self.loader = build_loader(
            self.seeded, batch_size=t.batch_size, shuffle=False, workers=t.workers, sampler=self.sampler, drop_last=True, seed=t.seed
        )
        self.steps_per_epoch = self.sampler.per_rank // t.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"train.batch_size={t.batch_size} is larger than the {self.sampler.per_rank} training images per process: lower it"
            )
        self.total_steps = self.steps_per_epoch * t.epochs
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

        self.epoch, self.step, self.epoch_step = 0, 0, 0
        self.best_ap = -1.0
        self.nonfinite_total = 0
        self.elapsed_s = 0.0  # training time used by earlier runs of a resumed run (counts against the budget)
        self._start: float | None = None  # time.monotonic() at which elapsed time 0 lies, while fit() runs
        self.history: list[dict] = []
        self._stop_signal: str | None = None
        self.last_eval = None  # the EvalResult of the latest evaluation (ssdlite.eval.coco), None before the first
        if resume:
            self._resume(self.out / "last.pt")
        self.logger = MetricsLogger(self.out, enabled=dist.is_main(), resume=resume)

    # ------------------------------------------------------------------ set-up helpers

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    @staticmethod
    def _adopt_classes(cfg: Config, dataset: Any) -> Config:
        """Store the dataset's class names and category ids in the config (and so every checkpoint)."""
        n = len(dataset.category_ids)
        if n != cfg.model.num_classes:
            raise ValueError(
                f"model.num_classes={cfg.model.num_classes} but {cfg.data.train.annotations} has {n} categories; "
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
        log.info("training data %s: %d images; %s", self.cfg.data.train.annotations, len(ds), msg)
        print(f"data: {len(ds)} training images; {msg}", flush=True)

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "ema_updates": self.ema.updates if self.ema else 0,
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "best_ap": self.best_ap,
            "nonfinite_total": self.nonfinite_total,
            "elapsed_s": self._elapsed(),
            "history": self.history,
            "rng": _rng_state(),
            "world_size": self.world,
        }

    def save(self, name: str = "last.pt", **extra: Any) -> Path:
        path = self.out / name
        if dist.is_main():
            save_checkpoint(path, self.model, self.cfg, **self._state(), **extra)
        return path

    def _resume(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        saved = migrate(state["config"])  # a checkpoint of an older version names moved keys the old way
        diffs = _dict_diff(saved.get("model", {}), to_dict(self.cfg)["model"], "model.")
        if diffs:
            shown = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, a, b in diffs[:5])
            raise ValueError(f"{path} was trained with a different model config ({shown}); resume with the same --config and --set values")
        load_state_dict_strict(self.model, state["model"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema and state.get("ema"):
            self.ema.load_state_dict(state["ema"], state.get("ema_updates", 0))
        self.epoch, self.step, self.epoch_step = state["epoch"], state["step"], state["epoch_step"]
        self.best_ap = state.get("best_ap", -1.0)
        self.nonfinite_total = state.get("nonfinite_total", 0)
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        self.history = list(state.get("history", []))
        if state.get("world_size", 1) == self.world:
            _set_rng_state(state["rng"])
        if dist.is_main():
            print(f"resumed from {path}: epoch {self.epoch}, step {self.step}", flush=True)

    # ------------------------------------------------------------------ signals

    def _elapsed(self) -> float:
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
                    if self.cfg.data.val.annotations and (self.epoch % t.eval_every == 0 or self.epoch == t.epochs):
                        row.update(self._evaluate())
                    self._finish_epoch(row)
            if stopped == "time budget":
                row = {"epoch": self.epoch, "step": self.step, **self._last_train}
                if self.cfg.data.val.annotations:
                    row.update(self._evaluate())
                self._finish_epoch(row, partial=True)
            elif stopped == "SIGTERM":
                self.save("last.pt")
                if dist.is_main():
                    print(f"SIGTERM: saved {self.out / 'last.pt'} at epoch {self.epoch} step {self.step}; resume with --resume", flush=True)
        finally:
            self.elapsed_s, self._start = self._elapsed(), None
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
        t = self.cfg.train
        self.sampler.set_epoch(self.epoch, self.epoch_step * t.batch_size)
        self.seeded.epoch = self.epoch
        self.ddp.train()
        sums = {"loss": 0.0, "bbox_regression": 0.0, "classification": 0.0}
        n_ok = 0
        consecutive = 0
        seen = 0
        t0 = time.monotonic()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.steps_per_epoch, initial=self.epoch_step, desc=f"epoch {self.epoch + 1}/{t.epochs}", unit="it", dynamic_ncols=True)
        try:
            for images, targets in self.loader:
                if self.epoch_step >= self.steps_per_epoch:
                    break
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
                if not nonfinite:
                    self.scaler.scale(loss).backward()
                    if t.clip_grad_norm > 0:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_grad_norm)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    if self.ema:
                        self.ema.update(self.model)
                    consecutive = 0
                    n_ok += 1
                    for k in sums:
                        sums[k] += float(losses[k].detach())
                else:
                    if self._norm_stats:  # undo this forward's update of the BN statistics
                        torch._foreach_copy_(self._norm_stats, self._norm_backup)
                    consecutive += 1
                    self.nonfinite_total += 1
                    log.warning("non-finite loss at step %d (skipped; %d in a row)", self.step, consecutive)
                    if consecutive >= t.max_nonfinite:
                        raise NonFiniteLossError(
                            f"{consecutive} consecutive non-finite losses (step {self.step}, lr {self.scheduler.get_last_lr()[0]:.4g}): "
                            "the learning rate is probably too high for this batch size (lower train.lr or raise "
                            "train.warmup_epochs, or set train.clip_grad_norm), or the data has broken boxes "
                            "(run `ssdlite check-data`). No checkpoint with NaN weights was written."
                        )
                # one collective: a stop signal on any rank, and the slowest rank's elapsed time, so that
                # every rank sets the same learning rate and stops at the same step
                signal, elapsed = dist.all_reduce_max([float(self._stop_signal is not None), time.monotonic() - start])
                if t.time_budget_s > 0:  # the cosine follows the budget when it ends the run before the last epoch
                    set_time_progress(self.scheduler, elapsed / t.time_budget_s)
                self.scheduler.step()
                self.step += 1
                self.epoch_step += 1
                seen += images.shape[0] * self.world
                if bar is not None:
                    rate = seen / max(1e-9, time.monotonic() - t0)
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.4g}", ips=f"{rate:.1f}")
                    bar.update(1)
                if self.progress and self.step % 20 == 0:
                    self.logger.scalars({"train/loss": float(loss.detach()), "train/lr": self.scheduler.get_last_lr()[0]}, self.step)
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
        result = evaluate_detector(
            self.detector(),
            self.cfg.data.val.images,
            self.cfg.data.val.annotations,
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


def _dict_diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two nested dicts, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _dict_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [(prefix.rstrip("."), a, b)]
