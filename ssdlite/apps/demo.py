"""The embedded demo (``make demo``): synthetic shapes -> train -> evaluate -> ONNX -> video detection.

``run_demo(out_dir="runs/demo")`` runs every step of the main job on a CPU and prints a short
summary:

1. writes the synthetic shapes dataset (:func:`ssdlite.data.synthetic.make_shapes_dataset`) to
   ``OUT/data`` (kept and reused when a previous run wrote the same one);
2. trains ``configs/shapes_demo.yaml`` with :class:`ssdlite.train.trainer.Trainer` for the
   config's time budget (``train.time_budget_s``; the learning rate follows the budget), which
   writes ``last.pt``, ``best.pt``, ``metrics.jsonl`` and the loss / lr / mAP plots to ``OUT``.
   With ``processes > 1`` (default: 2 on a multi-core CPU) it trains with DDP over gloo, the
   config's ``train.batch_size`` per process: on 2 cores two one-thread processes see 1.2x the
   images per second of one two-thread process (small depthwise ops scale badly across threads);
3. evaluates on the val split (separate generated images) with the COCO metrics and writes
   ``OUT/metrics.json`` (the 12 stats and per-class APs), ``OUT/pr_curves.png`` and annotated
   val images ``OUT/val_images/*.jpg`` (detections in class colours, ground truth in thin white);
4. exports the model to ``OUT/model.onnx`` and runs ``ssdlite detect`` (``tools/detect.py``) with
   ONNX Runtime on a generated video of moving shapes (:func:`make_shapes_video`), writing
   ``OUT/detections.mp4`` and ``OUT/detections.jsonl`` and printing the FPS it reached.

The val split is generated from the same seed but its own random streams (image ``k`` of split
``val`` never equals any training image), so the metrics are honest held-out numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

__all__ = ["DemoSummary", "run_demo", "make_shapes_video", "draw_val_images", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = "configs/shapes_demo.yaml"


@dataclass
class DemoSummary:
    """What :func:`run_demo` did: output paths, metrics and seconds per stage."""

    out_dir: str
    checkpoint: str = ""
    stats: dict[str, float] = field(default_factory=dict)  # the 12 COCO stats by name
    per_class: dict[str, float] = field(default_factory=dict)
    train_images_seen: int = 0
    train_steps: int = 0
    onnx: str | None = None
    video: str | None = None
    detections_video: str | None = None
    fps: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds

    def format(self) -> str:
        s = self.stats
        lines = [
            f"demo: COCO AP@[.5:.95] {s.get('AP', float('nan')):.3f}  AP50 {s.get('AP50', float('nan')):.3f}  "
            f"AP75 {s.get('AP75', float('nan')):.3f}  (val split, {len(self.per_class)} classes)",
            "demo: per class AP " + ", ".join(f"{k} {v:.3f}" for k, v in self.per_class.items()),
            f"demo: trained {self.train_steps} steps, {self.train_images_seen} images seen",
        ]
        if self.fps is not None:
            lines.append(f"demo: video detection (ONNX Runtime) {self.fps:.1f} FPS -> {self.detections_video}")
        lines.append("demo: seconds " + ", ".join(f"{k} {v:.0f}" for k, v in self.seconds.items()))
        lines.append(f"demo: outputs in {self.out_dir} (checkpoint {self.checkpoint})")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- video


def make_shapes_video(path: str | os.PathLike, frames: int = 150, size: int = 320, seed: int = 0, fps: float = 25.0,
                      classes: Sequence[str] | None = None, num_shapes: tuple[int, int] = (3, 7)) -> Path:
    """Write a short ``.mp4`` (``size`` x ``size``, ``mp4v``) of shapes moving over a textured background.

    The shapes, background and pixel noise come from :mod:`ssdlite.data.synthetic` (the training
    data's look): ``num_shapes`` shapes of ``classes`` (default: the dataset's classes), longer side
    24-120 px at 320, each gliding at a constant velocity, bouncing off the borders and slowly
    rotating. Deterministic given ``seed``. Returns ``path``.
    """
    from ssdlite.data import synthetic as syn

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if size < 64:
        raise ValueError(f"size must be >= 64 px, got {size}")
    classes = tuple(classes or syn.DEFAULT_CLASSES)
    unknown = [c for c in classes if c not in syn.SHAPES]
    if unknown:
        raise ValueError(f"unknown shape classes {unknown}; choose from {list(syn.SHAPES)}")
    rng = np.random.default_rng([seed, 7])
    scale = size / 320.0
    background = syn._background(size, rng)
    shapes = []
    for _ in range(int(rng.integers(num_shapes[0], num_shapes[1] + 1))):
        unit = syn._unit_polygon(classes[int(rng.integers(len(classes)))], rng)
        unit = unit - (unit.min(0) + unit.max(0)) / 2
        unit = unit / np.abs(unit).max()  # longer half-extent 1 (before rotation)
        half = rng.uniform(12, 60) * scale
        center = rng.uniform(half, size - half, 2)
        speed = rng.uniform(1.0, 3.5) * scale
        angle = rng.uniform(0, 2 * np.pi)
        colour = syn._pick_colour(background.reshape(-1, 3).mean(0), rng)
        shapes.append({"unit": unit, "half": half, "center": center, "velocity": speed * np.array([math.cos(angle), math.sin(angle)]),
                       "angle": 0.0, "spin": rng.uniform(-0.03, 0.03), "colour": colour})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (size, size))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path} (OpenCV has no mp4v encoder?)")
    try:
        for _ in range(frames):
            img = background.copy()
            for s in shapes:
                pts = syn._rotate(s["unit"], s["angle"]) * s["half"] + s["center"]
                ipts = np.round(pts * (1 << syn._SUB)).astype(np.int32)[None]
                cv2.fillPoly(img, ipts, s["colour"], cv2.LINE_AA, syn._SUB)
                # move, bouncing off the borders (the rotated extent stays inside)
                s["center"] = s["center"] + s["velocity"]
                s["angle"] += s["spin"]
                for axis in (0, 1):
                    if not s["half"] <= s["center"][axis] <= size - s["half"]:
                        s["velocity"][axis] = -s["velocity"][axis]
                        s["center"][axis] = float(np.clip(s["center"][axis], s["half"], size - s["half"]))
            img = syn._add_noise(img, rng)
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


# ----------------------------------------------------------------------------- annotated images


def draw_val_images(detector: Any, images_dir: str | os.PathLike, annotations: str | os.PathLike, out_dir: str | os.PathLike,
                    count: int = 12, score_thresh: float = 0.3) -> list[Path]:
    """Draw ``detector``'s detections (score >= ``score_thresh``, class name and score in a stable colour
    per class) and the ground truth (thin white boxes) on the first ``count`` images of a COCO json;
    writes ``out_dir/<file name>`` JPEGs and returns their paths."""
    from ssdlite.data.images import load_image
    from ssdlite.apps.video import draw_detections

    data = json.loads(Path(annotations).read_text(encoding="utf-8"))
    boxes_of: dict[int, list[list[float]]] = {}
    for a in data.get("annotations", []):
        boxes_of.setdefault(int(a["image_id"]), []).append(a["bbox"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for im in data["images"][:count]:
        rgb = load_image(Path(images_dir) / im["file_name"])
        det = detector([rgb])[0]
        keep = det.scores >= score_thresh
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for x, y, w, h in boxes_of.get(int(im["id"]), []):
            cv2.rectangle(bgr, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), (255, 255, 255), 1)
        kept = type(det)(boxes=det.boxes[keep], scores=det.scores[keep], labels=det.labels[keep],
                         names=[n for n, k in zip(det.names, keep) if k])
        draw_detections(bgr, kept)
        path = out / Path(im["file_name"]).name
        if not cv2.imwrite(str(path), bgr):
            raise OSError(f"cannot write {path}")
        written.append(path)
    return written


# ----------------------------------------------------------------------------- data


def _dataset_ready(data_dir: Path, num_train: int, num_val: int, seed: int) -> bool:
    """True when ``data_dir`` holds the dataset ``make_shapes_dataset`` would write with these settings."""
    for split, n in (("train", num_train), ("val", num_val)):
        ann = data_dir / "annotations" / f"instances_{split}.json"
        try:
            data = json.loads(ann.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if len(data.get("images", [])) != n or f"seed {seed}" not in str(data.get("info", {}).get("description", "")):
            return False
        if sum(1 for _ in (data_dir / split).glob("*.jpg")) < n:
            return False
    return True


def _detect_video(onnx_path: Path, video: Path, save: Path, json_path: Path, threads: int | None) -> tuple[float | None, str]:
    """Run ``ssdlite detect`` (tools/detect.py) in its own process; returns (FPS, its output)."""
    cmd = [sys.executable, "-m", "ssdlite", "detect", "--source", str(video), "--checkpoint", str(onnx_path),
           "--save", str(save), "--json", str(json_path)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise RuntimeError(f"detection on {video} failed (exit {proc.returncode}): {output[-800:]}")
    m = re.search(r"FPS:\s*([0-9.]+)", proc.stdout)
    return (float(m.group(1)) if m else None), output


# ----------------------------------------------------------------------------- training


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    from ssdlite.train import distributed as dist
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

    try:
        mp.spawn(_train_worker, args=(processes, _free_port(), cfg, str(out_dir), threads, progress, os.getpid()), nprocs=processes, join=True)
    except mp.ProcessRaisedException as e:  # the child's traceback is in the message; keep its last line
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"a training process failed: {last}") from e
    rows = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = int(rows[-1]["step"]) if rows else 0
    return steps, steps * cfg.train.batch_size * processes, None


# ----------------------------------------------------------------------------- the demo


def run_demo(
    out_dir: str | os.PathLike = "runs/demo",
    config: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    num_train: int = 4000,
    num_val: int = 200,
    time_budget_s: float | None = None,
    seed: int = 0,
    threads: int | None = None,
    processes: int | None = None,
    data_workers: int | None = None,
    video_frames: int = 150,
    val_images: int = 12,
    export: bool = True,
    progress: bool = True,
) -> DemoSummary:
    """Run the whole demo into ``out_dir`` (see the module docstring) and print a summary.

    Args:
        out_dir: output folder (the dataset goes to ``out_dir/data``).
        config: the demo config (default: ``configs/shapes_demo.yaml`` of the source tree).
        overrides: ``key=value`` config overrides (``--set``), applied after the data paths.
        num_train, num_val: images of the generated dataset.
        time_budget_s: training seconds (default: the config's ``train.time_budget_s``).
        seed: dataset seed (the val split has its own random streams).
        threads: CPU threads in all (default: all cores).
        processes: training processes (DDP over gloo, ``threads // processes`` threads each; the
            config's batch size is per process); default 2 when there are 2 or more threads, else 1.
        data_workers: processes for the dataset generation (default: all cores).
        video_frames: frames of the generated video (0 skips the video step).
        val_images: annotated val images to write.
        export: export to ONNX and run the video detection.
        progress: progress bars while training and evaluating.

    Returns:
        A :class:`DemoSummary` (also written to ``out_dir/summary.json``).
    """
    import torch

    from ssdlite._paths import REPO_ROOT
    from ssdlite.config import load_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    threads = threads or cores
    processes = processes or (2 if threads >= 2 else 1)
    if processes < 1 or processes > threads:
        raise ValueError(f"processes must be between 1 and threads={threads}, got {processes}")
    torch.set_num_threads(threads)
    summary = DemoSummary(out_dir=str(out))
    t_all = time.perf_counter()

    # 1. data
    t0 = time.perf_counter()
    data = out / "data"
    if _dataset_ready(data, num_train, num_val, seed):
        print(f"demo: reusing the dataset in {data} ({num_train} train + {num_val} val images)", flush=True)
    else:
        from ssdlite.data.synthetic import make_shapes_dataset

        print(f"demo: writing {num_train} train + {num_val} val synthetic images to {data} ...", flush=True)
        make_shapes_dataset(data, num_train, num_val, seed=seed, workers=data_workers if data_workers is not None else cores)
    summary.seconds["data"] = time.perf_counter() - t0

    # 2. train (the trainer evaluates on the val split when the budget runs out)
    t0 = time.perf_counter()
    config = Path(config) if config is not None else REPO_ROOT / DEFAULT_CONFIG
    sets = [
        f"data.train.images={data / 'train'}",
        f"data.train.annotations={data / 'annotations' / 'instances_train.json'}",
        f"data.val.images={data / 'val'}",
        f"data.val.annotations={data / 'annotations' / 'instances_val.json'}",
        *overrides,
    ]
    if time_budget_s is not None:
        sets.append(f"train.time_budget_s={time_budget_s}")
    cfg = load_config(config, sets)
    print(f"demo: training {config.name} ({cfg.model.backbone.name} x{cfg.model.backbone.width_mult}, input "
          f"{cfg.model.input_size[0]}x{cfg.model.input_size[1]}) for {cfg.train.time_budget_s:.0f} s "
          f"on {threads} threads" + (f" ({processes} processes, DDP)" if processes > 1 else "") + " ...", flush=True)
    summary.train_steps, summary.train_images_seen, result = train_demo_model(cfg, out, processes, max(1, threads // processes), progress)
    torch.set_num_threads(threads)
    # the final weights (the learning rate has annealed to 0), not best.pt: a pick by val AP would
    # make the val numbers optimistic
    summary.checkpoint = str(out / "last.pt")
    summary.seconds["train"] = time.perf_counter() - t0

    # 3. evaluate (reuse the trainer's final evaluation of these weights when it ran in this process)
    t0 = time.perf_counter()
    from ssdlite.deploy.detector import Detector

    detector = Detector.from_checkpoint(summary.checkpoint, threads=threads)
    if result is None:
        from ssdlite.eval.predict import evaluate_detector

        result = evaluate_detector(detector, cfg.data.val.images, cfg.data.val.annotations, batch_size=16, progress=progress)
    from ssdlite.eval.coco import format_per_class, format_summary, plot_pr_curves

    (out / "metrics.json").write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    plot_pr_curves(result, out / "pr_curves.png")
    print(format_summary(result))
    print(format_per_class(result))
    summary.stats = {k: float(v) for k, v in result.stats_dict.items()}
    summary.per_class = {k: float(v) for k, v in result.per_class.items()}
    draw_val_images(detector, cfg.data.val.images, cfg.data.val.annotations, out / "val_images", count=val_images)
    summary.seconds["eval"] = time.perf_counter() - t0

    # 4. ONNX export and detection on a generated video, in its own process (its own thread pools)
    if export:
        from ssdlite.deploy.export import export_onnx

        t0 = time.perf_counter()
        summary.onnx = str(export_onnx(summary.checkpoint, None, out / "model.onnx"))
        summary.seconds["export"] = time.perf_counter() - t0
        if video_frames > 0:
            t0 = time.perf_counter()
            from ssdlite.data.synthetic import SHAPES

            shapes = [c for c in detector.class_names if c in SHAPES] or None
            video = make_shapes_video(out / "shapes.mp4", frames=video_frames, size=cfg.model.input_size[1], seed=seed + 1,
                                      classes=shapes)
            summary.video = str(video)
            summary.detections_video = str(out / "detections.mp4")
            summary.fps, output = _detect_video(Path(summary.onnx), video, out / "detections.mp4", out / "detections.jsonl", threads)
            print(output)
            summary.seconds["video"] = time.perf_counter() - t0
    summary.seconds["total"] = time.perf_counter() - t_all
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2), encoding="utf-8")
    print(summary.format(), flush=True)
    return summary
