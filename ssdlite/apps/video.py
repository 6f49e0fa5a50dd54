"""Frames in, drawn detections out: cameras, video files, streams, image folders.

The sources (:func:`open_source`: cameras, streams, video files, image folders; live ones keep
only the newest frame) live in :mod:`ssdlite.apps.sources` and are re-exported here.

:func:`run_detection` is the loop behind ``tools/detect.py``: detect, filter classes, draw
boxes with class name and score in a stable colour per class plus an FPS / latency
overlay, write a video or a folder of images and JSON lines, show a window. A bad frame
(decode failure, wrong shape or dtype, a detector error on it) is logged and skipped;
``q``, Ctrl-C and the end of the stream stop cleanly and release the source and writers.
"""

from __future__ import annotations

import colorsys
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ssdlite.apps import sources
from ssdlite.apps.sources import (  # noqa: F401 - re-exported: the source names stay importable from here
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Frame,
    ImageSource,
    LatestFrameSource,
    SequentialSource,
    SourceError,
    _parse,
    _stderr,
    open_source,
)

__all__ = list(sources.__all__) + [
    "class_color",
    "draw_detections",
    "draw_overlay",
    "VideoSink",
    "ImageDirSink",
    "open_sink",
    "JsonLinesWriter",
    "display_available",
    "default_save_path",
    "parse_classes",
    "RunStats",
    "run_detection",
]


# ----------------------------------------------------------------------------- drawing


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour for a class index (golden-ratio hue steps)."""
    hue = (int(label) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(image: np.ndarray, detections: Any, thickness: int = 2) -> np.ndarray:
    """Draw boxes with ``name score`` labels on a BGR image, in place; returns it.

    ``detections``: boxes (N, 4) xyxy pixels of ``image``, scores (N,), labels (N,), names.
    """
    h, w = image.shape[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(h, w) / 900)
    for box, score, label, name in zip(detections.boxes, detections.scores, detections.labels, detections.names):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        color = class_color(int(label))
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        text = f"{name} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(text, font, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(image, (x1, ty - th - base), (x1 + tw + 2, ty + 1), color, -1)
        cv2.putText(image, text, (x1 + 1, ty - base + 1), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def draw_overlay(image: np.ndarray, fps: float, latency_ms: float, extra: str = "") -> np.ndarray:
    """Write ``FPS`` and latency in the top-left corner of a BGR image, in place."""
    text = f"{fps:5.1f} FPS  {latency_ms:5.1f} ms" + (f"  {extra}" if extra else "")
    scale = max(0.5, image.shape[0] / 720)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (0, 0), (tw + 10, th + base + 10), (0, 0, 0), -1)
    cv2.putText(image, text, (5, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


# ----------------------------------------------------------------------------- sinks


class VideoSink:
    """Writes BGR frames to a video file (``mp4v`` for .mp4/.mov/.m4v, ``MJPG`` for .avi, ``XVID`` for .mkv).

    Opened on the first frame (its size fixes the video's); later frames of another size are resized.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 30.0
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            suffix = self.path.suffix.lower()
            fourcc = {".avi": "MJPG", ".mkv": "XVID"}.get(suffix, "mp4v")
            self.size = (image.shape[1], image.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise OSError(f"cannot write video {self.path} (codec {fourcc}); try a .avi name or --save DIR for images")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


class ImageDirSink:
    """Writes each frame as an image into a folder: the source's file name, else ``frame_000123.jpg``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.frames = 0

    def write(self, image: np.ndarray, name: str | None = None, index: int | None = None) -> None:
        target = self.path / (name or f"frame_{self.frames if index is None else index:06d}.jpg")
        if not cv2.imwrite(str(target), image):
            raise OSError(f"cannot write image {target}")
        self.frames += 1

    def close(self) -> None:
        pass


def open_sink(path: str | Path, fps: float) -> VideoSink | ImageDirSink:
    """A video sink for a video file name (.mp4, .avi, ...), else an image folder."""
    path = Path(path)
    return VideoSink(path, fps) if path.suffix.lower() in VIDEO_SUFFIXES else ImageDirSink(path)


class JsonLinesWriter:
    """One JSON object per processed frame: ``{"frame", "time", "detections": [{box, score, label, name}]}``.

    Each line is flushed, so the file is valid up to the last frame whatever ends the run.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w", encoding="utf-8")
        self.lines = 0

    def write(self, frame: Frame, detections: Any) -> None:
        row: dict[str, Any] = {"frame": frame.index, "time": round(frame.time, 6), "detections": detections.to_list()}
        if frame.name:
            row["file"] = frame.name
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        self.lines += 1

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


# ----------------------------------------------------------------------------- the loop


def display_available() -> bool:
    """Whether a window can be opened: on Linux a DISPLAY or WAYLAND_DISPLAY must be set."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def default_save_path(spec: str, root: str | Path = "runs/detect") -> Path:
    """Where output goes when it must be saved but no --save was given: ``runs/detect/<name>.mp4`` (a folder for images)."""
    kind, target = _parse(spec)
    if kind == "images":
        return Path(root) / (Path(target).stem or "images")
    if kind == "camera":
        return Path(root) / f"camera{str(target).replace('/dev/video', '')}.mp4"
    if kind == "stream":
        return Path(root) / "stream.mp4"
    return Path(root) / f"{Path(target).stem}.mp4"


def parse_classes(spec: str | Sequence[str] | None, class_names: Sequence[str]) -> set[int] | None:
    """``"person,car"`` (names or 0-based indices) -> label set; None keeps every class."""
    if spec is None or spec == "" or spec == []:
        return None
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    lookup = {n.lower(): i for i, n in enumerate(class_names)}
    labels = set()
    for item in items:
        if item.isdigit() and int(item) < len(class_names):
            labels.add(int(item))
        elif item.lower() in lookup:
            labels.add(lookup[item.lower()])
        else:
            shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
            raise ValueError(f"--classes: unknown class {item!r}; the model's classes are: {shown}")
    return labels


@dataclass
class RunStats:
    """What a :func:`run_detection` did."""

    frames: int = 0  # processed
    bad_frames: int = 0  # logged and skipped
    dropped: int = 0  # by the capture thread (live / realtime sources)
    seconds: float = 0.0  # wall time from the first frame to the end
    fps: float = 0.0  # processed frames per second
    infer_ms: list[float] = field(default_factory=list)  # detector time per processed frame
    latency_ms: list[float] = field(default_factory=list)  # capture -> result per processed frame
    end_reason: str = ""
    saved: str | None = None
    json: str | None = None

    def summary(self) -> str:
        med = float(np.median(self.infer_ms)) if self.infer_ms else 0.0
        lat = float(np.median(self.latency_ms)) if self.latency_ms else 0.0
        parts = [
            f"{self.frames} frames in {self.seconds:.2f} s: {self.fps:.1f} FPS",
            f"detector median {med:.1f} ms, capture-to-result median {lat:.1f} ms",
        ]
        if self.dropped:
            parts.append(f"{self.dropped} frames dropped (inference slower than the source)")
        if self.bad_frames:
            parts.append(f"{self.bad_frames} bad frames skipped")
        if self.saved:
            parts.append(f"saved {self.saved}")
        if self.json:
            parts.append(f"detections {self.json}")
        return f"{self.end_reason}; " + "; ".join(parts)


def _accepts_color(detector: Any) -> bool:
    """Whether ``detector(images, color="bgr")`` is supported (:class:`ssdlite.Detector` is)."""
    import inspect

    try:
        return "color" in inspect.signature(detector).parameters
    except (TypeError, ValueError):
        return False


def _check_frame(image: Any) -> str | None:
    """Why a frame cannot be used, or None."""
    if image is None:
        return "could not be decoded"
    if not isinstance(image, np.ndarray):
        return f"is a {type(image).__name__}, not an image"
    if image.dtype != np.uint8:
        return f"has dtype {image.dtype}, expected uint8"
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        return f"has shape {image.shape}, expected (H, W, 3)"
    return None


class _Display:
    """cv2.imshow that turns itself off, saying why once, when there is no GUI or display."""

    def __init__(self, log: Callable[[str], None], window: str) -> None:
        self.log, self.window, self.enabled, self.opened = log, window, True, False

    def show(self, image: np.ndarray) -> bool:
        """Show a frame; True when the user pressed q (or Esc)."""
        if not self.enabled:
            return False
        try:
            cv2.imshow(self.window, image)
            self.opened = True
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as e:
            self.enabled = False
            first = str(e).strip().splitlines()[-1] if str(e).strip() else "cv2.imshow failed"
            self.log(f"--show: cannot open a window ({first}); continuing without display")
            return False
        return key in (ord("q"), 27)

    def close(self) -> None:
        if self.opened:
            try:
                cv2.destroyWindow(self.window)
                cv2.waitKey(1)
            except cv2.error:
                pass


def run_detection(
    detector: Callable[[list[np.ndarray]], list[Any]],
    source: Any,
    *,
    class_names: Sequence[str] = (),
    classes: set[int] | None = None,
    save: str | Path | None = None,
    json_path: str | Path | None = None,
    show: bool = False,
    max_frames: int | None = None,
    default_save: str | Path | None = None,
    overlay: bool = True,
    window: str = "ssdlite",
    log: Callable[[str], None] = _stderr,
) -> RunStats:
    """Run ``detector`` on every frame a source yields (the newest one for live sources).

    Args:
        detector: ``detector([rgb (H, W, 3) uint8]) -> [Detections]`` (e.g. :class:`ssdlite.Detector`;
            when it takes ``color="bgr"``, OpenCV's BGR frames are passed as they are).
        source: from :func:`open_source` (iterable of :class:`Frame`, ``close()``, ``fps``, ``dropped``).
        classes: labels to keep (None: all).
        save: a video file (.mp4, .avi, ...) or a folder for annotated frames.
        json_path: JSON lines, one per processed frame.
        show: display a window (q or Esc quits). Without a display it says so once and, when
            ``save`` is None, saves to ``default_save`` instead.
        max_frames: stop after this many processed frames.

    Returns:
        :class:`RunStats`; the source, writers and window are released whatever ends the run.
    """
    stats = RunStats()
    display: _Display | None = None
    if show:
        if display_available():
            display = _Display(log, window)
        else:
            target = save or default_save
            log("--show: no display (DISPLAY / WAYLAND_DISPLAY unset)" + (f"; saving to {target} instead" if target else "") + " and continuing")
            save = target
    sink = open_sink(save, getattr(source, "fps", 0.0) or (5.0 if isinstance(source, ImageSource) else 30.0)) if save else None
    writer = JsonLinesWriter(json_path) if json_path else None
    stats.saved = str(save) if save else None
    stats.json = str(json_path) if json_path else None
    takes_bgr = _accepts_color(detector)
    start = None
    fps_ema = 0.0
    last_done = None
    bad_logged = 0
    try:
        for frame in source:
            if start is None:
                start = time.perf_counter()
            problem = _check_frame(frame.image)
            dets = None
            if problem is None:
                t0 = time.perf_counter()
                try:
                    if takes_bgr:  # the detector swaps channels after resizing: no full-frame conversion
                        dets = detector([frame.image], color="bgr")[0]
                    else:
                        dets = detector([cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)])[0]
                except Exception as e:  # noqa: BLE001 - any back end's error (e.g. onnxruntime's): skip the frame
                    problem = f"made the detector fail: {e}"
                t1 = time.perf_counter()
            if problem is not None:
                stats.bad_frames += 1
                if bad_logged < 20:
                    bad_logged += 1
                    log(f"frame {frame.index}{f' ({frame.name})' if frame.name else ''} {problem}; skipped")
                continue
            if classes is not None and len(dets):
                keep = np.isin(dets.labels, list(classes))
                dets = type(dets)(dets.boxes[keep], dets.scores[keep], dets.labels[keep], [n for n, k in zip(dets.names, keep) if k])
            stats.frames += 1
            stats.infer_ms.append((t1 - t0) * 1000)
            stats.latency_ms.append((t1 - frame.captured) * 1000)
            if last_done is not None and t1 > last_done:
                inst = 1.0 / (t1 - last_done)
                fps_ema = inst if fps_ema == 0 else 0.9 * fps_ema + 0.1 * inst
            last_done = t1
            if writer is not None:
                writer.write(frame, dets)
            if sink is not None or (display is not None and display.enabled):
                image = draw_detections(frame.image, dets)
                if overlay:
                    draw_overlay(image, fps_ema, stats.latency_ms[-1])
                if display is not None and display.show(image):
                    stats.end_reason = "stopped by the user (q)"
                    break
                if display is not None and not display.enabled and sink is None and default_save:
                    sink, save = open_sink(default_save, getattr(source, "fps", 0.0) or 30.0), default_save
                    stats.saved = str(save)
                    log(f"--show: saving to {save} instead")
                if sink is not None:
                    if isinstance(sink, ImageDirSink):
                        sink.write(image, name=frame.name, index=frame.index)
                    else:
                        sink.write(image)
            if max_frames is not None and stats.frames >= max_frames:
                stats.end_reason = f"reached --max-frames {max_frames}"
                break
        else:
            stats.end_reason = getattr(source, "end_reason", None) or "end of stream"
    except KeyboardInterrupt:
        stats.end_reason = "interrupted (Ctrl-C)"
    finally:
        source.close()
        if sink is not None:
            sink.close()
        if writer is not None:
            writer.close()
        if display is not None:
            display.close()
    stats.seconds = (time.perf_counter() - start) if start is not None else 0.0
    stats.fps = stats.frames / stats.seconds if stats.seconds > 0 else 0.0
    stats.dropped = int(getattr(source, "dropped", 0))
    return stats
