"""The training engine on CPU: exact resume after an interruption, SIGTERM checkpoint, the
non-finite-loss guard, the time budget, and DDP under torchrun with 2 gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import REPO_ROOT, ShapesData, free_port
from ssdlite.model.checkpoint import load_checkpoint
from ssdlite.config import from_dict
from ssdlite.train.trainer import NonFiniteLossError, Trainer


def _overrides(data: ShapesData, **train) -> list[str]:
    base = {
        "epochs": 2, "batch_size": 4, "lr": 0.05, "reference_batch": 4, "warmup_epochs": 0.5, "workers": 0,
        "eval_every": 1, "ema": True, "seed": 7,
    }
    base.update(train)
    return [
        "model.backbone.name=mobilenet_v3_small", "model.backbone.width_mult=0.5", "model.num_classes=4",
        "model.input_size=[128,128]", "model.extra_channels=[64,32,32,16]",
        f"data.train.images={data.train_images}", f"data.train.annotations={data.train_annotations}",
        f"data.val.images={data.val_images}", f"data.val.annotations={data.val_annotations}",
    ] + [f"train.{k}={v}" for k, v in base.items()]


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_after_interruption_gives_identical_weights(shapes_data, tmp_path, optimizer):
    torch.set_num_threads(1)
    cfg = from_dict({}, _overrides(shapes_data, optimizer=optimizer, **({"lr": 0.002, "weight_decay": 0.05} if optimizer == "adamw" else {})))
    full = Trainer(cfg, tmp_path / "full", progress=False)
    full.fit()

    # interrupted mid-epoch 1 (a SIGTERM after the 4th step), then resumed
    part = Trainer(cfg, tmp_path / "part", progress=False)
    calls = {"n": 0}
    criterion = part.criterion

    def counting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            part._stop_signal = "SIGTERM"
        return criterion(*a, **k)

    part.criterion = counting
    assert type(part.optimizer).__name__ == {"sgd": "SGD", "adamw": "AdamW"}[optimizer]
    assert [g["weight_decay"] for g in part.optimizer.param_groups] == [cfg.train.weight_decay, cfg.train.norm_weight_decay]
    part.fit()
    state = load_checkpoint(tmp_path / "part" / "last.pt")
    assert (state["epoch"], state["epoch_step"], state["step"]) == (1, 1, 4)
    Trainer(cfg, tmp_path / "part", resume=True, progress=False).fit()

    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "part" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    ema_a = load_checkpoint(tmp_path / "full" / "last.pt")["ema"]
    ema_b = load_checkpoint(tmp_path / "part" / "last.pt")["ema"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all("AP" in r for r in rows)
    for name in ("best.pt", "losses.png", "lr.png", "map.png"):
        assert (tmp_path / "full" / name).exists(), name


def test_nonfinite_losses_stop_the_run_without_nan_checkpoint(shapes_data, tmp_path):
    cfg = from_dict({}, _overrides(shapes_data, max_nonfinite=2, ema=False))
    trainer = Trainer(cfg, tmp_path / "nan", progress=False)
    real = trainer.criterion

    def poisoned(*a, **k):
        out = real(*a, **k)
        out["loss"] = out["loss"] * float("nan")
        return out

    trainer.criterion = poisoned
    with pytest.raises(NonFiniteLossError, match="learning rate is probably too high"):
        trainer.fit()
    assert trainer.nonfinite_total == 2
    assert not (tmp_path / "nan" / "best.pt").exists()
    for v in trainer.model.state_dict().values():
        assert torch.isfinite(v.float()).all()


def test_one_nonfinite_batch_is_skipped_without_poisoning_batch_norm(shapes_data, tmp_path):
    """An inf image reaches the forward pass (BN running statistics become NaN there, before the
    loss is known): the step is skipped and counted, the statistics are restored, the run ends and
    saves finite checkpoints."""
    cfg = from_dict({}, _overrides(shapes_data, epochs=1, ema=False))
    trainer = Trainer(cfg, tmp_path / "inf", progress=False)
    loader, seen = trainer.loader, []

    class OneBadBatch:
        def __iter__(self):
            for k, (images, targets) in enumerate(loader):
                if k == 1:
                    images = images.clone()
                    images[0, 0, 0, 0] = float("inf")
                seen.append(k)
                yield images, targets

    trainer.loader = OneBadBatch()
    trainer.fit()
    assert trainer.nonfinite_total == 1 and len(seen) == trainer.steps_per_epoch == 3
    for name, v in load_checkpoint(tmp_path / "inf" / "last.pt")["model"].items():
        assert torch.isfinite(v.float()).all(), name
    for m in trainer.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.isfinite(m.running_var).all() and torch.isfinite(m.running_mean).all()


def test_time_budget_stops_cleanly_and_evaluates(shapes_data, tmp_path):
    cfg = from_dict({}, _overrides(shapes_data, epochs=50, time_budget_s=1e-3, ema=False))
    final = Trainer(cfg, tmp_path / "budget", progress=False).fit()
    assert final["step"] == 1 and "AP" in final
    assert (tmp_path / "budget" / "last.pt").exists()


def test_wrong_class_count_is_a_clear_error(shapes_data, tmp_path):
    cfg = from_dict({}, _overrides(shapes_data) + ["model.num_classes=80"])
    with pytest.raises(ValueError, match=r"model.num_classes=80 but .*instances_train.json has 4 categories"):
        Trainer(cfg, tmp_path / "x", progress=False)


def test_torchrun_ddp_two_cpu_processes(shapes_data, tmp_path):
    # a port free now, not a fixed one: suites running side by side must not meet on the same port
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}",
           str(REPO_ROOT / "tools" / "train.py"), "--output", str(tmp_path / "ddp"), "--no-progress", "--threads", "1",
           "--config", str(REPO_ROOT / "configs" / "shapes_demo.yaml")]
    for o in _overrides(shapes_data, epochs=1, batch_size=2, ema=False):
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    state = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert state["world_size"] == 2 and state["epoch"] == 1
    # 12 images / 2 ranks / batch 2 = 3 steps per epoch; evaluation gathered every rank's detections
    assert state["step"] == 3
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and "AP" in rows[0]
