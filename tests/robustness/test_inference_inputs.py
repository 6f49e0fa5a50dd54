"""Bad inference inputs: each either works (documented in ssdlite.deploy.detector._check_image) or fails with a
clear ValueError; none crashes the webcam loop (ssdlite.apps.video.run_detection), which logs the frame and
goes on to the next one."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import ssdlite
from ssdlite.config import from_dict
from ssdlite.deploy.detector import Detector


@pytest.fixture(scope="module")
def detector() -> Detector:
    import torch

    torch.manual_seed(0)
    cfg = from_dict({"model": {"backbone": {"name": "mobilenet_v3_small", "width_mult": 0.5}, "num_classes": 2,
                               "input_size": [96, 96], "extra_channels": [64, 32, 32, 16]},
                     "postprocess": {"score_thresh": 0.0, "detections_per_img": 20}})
    return Detector(ssdlite.build_model(cfg), cfg, threads=1)


def _rgb(h: int = 60, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.boxes, y.boxes)
        np.testing.assert_array_equal(x.scores, y.scores)
        np.testing.assert_array_equal(x.labels, y.labels)


def _inside(dets, h: int, w: int) -> None:
    assert len(dets) > 0
    assert dets.boxes.dtype == np.float32 and dets.boxes.min() >= 0
    assert dets.boxes[:, [0, 2]].max() <= w and dets.boxes[:, [1, 3]].max() <= h


# ----------------------------------------------------------------------------- inputs that work


@pytest.mark.fault("1x1 image", "works: boxes inside the 1x1 image")
def test_works_1x1(detector) -> None:
    _inside(detector([np.full((1, 1, 3), 200, np.uint8)])[0], 1, 1)


@pytest.mark.fault("8000x8000 image", "works: resized to the input; boxes in the image's pixels")
def test_works_8000x8000(detector) -> None:
    big = np.zeros((8000, 8000, 3), np.uint8)
    big[2000:6000, 1000:7000] = 180
    t0 = time.perf_counter()
    out = detector(big)[0]
    assert time.perf_counter() - t0 < 30
    _inside(out, 8000, 8000)


@pytest.mark.fault("grayscale (H, W) and (H, W, 1)", "works: replicated to RGB, same detections as the RGB image")
def test_works_grayscale(detector) -> None:
    gray = _rgb()[:, :, 1].copy()
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    expected = detector([rgb])
    _same(detector([gray]), expected)
    _same(detector([gray[:, :, None]]), expected)
    _same(detector(gray), expected)  # one 2-D array, not in a list


@pytest.mark.fault("RGBA image", "works: alpha dropped, same detections as the RGB image")
def test_works_rgba(detector) -> None:
    rgb = _rgb()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 30, np.uint8)])
    _same(detector([rgba]), detector([rgb]))


@pytest.mark.fault("BGR frame with color='bgr'", "works: same detections as the RGB image (the flag swaps the channels)")
def test_works_bgr_flag(detector) -> None:
    rgb = _rgb()
    _same(detector([np.ascontiguousarray(rgb[:, :, ::-1])], color="bgr"), detector([rgb]))
    _same(detector([rgb[:, :, ::-1]], color="BGR"), detector([rgb]))  # a view, upper case


@pytest.mark.fault("BGR frame without the flag", "runs (channel order cannot be detected from pixels): documented, "
                   "detections differ from the RGB image's")
def test_wrong_channel_order_without_flag_runs(detector) -> None:
    rgb = _rgb()
    rgb[:, :, 0] = 255  # strongly coloured, so the order matters
    a, b = detector([rgb])[0], detector([np.ascontiguousarray(rgb[:, :, ::-1])])[0]
    assert not (np.array_equal(a.scores, b.scores) and np.array_equal(a.boxes, b.boxes))


@pytest.mark.fault("non-contiguous view and a (N, H, W, 3) batch array", "works: same detections as contiguous copies")
def test_works_views_and_batch_array(detector) -> None:
    big = _rgb(120, 160)
    view = big[::2, ::2]
    _same(detector([view]), detector([view.copy()]))
    batch = np.stack([_rgb(seed=1), _rgb(seed=2)])
    _same(detector(batch), detector([batch[0], batch[1]]))


# ----------------------------------------------------------------------------- inputs that fail clearly


BAD = [
    ("empty array (0, 0, 3)", lambda: [np.zeros((0, 0, 3), np.uint8)], {}, r"image 0: empty image of shape \(0, 0, 3\)"),
    ("empty 1-D array", lambda: [np.array([], np.uint8)], {}, r"image 0: empty image"),
    ("empty list", lambda: [], {}, "no images given"),
    ("float image (0..1)", lambda: [_rgb().astype(np.float32) / 255], {}, r"expected dtype uint8 .*got float32; convert with"),
    ("uint16 image", lambda: [_rgb().astype(np.uint16) * 257], {}, r"expected dtype uint8 .*got uint16"),
    ("channels-first (3, H, W)", lambda: [_rgb().transpose(2, 0, 1).copy()], {},
     r"expected shape \(H, W, 3\) RGB, got \(3, 60, 80\); this looks channels-first: pass image.transpose\(1, 2, 0\)"),
    ("5 channels", lambda: [np.zeros((10, 10, 5), np.uint8)], {}, r"expected shape \(H, W, 3\) RGB, got \(10, 10, 5\)"),
    ("None instead of an image", lambda: [None], {}, "expected a numpy array .* got NoneType"),
    ("file path instead of an image", lambda: ["frame.jpg"], {}, "expected a numpy array .* got str"),
    ("one bad image in a batch", lambda: [_rgb(), np.zeros((0, 5, 3), np.uint8)], {}, "image 1: empty image"),
    ("unknown channel-order flag", lambda: [_rgb()], {"color": "brg"}, r"color='brg' is not one of \['rgb', 'bgr'\]"),
]


@pytest.mark.parametrize("make, kwargs, match", [pytest.param(m, k, r, id=n, marks=pytest.mark.fault(
    f"inference input: {n}", "ValueError naming the image and the fault")) for n, m, k, r in BAD])
def test_bad_input_is_a_clear_value_error(detector, make, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        detector(make(), **kwargs)


# ----------------------------------------------------------------------------- the webcam loop


class FakeSource:
    """A live-like source (ssdlite.apps.video API: iterable of Frame, close(), fps, dropped) yielding given images."""

    live = True
    fps = 30.0
    dropped = 0
    end_reason = "end of stream"

    def __init__(self, images) -> None:
        self.images, self.closed = images, False

    def __iter__(self):
        from ssdlite.apps.sources import Frame

        for i, image in enumerate(self.images):
            yield Frame(i, image, i / self.fps, time.perf_counter())

    def close(self) -> None:
        self.closed = True


def _bad_frames() -> list[tuple[str, object]]:
    bgr = _rgb()[:, :, ::-1].copy()
    big = np.zeros((8000, 8000, 3), np.uint8)
    return [
        ("good", bgr), ("empty", np.zeros((0, 0, 3), np.uint8)), ("1x1", np.zeros((1, 1, 3), np.uint8)),
        ("gray", bgr[:, :, 0].copy()), ("rgba", np.dstack([bgr, bgr[:, :, :1]])), ("float", bgr.astype(np.float32)),
        ("none", None), ("string", "frame"), ("chw", bgr.transpose(2, 0, 1).copy()), ("8000x8000", big), ("good", bgr),
    ]


@pytest.mark.fault("webcam loop fed empty, 1x1, 8000x8000, gray, RGBA, float, None, non-array, CHW frames",
                   "no crash: each unusable frame logged once and skipped, the good frames processed, source closed")
def test_webcam_loop_survives_bad_frames(detector, tmp_path) -> None:
    from ssdlite.apps.video import run_detection

    frames = _bad_frames()
    messages: list[str] = []
    source = FakeSource([f for _, f in frames])
    stats = run_detection(detector, source, json_path=tmp_path / "d.jsonl", log=messages.append)
    processed = [json.loads(line)["frame"] for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    logged = {i for i in range(len(frames)) if any(m.startswith(f"frame {i} ") for m in messages)}
    assert source.closed and stats.end_reason == "end of stream"
    assert stats.frames == len(processed) and stats.bad_frames == len(logged)
    assert set(processed) | logged == set(range(len(frames))) and not set(processed) & logged
    names = [n for n, _ in frames]
    for i, name in enumerate(names):
        if name in ("good", "8000x8000"):
            assert i in processed, name
        if name in ("empty", "float", "none", "string", "chw"):
            assert i in logged, name
    assert all(sum(m.startswith(f"frame {i} ") for m in messages) <= 1 for i in range(len(frames)))


class _BackendFailure(Exception):
    """Stands for onnxruntime's InvalidArgument / Fail, which derive from Exception only."""


@pytest.mark.fault("back end raises a non-ValueError on one frame (e.g. onnxruntime InvalidArgument)",
                   "the webcam loop logs that frame and goes on")
def test_webcam_loop_survives_backend_exception(detector) -> None:
    from ssdlite.apps.video import run_detection

    calls = {"n": 0}

    def flaky(images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise _BackendFailure("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions")
        return detector(images)

    messages: list[str] = []
    stats = run_detection(flaky, FakeSource([_rgb()] * 3), log=messages.append)
    assert stats.frames == 2 and stats.bad_frames == 1 and any("INVALID_ARGUMENT" in m for m in messages)
