"""tools/detect.py on a video and on photos (the real ones, or generated ones in a user's clone):
output video frame count, JSON lines that match the detector, class filter, unopenable source,
--show without a display."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from helpers import SMALLEST_CONFIG, Clip, run_tool
from ssdlite.apps.bench.lively import lively_random_model
from ssdlite.model.checkpoint import save_checkpoint
from ssdlite.config import load_config
from ssdlite.deploy.detector import Detector
from ssdlite.deploy.export import export_onnx

FRAMES = 6


def detect(*argv: str) -> int:
    return run_tool("detect", argv)


@pytest.fixture(scope="module")
def video(clip: Clip) -> Clip:
    """The real car-detection.mp4 (768 x 432, 12.5 fps) or a generated street video."""
    assert clip.frames >= FRAMES
    return clip


@pytest.fixture(scope="module")
def model(video, tmp_path_factory):
    """(checkpoint .pt, .onnx) of a lively small model calibrated on the video's frames."""
    cap = cv2.VideoCapture(str(video.path))
    frames = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(2)]
    cap.release()
    tmp = tmp_path_factory.mktemp("detect")
    cfg = load_config(SMALLEST_CONFIG)
    ckpt = tmp / "m.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, frames, seed=5, cls_std=0.08), cfg)
    return ckpt, export_onnx(ckpt, None, tmp / "m.onnx")


def _first_frames(video, n):
    cap = cv2.VideoCapture(str(video))
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    return frames


def test_detect_cli_on_a_video_saves_video_and_json(video, model, tmp_path, capsys):
    _, onnx_path = model
    out, lines = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    code = detect("--source", str(video.path), "--checkpoint", str(onnx_path), "--save", str(out), "--json", str(lines),
                  "--score", "0.1", "--max-frames", str(FRAMES), "--threads", "1")
    assert code == 0
    assert "FPS:" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == video.size  # (768, 432)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(video.fps, abs=0.1)  # 12.5
    cap.release()
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(FRAMES))
    assert rows[1]["time"] == pytest.approx(1 / video.fps)
    # the JSON holds exactly what the detector finds on those frames
    det = Detector.from_checkpoint(onnx_path, threads=1, score_thresh=0.1)
    total = 0
    for row, frame in zip(rows, _first_frames(video.path, FRAMES)):
        (d,) = det([cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)])
        got = row["detections"]
        assert len(got) == len(d)
        total += len(got)
        for g, box, score, label, name in zip(got, d.boxes, d.scores, d.labels, d.names):
            assert set(g) == {"box", "score", "label", "name"}
            np.testing.assert_allclose(g["box"], box, atol=1e-3)
            assert g["score"] == pytest.approx(float(score), abs=1e-6) and g["label"] == label and g["name"] == name
    assert total > 0, "no detections to compare; raise cls_std of the test model"


def test_detect_cli_class_filter_and_torch_backend(video, model, tmp_path):
    ckpt, _ = model
    lines = tmp_path / "cars.jsonl"
    assert detect("--source", str(video.path), "--checkpoint", str(ckpt), "--json", str(lines), "--score", "0.05",
                  "--classes", "car,person", "--max-frames", "2", "--threads", "1") == 0
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(rows) == 2
    assert {d["name"] for r in rows for d in r["detections"]} <= {"car", "person"}


def test_detect_cli_on_photos_writes_annotated_images(photo_set, model, tmp_path):
    _, onnx_path = model
    out = tmp_path / "annotated"
    assert detect("--source", str(photo_set.folder), "--checkpoint", str(onnx_path), "--save", str(out), "--threads", "1") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in photo_set.paths)  # every *.jpg (+ .png)
    one = tmp_path / "one.jsonl"
    (dog,) = photo_set.pick("dog.jpg")
    assert detect("--source", str(dog), "--checkpoint", str(onnx_path), "--json", str(one)) == 0
    (row,) = [json.loads(line) for line in one.read_text().splitlines()]
    assert row["file"] == dog.name


def test_detect_cli_unopenable_source(model, tmp_path, capsys):
    _, onnx_path = model
    assert detect("--source", str(tmp_path / "missing.mp4"), "--checkpoint", str(onnx_path)) == 2
    assert "missing.mp4 does not exist" in capsys.readouterr().err
    assert detect("--source", "/dev/video42", "--checkpoint", str(onnx_path)) == 2
    err = capsys.readouterr().err
    assert "/dev/video42" in err and "v4l2-ctl --list-devices" in err
    assert detect("--source", str(tmp_path), "--checkpoint", str(tmp_path / "nope.onnx")) == 2  # an empty folder
    assert "has no images" in capsys.readouterr().err


def test_detect_cli_show_without_display_saves_to_default_path(video, model, tmp_path, monkeypatch, capsys):
    _, onnx_path = model
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert detect("--source", str(video.path), "--checkpoint", str(onnx_path), "--show", "--max-frames", "3", "--threads", "1") == 0
    err = capsys.readouterr().err
    saved = f"runs/detect/{video.path.stem}.mp4"  # runs/detect/car-detection.mp4
    assert err.count("no display") == 1 and saved in err
    cap = cv2.VideoCapture(str(tmp_path / saved))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
