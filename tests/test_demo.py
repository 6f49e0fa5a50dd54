"""The embedded demo: a tiny end-to-end run of every stage, and the generated video."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from ssdlite.eval.coco import STAT_NAMES
from ssdlite.apps.demo import run_demo
from ssdlite.apps.demo_video import make_shapes_video


def _frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_make_shapes_video_is_deterministic_and_moves(tmp_path):
    a = make_shapes_video(tmp_path / "a.mp4", frames=12, size=128, seed=3)
    b = make_shapes_video(tmp_path / "b.mp4", frames=12, size=128, seed=3)
    c = make_shapes_video(tmp_path / "c.mp4", frames=12, size=128, seed=4)
    fa, fb, fc = _frames(a), _frames(b), _frames(c)
    assert len(fa) == 12 and fa[0].shape == (128, 128, 3)
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))  # same seed, same video
    assert not np.array_equal(fa[0], fc[0])  # another seed, another scene
    # the shapes move: blurred (pixel noise averaged out), the first and last frames differ far more
    # than two consecutive frames do
    blur = lambda f: cv2.GaussianBlur(f, (9, 9), 0).astype(int)  # noqa: E731
    step = np.abs(blur(fa[1]) - blur(fa[0])).mean()
    moved = np.abs(blur(fa[-1]) - blur(fa[0])).mean()
    assert moved > 5 and moved > 2 * step

def test_make_shapes_video_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="frames"):
        make_shapes_video(tmp_path / "x.mp4", frames=0)
    with pytest.raises(ValueError, match="hexagon"):
        make_shapes_video(tmp_path / "x.mp4", frames=2, classes=["hexagon"])


def test_run_demo_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    summary = run_demo(
        out,
        overrides=["train.batch_size=4", "train.workers=0", "train.warmup_epochs=0.2"],
        num_train=16,
        num_val=4,
        time_budget_s=3,
        threads=1,
        data_workers=0,
        video_frames=8,
        val_images=3,
        progress=False,
    )
    printed = capsys.readouterr().out
    # data, checkpoints, logs and plots
    for name in ("data/annotations/instances_train.json", "data/annotations/instances_val.json", "last.pt", "best.pt",
                 "metrics.jsonl", "losses.png", "lr.png", "map.png", "metrics.json", "pr_curves.png", "model.onnx",
                 "shapes.mp4", "detections.mp4", "detections.jsonl", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert len(list((out / "data" / "train").glob("*.jpg"))) == 16
    # metrics: the 12 COCO stats and one AP per class
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["stats"]) == 12 and set(STAT_NAMES) <= set(metrics)
    assert sorted(metrics["per_class"]) == ["circle", "rectangle", "star", "triangle"]
    assert summary.stats["AP"] == pytest.approx(metrics["AP"])
    assert summary.train_steps >= 1 and summary.train_images_seen == 4 * summary.train_steps
    # annotated val images: the val files, same size
    drawn = sorted(p.name for p in (out / "val_images").glob("*.jpg"))
    assert drawn == ["000000.jpg", "000001.jpg", "000002.jpg"]
    assert cv2.imread(str(out / "val_images" / drawn[0])).shape == (320, 320, 3)
    # the video detection ran on every frame and reported its speed
    assert len(_frames(out / "detections.mp4")) == 8
    assert len((out / "detections.jsonl").read_text().splitlines()) == 8
    assert summary.fps is not None and summary.fps > 0
    assert "FPS" in printed and "AP@[.5:.95]" in printed
    assert set(summary.seconds) >= {"data", "train", "eval", "export", "video", "total"}
    # a second run reuses the dataset instead of writing it again
    before = (out / "data" / "annotations" / "instances_train.json").stat().st_mtime_ns
    run_demo(out, overrides=["train.batch_size=4", "train.workers=0"], num_train=16, num_val=4, time_budget_s=1, threads=1,
             data_workers=0, export=False, val_images=1, progress=False)
    assert (out / "data" / "annotations" / "instances_train.json").stat().st_mtime_ns == before
    assert "reusing the dataset" in capsys.readouterr().out


def test_run_demo_trains_with_two_ddp_processes(tmp_path):
    out = tmp_path / "ddp"
    summary = run_demo(out, overrides=["train.batch_size=2", "train.workers=0", "train.epochs=1"], num_train=8, num_val=4,
                       time_budget_s=60, threads=2, processes=2, data_workers=0, export=False, val_images=1, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 8 images, 2 per process and step, 2 processes: 2 steps, 8 images seen, evaluated once
    assert summary.train_steps == 2 and summary.train_images_seen == 8
    assert rows[-1]["step"] == 2 and "AP" in rows[-1] and summary.stats["AP"] == pytest.approx(rows[-1]["AP"])
    assert (out / "last.pt").is_file() and (out / "metrics.json").is_file()


def test_training_process_gets_sigterm_when_the_demo_dies(tmp_path):
    # parent -> child; the child asks for the parent-death signal, the parent is killed, the child
    # must see SIGTERM (the trainer's cue to save last.pt and exit)
    import signal
    import subprocess
    import sys
    import time

    flag = tmp_path / "sigterm_seen"
    child = (
        "import os, signal, sys, time\n"
        "from ssdlite.apps.launch import _die_with_parent\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(flag)!r}, 'w').close(), sys.exit(0)))\n"
        "_die_with_parent(int(sys.argv[1]))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = (
        "import os, subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())], stdout=subprocess.PIPE, text=True)\n"
        "p.stdout.readline()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), "the orphaned training process did not get SIGTERM"
    finally:
        proc.kill()
        try:
            os.kill(child_pid, signal.SIGKILL)
        except (ProcessLookupError, NameError, UnboundLocalError):
            pass
