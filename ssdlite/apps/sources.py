"""Frame sources: cameras, video files, streams, image folders (:func:`open_source`).

``"0"`` or ``"/dev/video1"`` (camera), ``"rtsp://..."`` / ``"http://..."`` (stream), a video file,
a folder of images or one image.

* Live sources (cameras, streams) and files opened with ``realtime=True`` are read by a
  capture thread (:class:`LatestFrameSource`) that keeps only the newest frame: when
  inference is slower than the source, frames are dropped, never queued, so the latency
  stays bounded by one inference. ``realtime`` files are paced at their own frame rate.
  A live source that stops delivering frames is retried (and reopened) for
  ``stall_timeout`` seconds, then the run ends with a message.
* Other files are read sequentially, every frame (:class:`SequentialSource`).

:func:`ssdlite.apps.video.run_detection` runs a detector on these frames; :mod:`ssdlite.apps.draw`
and :mod:`ssdlite.apps.sinks` draw and write what it finds.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2

__all__ = [
    "Frame",
    "SourceError",
    "open_source",
    "SequentialSource",
    "LatestFrameSource",
    "ImageSource",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v")
LIST_DEVICES_HINT = "list cameras with `v4l2-ctl --list-devices` or `ls /dev/video*`"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SourceError(ValueError):
    """A source cannot be opened; the message names it and says what to check."""


@dataclass
class Frame:
    """One frame of a source.

    image: (H, W, 3) uint8 BGR as OpenCV decodes it (may be None or malformed for a bad frame;
    the loop checks). index: frame number in the source (live sources count captured frames,
    dropped ones included). time: seconds since the start of the source (file position for
    files). captured: ``time.perf_counter()`` when it was read (latency reference). name:
    file name for image sources.
    """

    index: int
    image: Any
    time: float
    captured: float
    name: str | None = None


# ----------------------------------------------------------------------------- sources


def _parse(spec: str) -> tuple[str, Any]:
    """(kind, target) of a source string: camera / stream / images / video."""
    s = str(spec).strip()
    if s.isdigit():
        return "camera", int(s)
    if s.startswith("/dev/video"):
        return "camera", s
    if "://" in s:
        return "stream", s
    p = Path(s)
    if p.is_dir():
        return "images", p
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return "images", p
    return "video", p


def _open_capture(kind: str, target: Any, spec: str) -> cv2.VideoCapture:
    if kind == "video" and not Path(target).exists():
        raise SourceError(f"source {spec} does not exist (expected a camera index like 0, /dev/videoN, a URL, a video file, an image or a folder)")
    if kind == "camera" and isinstance(target, str) and not Path(target).exists():
        raise SourceError(f"camera {spec} does not exist; {LIST_DEVICES_HINT}")
    cap = cv2.VideoCapture(target if kind == "camera" and isinstance(target, int) else str(target))
    if not cap.isOpened():
        cap.release()
        if kind == "camera":
            raise SourceError(f"cannot open camera {spec} (missing, busy or no permission); {LIST_DEVICES_HINT}")
        if kind == "stream":
            raise SourceError(f"cannot open stream {spec}: check the URL, the network and that the server is up")
        raise SourceError(f"cannot open video {spec}: not a file OpenCV can decode")
    return cap


class SequentialSource:
    """Every frame of a video file, read in the caller's thread.

    ``capture``: an opened ``cv2.VideoCapture`` (or an object with ``read()``, ``get()``,
    ``release()``). A read failure before the end announced by the container is retried
    ``max_bad`` times (the frame is skipped) before the stream is taken as ended.
    """

    live = False

    def __init__(self, capture: Any, name: str = "video", max_bad: int = 25, log: Callable[[str], None] = _stderr) -> None:
        self.capture = capture
        self.name = name
        self.max_bad = max_bad
        self.log = log
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 0.0
        self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.dropped = 0
        self.end_reason = "end of stream"

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        bad = 0
        while True:
            ok, image = self.capture.read()
            now = time.perf_counter()
            if not ok:
                if self.frame_count and index < self.frame_count - 1 and bad < self.max_bad:
                    bad += 1
                    self.log(f"{self.name}: frame {index} could not be decoded; skipped")
                    index += 1
                    continue
                return
            bad = 0
            yield Frame(index, image, index / self.fps if self.fps else 0.0, now)
            index += 1

    def close(self) -> None:
        self.capture.release()


class ImageSource:
    """Images of a folder (sorted by name) or one image file; an unreadable file is a bad frame."""

    live = False
    fps = 0.0

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            self.paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.paths:
                raise SourceError(f"folder {path} has no images ({', '.join(IMAGE_SUFFIXES)})")
        elif path.is_file():
            self.paths = [path]
        else:
            raise SourceError(f"image {path} does not exist")
        self.name = str(path)
        self.frame_count = len(self.paths)
        self.dropped = 0
        self.end_reason = "end of images"

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self.paths):
            image = cv2.imread(str(p), cv2.IMREAD_COLOR)  # None when it cannot be decoded
            yield Frame(i, image, 0.0, time.perf_counter(), name=p.name)

    def close(self) -> None:
        pass


class LatestFrameSource:
    """A capture thread that keeps only the newest frame.

    Args:
        open_capture: returns an opened capture (called again to reopen a stalled camera).
        name: for messages.
        live: a camera or stream (stalls are retried); False for a file paced at ``pace_fps``.
        pace_fps: read at most this many frames per second (a file played in real time).
        stall_timeout: seconds without a frame before a live source is given up.
        reopen_after: seconds of failed reads before the capture is reopened.

    Iterating yields the newest frame not yet seen, waiting for one; frames captured while
    the consumer was busy are counted in ``dropped``. Iteration ends when the source ends
    (``end_reason`` says why) or after :meth:`close`.
    """

    def __init__(
        self,
        open_capture: Callable[[], Any],
        name: str = "camera",
        *,
        live: bool = True,
        pace_fps: float | None = None,
        stall_timeout: float = 5.0,
        reopen_after: float = 1.0,
        log: Callable[[str], None] = _stderr,
    ) -> None:
        self.open_capture = open_capture
        self.name = name
        self.live = live
        self.pace_fps = pace_fps if pace_fps and pace_fps > 0 else None
        self.stall_timeout = stall_timeout
        self.reopen_after = reopen_after
        self.log = log
        self.capture = open_capture()
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = self.pace_fps or (fps if 0 < fps < 1000 else 0.0)
        self.frame_count = 0 if live else int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.captured = 0  # frames read from the capture
        self.dropped = 0  # frames replaced before the consumer took them
        self.end_reason: str | None = None
        self._frame: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"capture:{name}", daemon=True)
        self._start = time.perf_counter()
        self._last_frame_at = self._start
        self._thread.start()

    # -- capture thread
    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._last_frame_at = frame.captured
            self._cond.notify_all()

    def _finish(self, reason: str) -> None:
        with self._cond:
            self.end_reason = reason
            self._cond.notify_all()

    def _loop(self) -> None:
        index = 0
        failing_since: float | None = None
        reopened_at = 0.0
        try:
            while not self._stop.is_set():
                if self.pace_fps:  # a file in real time: frame i is due at start + i / fps
                    delay = self._start + index / self.pace_fps - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                try:
                    ok, image = self.capture.read()
                except Exception as e:  # a backend error is a failed read
                    ok, image = False, None
                    self.log(f"{self.name}: read failed: {e}")
                now = time.perf_counter()
                if ok:
                    failing_since = None
                    t = index / self.fps if (not self.live and self.fps) else now - self._start
                    self._publish(Frame(index, image, t, now))
                    self.captured += 1
                    index += 1
                    continue
                if not self.live:
                    self._finish("end of stream")
                    return
                failing_since = failing_since or now
                stalled = now - failing_since
                if stalled >= self.stall_timeout:
                    self._finish(
                        f"{self.name} stopped delivering frames; gave up after {self.stall_timeout:.1f} s of retries"
                    )
                    return
                if stalled >= self.reopen_after and now - reopened_at >= self.reopen_after:
                    reopened_at = now
                    self.log(f"{self.name}: no frame for {stalled:.1f} s, reopening")
                    try:
                        self.capture.release()
                        self.capture = self.open_capture()
                    except Exception as e:  # keep retrying until the timeout
                        self.log(f"{self.name}: reopen failed: {e}")
                self._stop.wait(0.02)
        finally:
            with self._cond:
                if self.end_reason is None:
                    self.end_reason = "closed"
                self._cond.notify_all()

    # -- consumer
    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest unseen frame (waiting up to ``timeout`` s), or None when the source ended."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        with self._cond:
            while self._frame is None and self.end_reason is None:
                now = time.perf_counter()
                if self.live and now - self._last_frame_at > self.stall_timeout + 1.0:
                    # the capture thread is stuck inside read() (e.g. a dead network stream)
                    self.end_reason = f"{self.name} delivered no frame for {now - self._last_frame_at:.1f} s (capture blocked)"
                    break
                remaining = 0.1 if deadline is None else min(0.1, deadline - now)
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)  # short waits keep Ctrl-C responsive
            frame, self._frame = self._frame, None
            return frame

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        """Stop the capture thread and release the capture (unless the thread is stuck inside read())."""
        self._stop.set()
        self._thread.join(timeout=1.0)
        if self._thread.is_alive():  # releasing under a blocked read() can crash the backend
            self.log(f"{self.name}: the capture is blocked in read(); leaving it to the process exit")
            return
        try:
            self.capture.release()
        except Exception:
            pass


def open_source(
    spec: str,
    *,
    realtime: bool = False,
    stall_timeout: float = 5.0,
    log: Callable[[str], None] = _stderr,
) -> SequentialSource | LatestFrameSource | ImageSource:
    """Open ``spec`` (camera index, /dev/videoN, URL, video file, folder or image); :class:`SourceError` if impossible.

    Cameras and streams get a capture thread keeping the newest frame; a video file is read
    frame by frame unless ``realtime``, which paces it at its frame rate and drops frames like a camera.
    """
    kind, target = _parse(spec)
    if kind == "images":
        return ImageSource(target)
    if kind == "video":
        cap = _open_capture(kind, target, spec)
        if not realtime:
            return SequentialSource(cap, name=str(spec), log=log)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        first = [cap]  # the already opened capture, then (never: files do not reopen) fresh ones

        def reopen() -> Any:
            return first.pop() if first else _open_capture(kind, target, spec)

        return LatestFrameSource(reopen, name=str(spec), live=False, pace_fps=fps if 0 < fps < 1000 else 30.0, log=log)
    cap = _open_capture(kind, target, spec)
    first = [cap]

    def open_live() -> Any:
        return first.pop() if first else _open_capture(kind, target, spec)

    return LatestFrameSource(open_live, name=f"{kind} {spec}", live=True, stall_timeout=stall_timeout, log=log)
