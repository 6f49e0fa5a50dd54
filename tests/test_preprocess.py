"""Preprocess: the table normalization gives the very bits of computing (x / 255 - mean) / std."""

from __future__ import annotations

import numpy as np
import pytest
from torchvision.transforms import functional as TF

from ssdlite.config import PreprocessConfig
from ssdlite.data.images import resize_image
from ssdlite.deploy.detector import _check_image, normalize_table, preprocess

MEAN_STDS = [
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # the paper configs
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet
    ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    ((0.1234567, 0.7654321, 0.3333333), (0.0123457, 0.9876543, 0.3)),  # awkward roundings
]


def reference_preprocess(images, input_size, cfg, color="rgb"):
    """The arithmetic implementation the table replaced: float32 ufuncs in torchvision's order."""
    h_in, w_in = input_size
    batch = np.empty((len(images), 3, h_in, w_in), dtype=np.float32)
    mean = np.asarray(cfg.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(cfg.std, dtype=np.float32).reshape(3, 1, 1)
    for i, image in enumerate(images):
        image = _check_image(image, i)
        resized, _ = resize_image(image, (h_in, w_in), cfg.resize, cfg.pad_value)
        out = batch[i]
        chw = resized.transpose(2, 0, 1)
        out[...] = chw[::-1] if color == "bgr" else chw
        np.divide(out, np.float32(255.0), out=out)
        out -= mean
        out /= std
    return batch


@pytest.mark.parametrize("mean, std", MEAN_STDS)
def test_table_equals_torchvision_normalize_for_every_value(mean, std):
    table = normalize_table(mean, std)
    assert table.shape == (3, 256) and table.dtype == np.float32 and not table.flags.writeable
    hwc = np.repeat(np.arange(256, dtype=np.uint8).reshape(1, 256, 1), 3, axis=2)  # every value in every channel
    ref = TF.normalize(TF.to_tensor(hwc), list(mean), list(std))  # ToTensor (/ 255) + Normalize, float32
    assert np.array_equal(table.view(np.uint32), ref[:, 0].numpy().view(np.uint32))


def _images(rng):
    """Random frames of assorted sizes and layouts: RGB, gray (2-D and (H, W, 1)), RGBA, views."""
    big = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    return [
        big,
        big[::-1, 100:900],  # non-contiguous view
        rng.integers(0, 256, (97, 61, 3), dtype=np.uint8),  # upscaled
        rng.integers(0, 256, (64, 48), dtype=np.uint8),  # gray
        rng.integers(0, 256, (33, 80, 1), dtype=np.uint8),
        rng.integers(0, 256, (50, 64, 4), dtype=np.uint8),  # RGBA, already the input width
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),  # already the input size: no resize
        rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
        np.full((40, 300, 3), 255, np.uint8),
    ]


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("color", ["rgb", "bgr"])
@pytest.mark.parametrize("mean, std", MEAN_STDS[:2])
def test_preprocess_is_bit_identical_to_the_arithmetic(resize, color, mean, std):
    rng = np.random.default_rng(len(resize) + len(color) + int(mean[0] * 1000))
    cfg = PreprocessConfig(resize=resize, mean=mean, std=std, pad_value=int(rng.integers(0, 256)))
    images = _images(rng)
    for size in [(64, 64), (320, 320), (48, 80)]:
        batch, maps = preprocess(images, size, cfg, color=color)
        ref = reference_preprocess(images, size, cfg, color=color)
        assert batch.dtype == np.float32 and batch.shape == ref.shape and batch.flags.c_contiguous
        assert np.array_equal(batch.view(np.uint32), ref.view(np.uint32)), (size, resize, color)
        assert [(m.width, m.height) for m in maps] == [(im.shape[1], im.shape[0]) for im in images]


def test_bgr_is_the_swapped_rgb():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    cfg = PreprocessConfig(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    rgb, _ = preprocess([img], (64, 64), cfg)
    bgr, _ = preprocess([np.ascontiguousarray(img[:, :, ::-1])], (64, 64), cfg, color="bgr")
    assert np.array_equal(rgb, bgr)
