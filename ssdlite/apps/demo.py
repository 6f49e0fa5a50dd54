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
   the processes are started by :func:`ssdlite.apps.launch.train_demo_model`;
3. evaluates on the val split (separate generated images) with the COCO metrics and writes
   ``OUT/metrics.json`` (the 12 stats and per-class APs), ``OUT/pr_curves.png`` and annotated
   val images ``OUT/val_images/*.jpg`` (detections in class colours, ground truth in thin white);
4. exports the model to ``OUT/model.onnx`` and runs ``ssdlite detect`` (``tools/detect.py``) with
   ONNX Runtime on a generated video of moving shapes
   (:func:`ssdlite.apps.demo_video.make_shapes_video`), writing
   ``OUT/detections.mp4`` and ``OUT/detections.jsonl`` and printing the FPS it reached.

The val split is generated from the same seed but its own random streams (image ``k`` of split
``val`` never equals any training image), so the metrics are honest held-out numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2

from ssdlite.apps.demo_video import detect_video, make_shapes_video
from ssdlite.apps.launch import train_demo_model

__all__ = ["DemoSummary", "run_demo", "draw_val_images", "DEFAULT_CONFIG"]

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
    data = out / "data"
    with _stage(summary, "data"):
        _prepare_data(data, num_train, num_val, seed, data_workers if data_workers is not None else cores)
    with _stage(summary, "train"):  # the trainer evaluates on the val split when the budget runs out
        cfg, config_path = _demo_config(config, data, overrides, time_budget_s)
        result = _train(cfg, config_path, out, threads, processes, progress, summary)
    with _stage(summary, "eval"):
        detector = _evaluate(cfg, out, threads, result, val_images, progress, summary)
    if export:
        _export_and_detect(detector, cfg, out, video_frames, seed, threads, summary)
    summary.seconds["total"] = time.perf_counter() - t_all
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2), encoding="utf-8")
    print(summary.format(), flush=True)
    return summary


@contextlib.contextmanager
def _stage(summary: DemoSummary, name: str) -> Iterator[None]:
    """Time the block into ``summary.seconds[name]`` (wall seconds; not recorded when it raises)."""
    t0 = time.perf_counter()
    yield
    summary.seconds[name] = time.perf_counter() - t0


# ----------------------------------------------------------------------------- 1. data


def _prepare_data(data: Path, num_train: int, num_val: int, seed: int, workers: int) -> None:
    """Write the synthetic shapes dataset to ``data``, unless a previous run wrote the same one there."""
    if _dataset_ready(data, num_train, num_val, seed):
        print(f"demo: reusing the dataset in {data} ({num_train} train + {num_val} val images)", flush=True)
        return
    from ssdlite.data.synthetic import make_shapes_dataset

    print(f"demo: writing {num_train} train + {num_val} val synthetic images to {data} ...", flush=True)
    make_shapes_dataset(data, num_train, num_val, seed=seed, workers=workers)


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


# ----------------------------------------------------------------------------- 2. train


def _demo_config(config: str | os.PathLike | None, data: Path, overrides: Sequence[str],
                 time_budget_s: float | None) -> tuple[Any, Path]:
    """The demo config (default: ``configs/shapes_demo.yaml``) on the dataset in ``data``, and its path."""
    from ssdlite._paths import REPO_ROOT
    from ssdlite.config import load_config

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
    return load_config(config, sets), config


def _train(cfg: Any, config: Path, out: Path, threads: int, processes: int, progress: bool, summary: DemoSummary) -> Any:
    """Train for the config's time budget; returns the final evaluation when it ran in this process, else None."""
    import torch

    print(f"demo: training {config.name} ({cfg.model.backbone.name} x{cfg.model.backbone.width_mult}, input "
          f"{cfg.model.input_size[0]}x{cfg.model.input_size[1]}) for {cfg.train.time_budget_s:.0f} s "
          f"on {threads} threads" + (f" ({processes} processes, DDP)" if processes > 1 else "") + " ...", flush=True)
    summary.train_steps, summary.train_images_seen, result = train_demo_model(cfg, out, processes, max(1, threads // processes), progress)
    torch.set_num_threads(threads)
    # the final weights (the learning rate has annealed to 0), not best.pt: a pick by val AP would
    # make the val numbers optimistic
    summary.checkpoint = str(out / "last.pt")
    return result


# ----------------------------------------------------------------------------- 3. evaluate


def _evaluate(cfg: Any, out: Path, threads: int, result: Any, val_images: int, progress: bool, summary: DemoSummary) -> Any:
    """Score the final weights on the val split (reusing the trainer's ``result`` when there is one),
    write metrics.json, pr_curves.png and annotated val images; returns the loaded Detector."""
    from ssdlite.deploy.detector import Detector
    from ssdlite.eval.plots import plot_pr_curves
    from ssdlite.eval.report import format_per_class, format_summary

    detector = Detector.from_checkpoint(summary.checkpoint, threads=threads)
    if result is None:
        from ssdlite.eval.predict import evaluate_detector

        result = evaluate_detector(detector, cfg.data.val.images, cfg.data.val.annotations, batch_size=16, progress=progress)
    (out / "metrics.json").write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    plot_pr_curves(result, out / "pr_curves.png")
    print(format_summary(result))
    print(format_per_class(result))
    summary.stats = {k: float(v) for k, v in result.stats_dict.items()}
    summary.per_class = {k: float(v) for k, v in result.per_class.items()}
    draw_val_images(detector, cfg.data.val.images, cfg.data.val.annotations, out / "val_images", count=val_images)
    return detector


def draw_val_images(detector: Any, images_dir: str | os.PathLike, annotations: str | os.PathLike, out_dir: str | os.PathLike,
                    count: int = 12, score_thresh: float = 0.3) -> list[Path]:
    """Draw ``detector``'s detections (score >= ``score_thresh``, class name and score in a stable colour
    per class) and the ground truth (thin white boxes) on the first ``count`` images of a COCO json;
    writes ``out_dir/<file name>`` JPEGs and returns their paths."""
    from ssdlite.data.images import load_image
    from ssdlite.apps.draw import draw_detections

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


# ----------------------------------------------------------------------------- 4. ONNX and video


def _export_and_detect(detector: Any, cfg: Any, out: Path, video_frames: int, seed: int, threads: int,
                       summary: DemoSummary) -> None:
    """Export to ONNX, then (``video_frames > 0``) run ``ssdlite detect`` with ONNX Runtime on a
    generated video, in its own process (its own thread pools)."""
    from ssdlite.data.synthetic import SHAPES
    from ssdlite.deploy.export import export_onnx

    with _stage(summary, "export"):
        summary.onnx = str(export_onnx(summary.checkpoint, None, out / "model.onnx"))
    if video_frames <= 0:
        return
    with _stage(summary, "video"):
        shapes = [c for c in detector.class_names if c in SHAPES] or None
        video = make_shapes_video(out / "shapes.mp4", frames=video_frames, size=cfg.model.input_size[1], seed=seed + 1,
                                  classes=shapes)
        summary.video = str(video)
        summary.detections_video = str(out / "detections.mp4")
        summary.fps, output = detect_video(Path(summary.onnx), video, out / "detections.mp4", out / "detections.jsonl", threads)
        print(output)
