"""Shared fixtures: the synthetic shapes datasets, photos and a video.

The deployment fixtures (:func:`photo_set`, :func:`clip`) use the real files of the shared data
folder when it is present and generated ones otherwise, so a user's clone still tests export,
ONNX Runtime and detection. Helpers that are not fixtures (paths, tool runners, config
builders, image writers) are in ``tests/helpers.py``; a test that needs a real file gets it
from ``helpers.require_shared``, which skips the test, saying what is missing and why.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from helpers import Clip, Photos, ShapesData, missing_data_reason, write_photos, write_video
from ssdlite._paths import shared_data_dir


@pytest.fixture(autouse=True, scope="session")
def _index_cache(tmp_path_factory: pytest.TempPathFactory):
    """VOC / YOLO split indexes are cached in a temporary folder, never in the user's ~/.cache."""
    import os

    from ssdlite.data.index_cache import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("index_cache"))
    yield
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run under pytest-xdist on 2 cores: one torch thread per worker avoids oversubscription."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _sigchld_restored():
    """A DataLoader with workers installs a process-wide SIGCHLD handler (torch's worker-failure check) that
    outlives it. In a long pytest process, a child exiting later (the pnnx converter of the ncnn export, after
    the tests before it) then had its SIGCHLD delivered to the main thread as a kernel SIGSEGV (si_code
    SI_KERNEL, in poll) and killed the worker; each test gets back the disposition it started with."""
    import signal

    before = signal.getsignal(signal.SIGCHLD)
    yield
    if signal.getsignal(signal.SIGCHLD) is not before and before is not None:
        signal.signal(signal.SIGCHLD, before)


# ----------------------------------------------------------------------------- synthetic shapes datasets


@pytest.fixture(scope="session")
def make_shapes(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ShapesData]:
    """``make_shapes(num_train, num_val, size, seed)``: the shapes dataset of those parameters,
    written once per session (per xdist worker) and shared by every test that asks for it."""
    from ssdlite.data.synthetic import make_shapes_dataset

    made: dict[tuple[int, int, int, int], ShapesData] = {}

    def make(num_train: int, num_val: int, size: int, seed: int = 3) -> ShapesData:
        key = (num_train, num_val, size, seed)
        if key not in made:
            root = tmp_path_factory.mktemp(f"shapes_{num_train}_{num_val}_{size}px_seed{seed}")
            paths = make_shapes_dataset(root, num_train=num_train, num_val=num_val, size=size, seed=seed)
            made[key] = ShapesData(root, num_train=num_train, num_val=num_val, size=size, **paths)
        return made[key]

    return make


@pytest.fixture(scope="session")
def shapes_data(make_shapes) -> ShapesData:
    """The tiny set for training runs: 12 train + 4 val images of 128 px, 4 classes (3 steps of 4 per epoch)."""
    return make_shapes(12, 4, 128)


@pytest.fixture(scope="session")
def shapes_data_320(make_shapes) -> ShapesData:
    """A larger set at the paper's input size: 40 train + 8 val images of 320 px, 4 classes."""
    return make_shapes(40, 8, 320)


# ----------------------------------------------------------------------------- photos and a video for inference


@pytest.fixture(scope="session")
def photo_set(tmp_path_factory: pytest.TempPathFactory) -> Photos:
    """The real ``photos/darknet`` (dog, eagle, giraffe, horses, kite, person) when the shared data
    is present; otherwise generated photo-like JPEGs and a PNG of several sizes."""
    if missing_data_reason("photos/darknet", "real photos") is None:
        folder = shared_data_dir() / "photos" / "darknet"
        return Photos(folder, tuple(sorted(folder.glob("*.jpg"))), generated=False)
    folder = tmp_path_factory.mktemp("photos")
    return Photos(folder, tuple(write_photos(folder)), generated=True)


REAL_CLIP = ("videos/intel_sample_videos/car-detection.mp4", (768, 432), 12.5)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """A street video: the real car-detection.mp4 (768 x 432, 12.5 fps) when the shared data is
    present; otherwise a generated 384 x 216, 10 fps mp4 of shapes gliding over a photo-like scene."""
    name, size, fps = REAL_CLIP
    if missing_data_reason(name, "a real video") is None:
        path = shared_data_dir() / name
        import cv2

        cap = cv2.VideoCapture(str(path))
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        return Clip(path, size, fps, frames, generated=False)
    size, fps, frames = (384, 216), 10.0, 12
    path = write_video(tmp_path_factory.mktemp("video") / "generated-street.mp4", frames, fps, size)
    return Clip(path, size, fps, frames, generated=True)
