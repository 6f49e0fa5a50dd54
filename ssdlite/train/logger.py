"""Training logs: ``metrics.jsonl`` (one row per epoch), TensorBoard scalars and PNG plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger", "plot_history"]

log = logging.getLogger(__name__)


class MetricsLogger:
    """Writes only on the main process (``enabled``); TensorBoard is optional."""

    def __init__(self, out_dir: str | Path, enabled: bool = True, resume: bool = False) -> None:
        self.out = Path(out_dir)
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.out / "metrics.jsonl"
        if not resume and self.jsonl.exists():
            self.jsonl.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tensorboard"))
        except Exception as e:  # tensorboard missing or broken: logs still go to metrics.jsonl
            log.warning("TensorBoard disabled: %s", e)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        step = int(row.get("step", 0))
        self.scalars({f"epoch/{k}": float(v) for k, v in row.items() if isinstance(v, (int, float)) and k not in ("epoch", "step")}, step)
        shown = {k: row[k] for k in ("epoch", "loss", "bbox_regression", "classification", "lr", "images_per_s", "AP", "AP50") if k in row}
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()), flush=True)

    def plots(self, history: list[dict]) -> None:
        if self.enabled and history:
            plot_history(history, self.out)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def plot_history(history: list[dict], out_dir: str | Path) -> list[Path]:
    """PNG plots of losses, learning rate and mAP per epoch; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    epochs = [r["epoch"] for r in history]
    panels = [
        ("losses.png", "loss per epoch", [("loss", "total"), ("bbox_regression", "box (smooth L1)"), ("classification", "class")]),
        ("lr.png", "learning rate", [("lr", "lr at epoch end")]),
        ("map.png", "validation COCO mAP", [("AP", "AP@[.5:.95]"), ("AP50", "AP50"), ("AP75", "AP75")]),
    ]
    written = []
    for name, title, series in panels:
        if not any(k in r for r in history for k, _ in series):
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label in series:
            pts = [(e, r[key]) for e, r in zip(epochs, history) if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)
    return written


def epoch_bar(enabled: bool, total: int, done: int, epoch: int, epochs: int) -> Any:
    """A tqdm bar over one epoch's steps (None when progress display is off)."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}/{epochs}", unit="it", dynamic_ncols=True)


def show_step(bar: Any, losses: dict | None, lr: float, rate: float) -> float:
    """Advance ``bar`` by one step with its loss, learning rate and images/s; returns the loss (NaN for a skipped step)."""
    loss = float(losses["loss"].detach()) if losses is not None else float("nan")
    if bar is not None:
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.4g}", ips=f"{rate:.1f}")
        bar.update(1)
    return loss
