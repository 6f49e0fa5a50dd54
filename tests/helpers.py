"""Helpers shared by the tests: paths, tool runners, tiny configs, generated photos and videos.

Imported as a module (``from helpers import ...``; pytest puts ``tests/`` on ``sys.path``).
The fixtures built from these live in ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pytest

from ssdlite._paths import DATA_ENV, REPO_ROOT, shared_data_dir

CONFIGS = REPO_ROOT / "configs"
PAPER_CONFIGS = sorted(CONFIGS.glob("ssdlite320_*.yaml"))
SSD_CONFIGS = sorted(CONFIGS.glob("ssd3*_*.yaml"))  # the regular-convolution SSD rows (model.head: ssd)
DETECTOR_CONFIGS = PAPER_CONFIGS + SSD_CONFIGS
SMALLEST_CONFIG = CONFIGS / "ssdlite320_mobilenet_v3_small_reduced.yaml"

# ----------------------------------------------------------------------------- the real-data folder


def missing_data_reason(needed: str, why: str) -> str | None:
    """None when ``<shared data>/<needed>`` exists; else a skip reason naming it, ``why`` it is needed and how to get it."""
    root = shared_data_dir()
    if root is not None and (root / needed).exists():
        return None
    env = os.environ.get(DATA_ENV)
    if root is not None:
        where = f"{root / needed} is absent"
    elif env:
        where = f"{DATA_ENV}={env} is not a folder"
    else:
        where = f"../shared/data is absent (a user's clone); set {DATA_ENV} to the real-data folder to run it"
    return f"needs the real {needed} ({why}): {where}"


def require_shared(needed: str, why: str) -> Path:
    """``<shared data>/<needed>``; skips the calling test, saying what is missing and why, when it is absent."""
    reason = missing_data_reason(needed, why)
    if reason:
        pytest.skip(reason)
    return shared_data_dir() / needed


# ----------------------------------------------------------------------------- tools/ and configs


def load_tool(name: str) -> Any:
    """The module ``tools/<name>.py``, loaded by path as the console script would run it."""
    spec = importlib.util.spec_from_file_location(f"test_tool_{name}", REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(name: str, argv: Sequence[Any]) -> int:
    """Exit code of ``tools/<name>.py argv`` run in this process (errors become one line on stderr)."""
    from ssdlite.apps.cli import run

    tool = load_tool(name)
    return run(tool.main, tool.build_parser(), [str(a) for a in argv])


def tiny_model(num_classes: int, input_size: int = 128) -> dict:
    """The ``model`` section of a tiny CPU model: MobileNetV3-Small x0.5, small extra layers."""
    return {"backbone": {"name": "mobilenet_v3_small", "width_mult": 0.5}, "num_classes": num_classes,
            "input_size": [input_size, input_size], "extra_channels": [64, 32, 32, 16]}


def tiny_config(train_images: Path | str, train_annotations: Path | str, num_classes: int,
                val_images: Path | str | None = None, val_annotations: Path | str | None = None, **train: Any) -> dict:
    """A config dict for a tiny CPU run: :func:`tiny_model` at 128 px, 1 epoch, no workers."""
    t = {"epochs": 1, "batch_size": 4, "lr": 0.05, "reference_batch": 4, "warmup_epochs": 0.5, "workers": 0,
         "ema": False, "seed": 7, "channels_last": False}
    t.update(train)
    return {
        "model": tiny_model(num_classes),
        "data": {"train": {"images": str(train_images), "annotations": str(train_annotations)},
                 "val": {"images": str(val_images) if val_images else None,
                         "annotations": str(val_annotations) if val_annotations else None},
                 "augment": "none"},
        "train": t,
    }


def write_config(path: Path, cfg: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- the synthetic shapes dataset


@dataclass(frozen=True)
class ShapesData:
    """A synthetic shapes dataset written by ``ssdlite.data.synthetic.make_shapes_dataset``."""

    root: Path
    train_images: Path
    train_annotations: Path
    val_images: Path
    val_annotations: Path
    num_train: int
    num_val: int
    size: int
    num_classes: int = 4


def shapes_config(data: ShapesData, **train: Any) -> dict:
    """:func:`tiny_config` on a shapes dataset, evaluated on its val split."""
    return tiny_config(data.train_images, data.train_annotations, data.num_classes, data.val_images, data.val_annotations,
                       **train)


# ----------------------------------------------------------------------------- generated photos and videos


@dataclass(frozen=True)
class Photos:
    """Photos to run inference on: the real ``photos/darknet`` or generated ones (a user's clone).

    ``paths``: every photo of ``folder`` (sorted), which holds nothing else the detect tool reads.
    """

    folder: Path
    paths: tuple[Path, ...]
    generated: bool

    def pick(self, *names: str) -> list[Path]:
        """The real photos of these names; generated: as many generated photos, in order."""
        if self.generated:
            return list(self.paths[: len(names)])
        return [self.folder / n for n in names]


@dataclass(frozen=True)
class Clip:
    """A video to run detection on: its path, frame size (w, h), frame rate and frame count."""

    path: Path
    size: tuple[int, int]
    fps: float
    frames: int
    generated: bool


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    low = rng.random((max(height // cell, 2), max(width // cell, 2), 3), dtype=np.float32)
    return cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)


def _draw_shape(image: np.ndarray, rng: np.random.Generator, center: tuple[float, float], radius: float) -> None:
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    x, y, r = int(center[0]), int(center[1]), max(int(radius), 3)
    kind = int(rng.integers(4))
    if kind == 0:
        cv2.circle(image, (x, y), r, colour, -1, cv2.LINE_AA)
    elif kind == 1:
        cv2.rectangle(image, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1)
    elif kind == 2:
        cv2.ellipse(image, (x, y), (r, max(r // 3, 2)), float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
        points = np.stack([x + r * np.cos(angles), y + r * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)


def photo_like_image(rng: np.random.Generator, height: int, width: int, shapes: int = 8) -> np.ndarray:
    """An RGB uint8 (height, width, 3) image with photo-like statistics: smooth colour regions, a
    lighting gradient, a few filled shapes of all sizes, a slight blur and sensor noise."""
    image = _smooth_noise(rng, height, width, 48) * np.float32(150) + _smooth_noise(rng, height, width, 8) * np.float32(40)
    ramp = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    image = image + ramp * rng.uniform(-40, 40, 3).astype(np.float32) + 30
    image = np.clip(0.5 * image + 0.5 * image.mean(2, keepdims=True), 0, 255).astype(np.uint8)  # photo-like saturation
    short = min(height, width)
    for _ in range(shapes):
        center = (rng.uniform(0, width), rng.uniform(0, height))
        _draw_shape(image, rng, center, rng.uniform(short / 20, short / 4))
    image = cv2.GaussianBlur(image, (3, 3), 0)
    noise = rng.normal(0.0, 6.0, image.shape).astype(np.float32)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


# (file name, height, width): landscape, portrait and square, JPEG and PNG, like a folder of photos
GENERATED_PHOTOS = [("street.jpg", 480, 640), ("garden.jpg", 576, 768), ("portrait.jpg", 500, 375),
                    ("square.png", 416, 416)]


def write_photos(folder: Path, seed: int = 0) -> list[Path]:
    """Write :data:`GENERATED_PHOTOS` into ``folder``; returns their paths (sorted)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, h, w in GENERATED_PHOTOS:
        path = folder / name
        if not cv2.imwrite(str(path), cv2.cvtColor(photo_like_image(rng, h, w), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
    return sorted(folder / name for name, _, _ in GENERATED_PHOTOS)


def write_video(path: Path, frames: int, fps: float, size: tuple[int, int], seed: int = 0) -> Path:
    """A short video of shapes gliding over a photo-like background, with fresh noise every frame.

    ``size`` is (width, height); ``.avi`` is written as MJPG, anything else as mp4v.
    """
    w, h = size
    rng = np.random.default_rng(seed)
    background = photo_like_image(rng, h, w, shapes=3)
    movers = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-4, 4), rng.uniform(-3, 3), rng.uniform(h / 12, h / 4),
               int(rng.integers(1 << 30))) for _ in range(4)]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    try:
        for i in range(frames):
            frame = background.copy()
            for x, y, vx, vy, r, shape_seed in movers:
                _draw_shape(frame, np.random.default_rng(shape_seed), ((x + i * vx) % w, (y + i * vy) % h), r)
            noise = rng.normal(0.0, 4.0, frame.shape).astype(np.float32)
            frame = np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it; bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_plain_onnx(path: Path) -> Path:
    """A valid ONNX file that is not an ssdlite export: one Identity node, no metadata."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def assert_runner_is_torch_free(runner: str, path: Path, batch: int = 1) -> None:
    """``runner`` ("module:Class") runs the 320x320, 80-class export ``path`` in a fresh interpreter, and
    neither it nor ``config()`` imports torch."""
    import subprocess
    import sys

    module, cls = runner.split(":")
    code = (
        "import sys, numpy as np\n"
        f"from {module} import {cls}\n"
        f"r = {cls}({str(path)!r}, threads=1)\n"
        f"c, b = r(np.zeros(({batch}, 3, 320, 320), np.float32))\n"
        "cfg = r.config()\n"
        f"assert c.shape == ({batch}, 2034, 81) and b.shape == ({batch}, 2034, 4), (c.shape, b.shape)\n"
        f"assert 'torch' not in sys.modules, '{module} imported torch'\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
