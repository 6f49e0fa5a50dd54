"""Where annotated frames and detections go: a video file (:class:`VideoSink`), a folder of
images (:class:`ImageDirSink`), JSON lines (:class:`JsonLinesWriter`), and the default output
path of a source (:func:`default_save_path`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ssdlite.apps.sources import VIDEO_SUFFIXES, Frame, _parse

__all__ = ["VideoSink", "ImageDirSink", "open_sink", "JsonLinesWriter", "default_save_path"]


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
