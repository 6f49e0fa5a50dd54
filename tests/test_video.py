"""The video loop with fake cameras and detectors: frames are dropped, not queued, when inference is
slow; a camera that dies ends the run with the output intact; bad frames are skipped; clean shutdown."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from helpers import write_video
from ssdlite.deploy.detector import Detections
from ssdlite.apps.draw import class_color, draw_detections
from ssdlite.apps.sinks import default_save_path
from ssdlite.apps.sources import LatestFrameSource, SequentialSource, SourceError, open_source
from ssdlite.apps.video import parse_classes, run_detection

NAMES = ["person", "car", "dog"]


class FakeCamera:
    """cv2.VideoCapture look-alike: ``fps`` frames per second (each read blocks like a camera),
    then, after ``frames`` frames, reads fail forever (an unplugged camera)."""

    def __init__(self, fps=200.0, frames=None, size=(48, 64)):
        self.fps, self.frames, self.size = fps, frames, size
        self.count = 0
        self.released = False
        self.next_due = time.perf_counter()

    def read(self):
        if self.frames is not None and self.count >= self.frames:
            time.sleep(0.005)
            return False, None
        self.next_due += 1.0 / self.fps
        delay = self.next_due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        image = np.full((*self.size, 3), self.count % 256, np.uint8)
        self.count += 1
        return True, image

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_COUNT: 0}.get(prop, 0)

    def release(self):
        self.released = True


class SlowDetector:
    """Takes ``seconds`` per call; one box of class 1 ('car') and one of class 0 per image."""

    def __init__(self, seconds=0.0):
        self.seconds = seconds
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        if self.seconds:
            time.sleep(self.seconds)
        h, w = images[0].shape[:2]
        boxes = np.array([[1, 1, w / 2, h / 2], [2, 2, w - 1, h - 1]], np.float32)
        return [Detections(boxes, np.array([0.9, 0.6], np.float32), np.array([1, 0]), ["car", "person"])]


def test_capture_thread_drops_frames_instead_of_queueing():
    camera = FakeCamera(fps=200.0)
    source = LatestFrameSource(lambda: camera, name="fake camera")
    detector = SlowDetector(seconds=0.05)  # 20 FPS of inference against a 200 FPS camera
    stats = run_detection(detector, source, max_frames=8, log=lambda m: None)
    assert stats.frames == 8 and stats.end_reason == "reached --max-frames 8"
    assert stats.dropped >= 30, f"only {stats.dropped} frames dropped: frames are being queued"
    assert camera.released
    # latency (capture -> result) stays about one inference (50 ms); a queue would make the 8th
    # frame wait for the 7 before it (~350 ms)
    assert max(stats.latency_ms) < 150, stats.latency_ms


def test_newest_frame_is_returned_and_counted():
    camera = FakeCamera(fps=500.0)
    source = LatestFrameSource(lambda: camera, name="fake camera")
    try:
        first = source.read(timeout=2.0)
        time.sleep(0.1)  # ~50 frames arrive meanwhile; only the newest is kept
        second = source.read(timeout=2.0)
        assert second.index - first.index >= 20
        assert source.dropped >= second.index - first.index - 2
    finally:
        source.close()
    assert camera.released


def test_dead_camera_is_retried_then_run_ends_with_output_intact(tmp_path):
    cameras = []

    def open_camera():  # the first opening delivers 6 frames; reopened ones deliver nothing
        cameras.append(FakeCamera(fps=100.0, frames=6 if not cameras else 0))
        return cameras[-1]

    messages = []
    source = LatestFrameSource(open_camera, name="camera 0", stall_timeout=0.5, reopen_after=0.15, log=messages.append)
    out, lines = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    t0 = time.perf_counter()
    stats = run_detection(SlowDetector(), source, save=out, json_path=lines, log=messages.append)
    elapsed = time.perf_counter() - t0
    assert "stopped delivering frames" in stats.end_reason and "0.5 s" in stats.end_reason
    assert 0.5 <= elapsed < 5
    assert len(cameras) >= 2, "the capture should have been reopened"
    assert any("reopening" in m for m in messages)
    assert all(c.released for c in cameras)
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == stats.frames >= 1
    cap.release()
    assert len(lines.read_text().splitlines()) == stats.frames


def test_capture_blocked_inside_read_ends_the_run():
    class Hanging(FakeCamera):
        def __init__(self):
            super().__init__(fps=100.0)
            self.unblock = threading.Event()

        def read(self):
            if self.count >= 3:
                self.unblock.wait(10)  # a dead network stream: read() never returns
                return False, None
            return super().read()

    camera = Hanging()
    messages = []
    source = LatestFrameSource(lambda: camera, name="stream rtsp://x", stall_timeout=0.3, log=messages.append)
    t0 = time.perf_counter()
    stats = run_detection(SlowDetector(), source, log=messages.append)
    assert stats.frames == 3 and "capture blocked" in stats.end_reason
    assert time.perf_counter() - t0 < 5.0
    camera.unblock.set()


class ListSource:
    """Yields prepared frames (including bad ones) like a file source."""

    live = False
    fps = 10.0
    dropped = 0
    end_reason = "end of stream"

    def __init__(self, images):
        self.images, self.closed = images, False

    def __iter__(self):
        from ssdlite.apps.sources import Frame

        for i, image in enumerate(self.images):
            yield Frame(i, image, i / self.fps, time.perf_counter())

    def close(self):
        self.closed = True


def test_bad_frames_are_logged_and_skipped(tmp_path):
    good = np.zeros((40, 60, 3), np.uint8)
    frames = [good, None, np.zeros((40, 60), np.uint8), good.astype(np.float32), good.copy(), np.zeros((40, 60, 4), np.uint8), good.copy()]
    messages = []
    source = ListSource(frames)
    stats = run_detection(SlowDetector(), source, save=tmp_path / "out.avi", json_path=tmp_path / "d.jsonl", log=messages.append)
    assert stats.frames == 3 and stats.bad_frames == 4 and source.closed
    assert stats.end_reason == "end of stream"
    assert any("frame 1 could not be decoded; skipped" in m for m in messages)
    assert any("frame 3 has dtype float32" in m for m in messages)
    assert [json.loads(l)["frame"] for l in (tmp_path / "d.jsonl").read_text().splitlines()] == [0, 4, 6]


def test_detector_error_on_a_frame_is_skipped():
    class Flaky(SlowDetector):
        def __call__(self, images):
            if self.calls == 1:
                self.calls += 1
                raise ValueError("boom")
            return super().__call__(images)

    messages = []
    stats = run_detection(Flaky(), ListSource([np.zeros((8, 8, 3), np.uint8)] * 3), log=messages.append)
    assert stats.frames == 2 and stats.bad_frames == 1 and any("boom" in m for m in messages)


def test_ctrl_c_stops_cleanly_and_releases_everything(tmp_path):
    class Interrupting(SlowDetector):
        def __call__(self, images):
            if self.calls == 3:
                raise KeyboardInterrupt
            return super().__call__(images)

    camera = FakeCamera(fps=100.0)
    source = LatestFrameSource(lambda: camera, name="fake")
    stats = run_detection(Interrupting(), source, save=tmp_path / "o.mp4", json_path=tmp_path / "o.jsonl", log=lambda m: None)
    assert stats.end_reason == "interrupted (Ctrl-C)" and stats.frames == 3
    assert camera.released and not any(t.name.startswith("capture:") and t.is_alive() for t in threading.enumerate())
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


@pytest.fixture()
def small_video(tmp_path):
    """1 s of MJPG video: 25 frames of 64 x 48 at 25 fps."""
    return write_video(tmp_path / "clip.avi", frames=25, fps=25.0, size=(64, 48))


def test_file_read_sequentially_unless_realtime(small_video):
    source = open_source(str(small_video))
    assert isinstance(source, SequentialSource)
    stats = run_detection(SlowDetector(seconds=0.01), source, log=lambda m: None)
    assert stats.frames == 25 and stats.dropped == 0 and stats.end_reason == "end of stream"
    # --realtime: paced at 25 fps (1 s), inference at ~10 FPS -> frames dropped like a camera
    source = open_source(str(small_video), realtime=True)
    assert isinstance(source, LatestFrameSource)
    t0 = time.perf_counter()
    stats = run_detection(SlowDetector(seconds=0.1), source, log=lambda m: None)
    assert 0.9 < time.perf_counter() - t0 < 3.0
    assert 5 <= stats.frames <= 15 and stats.dropped >= 8 and stats.frames + stats.dropped == 25


def test_unopenable_sources_name_themselves_and_how_to_list_devices(tmp_path):
    with pytest.raises(SourceError, match="nothing.mp4 does not exist"):
        open_source(str(tmp_path / "nothing.mp4"))
    with pytest.raises(SourceError, match=r"camera /dev/video99 does not exist; list cameras with `v4l2-ctl --list-devices` or `ls /dev/video\*`"):
        open_source("/dev/video99")
    with pytest.raises(SourceError, match="cannot open camera 37 .*v4l2-ctl --list-devices"):
        open_source("37")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    with pytest.raises(SourceError, match="cannot open video .*broken.mp4"):
        open_source(str(broken))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="has no images"):
        open_source(str(empty))


def test_show_without_display_says_so_and_saves(monkeypatch, tmp_path, small_video):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    messages = []
    target = tmp_path / "runs" / "clip.mp4"
    stats = run_detection(SlowDetector(), open_source(str(small_video)), show=True, default_save=target, max_frames=5, log=messages.append)
    assert sum("no display" in m for m in messages) == 1 and str(target) in messages[0]
    assert stats.saved == str(target)
    cap = cv2.VideoCapture(str(target))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


def test_show_when_imshow_fails_degrades_to_saving(monkeypatch, tmp_path, small_video):
    monkeypatch.setenv("DISPLAY", ":99")

    def no_gui(*args):
        raise cv2.error("The function is not implemented. Rebuild the library with GTK+ support")

    monkeypatch.setattr(cv2, "imshow", no_gui)
    messages = []
    target = tmp_path / "fallback.mp4"
    stats = run_detection(SlowDetector(), open_source(str(small_video)), show=True, default_save=target, max_frames=4, log=messages.append)
    assert sum("cannot open a window" in m for m in messages) == 1
    assert stats.frames == 4 and target.is_file()
    cap = cv2.VideoCapture(str(target))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= 3  # from the first frame that could not be shown on


def test_drawing_colours_and_class_filter():
    assert class_color(3) == class_color(3) and len({class_color(i) for i in range(80)}) == 80
    image = np.zeros((60, 80, 3), np.uint8)
    dets = SlowDetector()([image])[0]
    draw_detections(image, dets)
    assert image.any()
    assert tuple(int(v) for v in image[30, 2]) == class_color(0)  # the left edge of the class-0 box
    assert parse_classes("person,car", NAMES) == {0, 1} and parse_classes("2", NAMES) == {2}
    assert parse_classes(None, NAMES) is None
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        parse_classes("person,zebra", NAMES)
    stats = run_detection(SlowDetector(), ListSource([np.zeros((8, 8, 3), np.uint8)]), classes={1}, log=lambda m: None)
    assert stats.frames == 1


def test_default_save_paths():
    assert default_save_path("0").name == "camera0.mp4"
    assert default_save_path("/dev/video2").name == "camera2.mp4"
    assert default_save_path("videos/street.mp4").name == "street.mp4"
    assert default_save_path("rtsp://host/stream").name == "stream.mp4"
