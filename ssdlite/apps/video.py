"""Frames in, drawn detections out: cameras, video files, streams, image folders.

The sources (:func:`~ssdlite.apps.sources.open_source`: cameras, streams, video files, image
folders; live ones keep only the newest frame) live in :mod:`ssdlite.apps.sources`, the drawing in
:mod:`ssdlite.apps.draw` and the video, image-folder and JSON-lines writers in
:mod:`ssdlite.apps.sinks`.

:func:`run_detection` is the loop behind ``tools/detect.py``: detect, filter classes, draw
boxes with class name and score in a stable colour per class plus an FPS / latency
overlay, write a video or a folder of images and JSON lines, show a window. A bad frame
(decode failure, wrong shape or dtype, a detector error on it) is logged and skipped;
``q``, Ctrl-C and the end of the stream stop cleanly and release the source and writers.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ssdlite.apps.draw import draw_detections, draw_overlay
from ssdlite.apps.sinks import ImageDirSink, JsonLinesWriter, open_sink
from ssdlite.apps.sources import Frame, ImageSource, _stderr

__all__ = [
    "display_available",
    "parse_classes",
    "RunStats",
    "run_detection",
]


def display_available() -> bool:
    """Whether a window can be opened: on Linux a DISPLAY or WAYLAND_DISPLAY must be set."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True



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



class _Outputs:
    """Where processed frames go: JSON lines, a video or image folder (:func:`open_sink`) and a window.

    With ``show`` and no display it says so and saves to ``default_save`` (when ``save`` is None);
    a window that fails on its first frame falls back to ``default_save`` the same way.
    """

    def __init__(self, source: Any, save: str | Path | None, json_path: str | Path | None, show: bool,
                 default_save: str | Path | None, overlay: bool, window: str, log: Callable[[str], None],
                 stats: RunStats) -> None:
        self.source, self.default_save, self.overlay, self.log, self.stats = source, default_save, overlay, log, stats
        self.display: _Display | None = None
        if show:
            if display_available():
                self.display = _Display(log, window)
            else:
                target = save or default_save
                log("--show: no display (DISPLAY / WAYLAND_DISPLAY unset)" + (f"; saving to {target} instead" if target else "") + " and continuing")
                save = target
        self.sink = open_sink(save, getattr(source, "fps", 0.0) or (5.0 if isinstance(source, ImageSource) else 30.0)) if save else None
        self.writer = JsonLinesWriter(json_path) if json_path else None
        stats.saved = str(save) if save else None
        stats.json = str(json_path) if json_path else None

    def emit(self, frame: Frame, dets: Any, fps: float, latency_ms: float) -> bool:
        """Write, draw and show one processed frame; True when the user pressed q (or Esc)."""
        if self.writer is not None:
            self.writer.write(frame, dets)
        display = self.display
        if self.sink is None and not (display is not None and display.enabled):
            return False
        image = draw_detections(frame.image, dets)
        if self.overlay:
            draw_overlay(image, fps, latency_ms)
        if display is not None and display.show(image):
            return True
        if display is not None and not display.enabled and self.sink is None and self.default_save:
            self.sink = open_sink(self.default_save, getattr(self.source, "fps", 0.0) or 30.0)
            self.stats.saved = str(self.default_save)
            self.log(f"--show: saving to {self.default_save} instead")
        if self.sink is not None:
            if isinstance(self.sink, ImageDirSink):
                self.sink.write(image, name=frame.name, index=frame.index)
            else:
                self.sink.write(image)
        return False

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
        if self.writer is not None:
            self.writer.close()
        if self.display is not None:
            self.display.close()


def _detect_frame(detector: Callable[..., list[Any]], image: Any, takes_bgr: bool) -> tuple[Any, str | None, float, float]:
    """``(detections, None, t0, t1)`` of one frame (detector start and end times), or ``(None,
    why the frame is unusable, 0, 0)``."""
    problem = _check_frame(image)
    if problem is not None:
        return None, problem, 0.0, 0.0
    t0 = time.perf_counter()
    try:
        if takes_bgr:  # the detector swaps channels after resizing: no full-frame conversion
            dets = detector([image], color="bgr")[0]
        else:
            dets = detector([cv2.cvtColor(image, cv2.COLOR_BGR2RGB)])[0]
    except Exception as e:  # noqa: BLE001 - any back end's error (e.g. onnxruntime's): skip the frame
        return None, f"made the detector fail: {e}", 0.0, 0.0
    return dets, None, t0, time.perf_counter()


def _keep_classes(dets: Any, classes: set[int] | None) -> Any:
    """The detections whose label is in ``classes`` (all of them when ``classes`` is None)."""
    if classes is None or not len(dets):
        return dets
    keep = np.isin(dets.labels, list(classes))
    return type(dets)(dets.boxes[keep], dets.scores[keep], dets.labels[keep], [n for n, k in zip(dets.names, keep) if k])


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
        source: from :func:`~ssdlite.apps.sources.open_source` (iterable of
            :class:`~ssdlite.apps.sources.Frame`, ``close()``, ``fps``, ``dropped``).
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
    outputs = _Outputs(source, save, json_path, show, default_save, overlay, window, log, stats)
    takes_bgr = _accepts_color(detector)
    start = None
    fps_ema = 0.0
    last_done = None
    try:
        for frame in source:
            if start is None:
                start = time.perf_counter()
            dets, problem, t0, t1 = _detect_frame(detector, frame.image, takes_bgr)
            if problem is not None:
                stats.bad_frames += 1
                if stats.bad_frames <= 20:
                    log(f"frame {frame.index}{f' ({frame.name})' if frame.name else ''} {problem}; skipped")
                continue
            dets = _keep_classes(dets, classes)
            stats.frames += 1
            stats.infer_ms.append((t1 - t0) * 1000)
            stats.latency_ms.append((t1 - frame.captured) * 1000)
            if last_done is not None and t1 > last_done:
                inst = 1.0 / (t1 - last_done)
                fps_ema = inst if fps_ema == 0 else 0.9 * fps_ema + 0.1 * inst
            last_done = t1
            if outputs.emit(frame, dets, fps_ema, stats.latency_ms[-1]):
                stats.end_reason = "stopped by the user (q)"
                break
            if max_frames is not None and stats.frames >= max_frames:
                stats.end_reason = f"reached --max-frames {max_frames}"
                break
        else:
            stats.end_reason = getattr(source, "end_reason", None) or "end of stream"
    except KeyboardInterrupt:
        stats.end_reason = "interrupted (Ctrl-C)"
    finally:
        source.close()
        outputs.close()
    stats.seconds = (time.perf_counter() - start) if start is not None else 0.0
    stats.fps = stats.frames / stats.seconds if stats.seconds > 0 else 0.0
    stats.dropped = int(getattr(source, "dropped", 0))
    return stats
