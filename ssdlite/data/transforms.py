"""Augmentation, resize and normalization for detection samples (albumentations + OpenCV).

Presets (``data.augment``), applied to the decoded ``(h, w, 3)`` uint8 RGB image and its
xyxy pixel boxes, in torchvision's detection-reference order:

* ``"ssdlite"``: :class:`RandomIoUCrop` (SSD min-IoU crop), horizontal flip (p=0.5).
* ``"ssd"``: photometric distortion (brightness, contrast, saturation, hue, each p=0.5, SSD
  style), :class:`ZoomOut` (canvas up to 4x filled with the mean colour, p=0.5), then the
  ``"ssdlite"`` steps.
* ``"none"``: no augmentation.

Then every sample (train and eval) is resized to ``model.input_size`` (``"stretch"`` or
``"letterbox"``, see :func:`resize_geometry`) and normalized ``(x / 255 - mean) / std`` into a
``(3, H, W)`` float32 tensor. Crowd boxes (ignore regions) follow the same geometry as the
objects; a crop keeps a crowd box whenever it overlaps the crop.

:func:`resize_image` and :func:`normalize` are the same steps inference uses, so training and
prediction see identical pixels.
"""

from __future__ import annotations

import os
import random
from typing import Any, Sequence

# albumentations asks PyPI for a newer version on import unless told not to: no network
# calls from a training job (offline clusters would wait for the timeout).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.core.transforms_interface import BaseTransformInitSchema  # noqa: E402
from albumentations.core.type_definitions import Targets  # noqa: E402
from pydantic import Field  # noqa: E402

from ssdlite.data.images import resize_geometry, resize_image  # noqa: E402  (the same steps as inference)

__all__ = [
    "RandomIoUCrop",
    "ZoomOut",
    "normalize",
    "DetectionTransform",
    "build_augmentation",
    "build_transforms",
    "PRESETS",
]

PRESETS = ("ssdlite", "ssd", "none")

# Columns of the albumentations bbox array: x1, y1, x2, y2, then the label fields in order.
_LABEL_FIELDS = ("labels", "iscrowd")
_CROWD_COLUMN = 4 + _LABEL_FIELDS.index("iscrowd")


def _box_iou(boxes: np.ndarray, rect: tuple[float, float, float, float]) -> np.ndarray:
    """IoU of ``boxes`` (N, 4) xyxy with one xyxy rectangle -> (N,)."""
    x1 = np.maximum(boxes[:, 0], rect[0])
    y1 = np.maximum(boxes[:, 1], rect[1])
    x2 = np.minimum(boxes[:, 2], rect[2])
    y2 = np.minimum(boxes[:, 3], rect[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    rect_area = (rect[2] - rect[0]) * (rect[3] - rect[1])
    return inter / np.maximum(area + rect_area - inter, 1e-12)


def _crowd_mask(bboxes: np.ndarray, crowd_column: int | None) -> np.ndarray:
    if crowd_column is None or bboxes.shape[1] <= crowd_column:
        return np.zeros(len(bboxes), dtype=bool)
    return bboxes[:, crowd_column] > 0.5


class RandomIoUCrop(A.DualTransform):
    """SSD's min-IoU random crop (torchvision ``transforms.v2.RandomIoUCrop``) for albumentations.

    Each call draws a minimum IoU from ``sampler_options`` (``None``: keep the whole image) and
    tries up to ``trials`` crops of ``scale`` x the image side per axis with width/height in
    ``aspect_ratio``; a crop is accepted when the centres of some (non-crowd) boxes lie inside
    it and the largest IoU of those boxes with the crop is >= the minimum. Objects whose centre
    is outside the crop are dropped; crowd boxes (column ``crowd_column`` of the albumentations
    bbox array, 1 = crowd) are kept when they overlap the crop and do not count for the IoU.
    An image without objects accepts the first crop of a valid shape (it stays a negative).
    After ``max_rounds`` options without a valid crop the image is kept whole (torchvision
    loops forever there).

    Targets: image, mask, bboxes.
    """

    _targets = (Targets.IMAGE, Targets.MASK, Targets.BBOXES)

    class InitSchema(BaseTransformInitSchema):
        min_scale: float = Field(gt=0, le=1)
        max_scale: float = Field(gt=0, le=1)
        min_aspect_ratio: float = Field(gt=0)
        max_aspect_ratio: float = Field(gt=0)
        sampler_options: tuple[float | None, ...]
        trials: int = Field(ge=1)
        max_rounds: int = Field(ge=1)
        crowd_column: int | None

    def __init__(
        self,
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        min_aspect_ratio: float = 0.5,
        max_aspect_ratio: float = 2.0,
        sampler_options: Sequence[float | None] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, None),
        trials: int = 40,
        max_rounds: int = 100,
        crowd_column: int | None = None,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        if min_scale > max_scale or min_aspect_ratio > max_aspect_ratio:
            raise ValueError(f"RandomIoUCrop: need min <= max, got scale ({min_scale}, {max_scale}), "
                             f"aspect ratio ({min_aspect_ratio}, {max_aspect_ratio})")
        self.min_scale, self.max_scale = min_scale, max_scale
        self.min_aspect_ratio, self.max_aspect_ratio = min_aspect_ratio, max_aspect_ratio
        self.sampler_options = tuple(sampler_options)
        self.trials = trials
        self.max_rounds = max_rounds
        self.crowd_column = crowd_column

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_scale", "max_scale", "min_aspect_ratio", "max_aspect_ratio", "sampler_options",
                "trials", "max_rounds", "crowd_column")

    @property
    def targets_as_params(self) -> list[str]:
        return ["image"]

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        whole = {"crop_coords": (0, 0, w, h), "keep": None, "min_iou": None}
        bboxes = data.get("bboxes")
        bboxes = np.zeros((0, 4), np.float32) if bboxes is None or len(bboxes) == 0 else np.asarray(bboxes)
        boxes = bboxes[:, :4] * np.array([w, h, w, h], dtype=np.float32)
        crowd = _crowd_mask(bboxes, self.crowd_column)
        objects = ~crowd
        cx = 0.5 * (boxes[:, 0] + boxes[:, 2])
        cy = 0.5 * (boxes[:, 1] + boxes[:, 3])
        rnd = self.py_random
        span = self.max_scale - self.min_scale
        for _ in range(self.max_rounds):
            min_iou = rnd.choice(self.sampler_options)
            if min_iou is None or min_iou >= 1.0:
                return whole
            for _ in range(self.trials):
                new_w = int(w * (self.min_scale + span * rnd.random()))
                new_h = int(h * (self.min_scale + span * rnd.random()))
                if new_w < 1 or new_h < 1 or not (self.min_aspect_ratio <= new_w / new_h <= self.max_aspect_ratio):
                    continue
                left = int((w - new_w) * rnd.random())
                top = int((h - new_h) * rnd.random())
                right, bottom = left + new_w, top + new_h
                inside = objects & (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
                if objects.any():
                    if not inside.any():
                        continue
                    if _box_iou(boxes[inside], (left, top, right, bottom)).max() < min_iou:
                        continue
                overlaps = crowd & (boxes[:, 0] < right) & (boxes[:, 2] > left) & (boxes[:, 1] < bottom) & (boxes[:, 3] > top)
                return {"crop_coords": (left, top, right, bottom), "keep": inside | overlaps, "min_iou": min_iou}
        return whole

    def apply(self, img: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        x1, y1, x2, y2 = crop_coords
        return img[y1:y2, x1:x2]

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], keep: np.ndarray | None = None,
                        **params: Any) -> np.ndarray:
        if len(bboxes) == 0:
            return bboxes
        if keep is not None:
            bboxes = bboxes[keep]
        h, w = params["shape"][:2]
        x1, y1, x2, y2 = crop_coords
        out = bboxes.astype(np.float32, copy=True)
        # normalized to the image -> pixels -> shifted -> normalized to the crop
        out[:, [0, 2]] = (out[:, [0, 2]] * w - x1) / (x2 - x1)
        out[:, [1, 3]] = (out[:, [1, 3]] * h - y1) / (y2 - y1)
        return out


class ZoomOut(A.DualTransform):
    """SSD's zoom-out (torchvision ``transforms.v2.RandomZoomOut``) for albumentations.

    Places the image at a random position on a canvas ``r`` times its size, ``r`` uniform in
    ``side_range``, filled with ``fill`` (one value or one per channel, e.g. the dataset mean).

    Targets: image, mask (filled with 0), bboxes.
    """

    _targets = (Targets.IMAGE, Targets.MASK, Targets.BBOXES)

    class InitSchema(BaseTransformInitSchema):
        fill: float | tuple[float, ...]
        side_range: tuple[float, float]

    def __init__(self, fill: float | Sequence[float] = 0.0, side_range: tuple[float, float] = (1.0, 4.0), p: float = 0.5):
        super().__init__(p=p)
        if not 1.0 <= side_range[0] <= side_range[1]:
            raise ValueError(f"ZoomOut: side_range must satisfy 1 <= min <= max, got {side_range}")
        self.fill = fill if isinstance(fill, (int, float)) else tuple(fill)
        self.side_range = tuple(side_range)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fill", "side_range")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        rnd = self.py_random
        r = rnd.uniform(*self.side_range)
        canvas_w, canvas_h = int(w * r), int(h * r)
        left = int((canvas_w - w) * rnd.random())
        top = int((canvas_h - h) * rnd.random())
        return {"canvas": (canvas_h, canvas_w), "offset": (left, top)}

    def _paste(self, img: np.ndarray, canvas: tuple[int, int], offset: tuple[int, int], fill: Any) -> np.ndarray:
        h, w = img.shape[:2]
        left, top = offset
        out = np.empty((*canvas, *img.shape[2:]), dtype=img.dtype)
        f = np.asarray(fill, dtype=np.float64).reshape(-1)
        out[...] = f[: img.shape[2]] if img.ndim == 3 and f.size > 1 else f[0]
        out[top:top + h, left:left + w] = img
        return out

    def apply(self, img: np.ndarray, canvas: tuple[int, int], offset: tuple[int, int], **params: Any) -> np.ndarray:
        return self._paste(img, canvas, offset, self.fill)

    def apply_to_mask(self, mask: np.ndarray, canvas: tuple[int, int], offset: tuple[int, int], **params: Any) -> np.ndarray:
        return self._paste(mask, canvas, offset, 0)

    def apply_to_bboxes(self, bboxes: np.ndarray, canvas: tuple[int, int], offset: tuple[int, int], **params: Any) -> np.ndarray:
        if len(bboxes) == 0:
            return bboxes
        h, w = params["shape"][:2]
        ch, cw = canvas
        left, top = offset
        out = bboxes.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] * w + left) / cw
        out[:, [1, 3]] = (out[:, [1, 3]] * h + top) / ch
        return out


# ----------------------------------------------------------------------------- resize / normalize


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 ``(x / 255 - mean) / std`` (mean/std on [0, 1])."""
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    out = np.empty(chw.shape, dtype=np.float32)
    for c in range(chw.shape[0]):  # per-channel numpy ufuncs: no temporaries, no thread pool
        np.multiply(chw[c], np.float32(1.0 / (255.0 * std[c])), out=out[c], casting="unsafe")
        np.subtract(out[c], np.float32(mean[c] / std[c]), out=out[c])
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------- presets


def _photometric(p: float = 0.5) -> A.BaseCompose:
    """SSD photometric distortion with torchvision's ``RandomPhotometricDistort`` ranges."""

    def jitter(**kw: Any) -> A.ColorJitter:
        args = {"brightness": (1.0, 1.0), "contrast": (1.0, 1.0), "saturation": (1.0, 1.0), "hue": (0.0, 0.0)}
        args.update(kw)
        return A.ColorJitter(**args, p=p)

    def contrast() -> A.ColorJitter:
        return jitter(contrast=(0.5, 1.5))

    def sat_hue() -> list[A.ColorJitter]:
        return [jitter(saturation=(0.5, 1.5)), jitter(hue=(-0.05, 0.05))]

    # brightness, then contrast either before or after saturation and hue
    return A.Sequential([
        jitter(brightness=(0.875, 1.125)),
        A.OneOf([A.Sequential([contrast(), *sat_hue()], p=1.0), A.Sequential([*sat_hue(), contrast()], p=1.0)], p=1.0),
    ], p=1.0)


def build_augmentation(preset: str, fill: Sequence[float] = (127, 127, 127), seed: int | None = 0) -> A.Compose | None:
    """The albumentations pipeline of a preset (None for ``"none"``).

    Call it as ``aug(image=uint8 RGB, bboxes=(G, 4) xyxy pixels, labels=(G,), iscrowd=(G,) uint8)``.
    ``fill`` is the zoom-out canvas colour (uint8 RGB).
    """
    if preset not in PRESETS:
        raise ValueError(f"data.augment={preset!r} is not one of {list(PRESETS)}")
    if preset == "none":
        return None
    steps: list[A.BasicTransform | A.BaseCompose] = []
    if preset == "ssd":
        steps += [_photometric(), ZoomOut(fill=tuple(float(f) for f in fill), side_range=(1.0, 4.0), p=0.5)]
    steps += [RandomIoUCrop(crowd_column=_CROWD_COLUMN), A.HorizontalFlip(p=0.5)]
    compose = A.Compose(
        steps,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=list(_LABEL_FIELDS), min_width=1.0, min_height=1.0),
        seed=seed,
    )
    _reseed(compose, seed)
    return compose


def _reseed(compose: A.Compose, seed: int | None) -> None:
    # One random stream shared by all steps: Compose(seed=...) gives every step its own
    # generator with the same seed, whose draws are then correlated across steps.
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))


class DetectionTransform:
    """``(image, boxes, labels, iscrowd) -> (tensor (3, H, W) float32, boxes (G, 4), labels (G,), iscrowd (G,))``.

    Input: ``image`` (h, w, 3) uint8 RGB, ``boxes`` (G, 4) float32 xyxy pixels of ``image``,
    ``labels`` (G,) int, ``iscrowd`` (G,) bool. Output boxes are xyxy pixels of the network
    input (H, W); labels int64 and iscrowd bool tensors. Boxes cut to under 1 px by a crop are
    dropped with their labels.
    """

    def __init__(self, augmentation: A.Compose | None, input_size: tuple[int, int], resize: str = "stretch",
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5), pad_value: int = 114):
        self.augmentation = augmentation
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.resize = resize
        self.mean, self.std = tuple(mean), tuple(std)
        self.pad_value = int(pad_value)
        resize_geometry((1, 1), self.input_size, resize)  # validates the mode

    def set_random_seed(self, seed: int | None) -> None:
        """Restart the augmentation's random stream (called per DataLoader worker)."""
        if self.augmentation is not None:
            _reseed(self.augmentation, seed)

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, iscrowd: np.ndarray
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        iscrowd = np.asarray(iscrowd, dtype=bool).reshape(-1)
        if self.augmentation is not None:
            out = self.augmentation(image=image, bboxes=boxes, labels=labels, iscrowd=iscrowd.astype(np.uint8))
            image = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
            iscrowd = np.asarray(out["iscrowd"], dtype=np.float32).reshape(-1) > 0.5
        image, geo = resize_image(image, self.input_size, self.resize, self.pad_value)
        boxes = boxes * np.array([geo.scale_x, geo.scale_y, geo.scale_x, geo.scale_y], dtype=np.float32)
        np.clip(boxes, 0, np.array([geo.new_w, geo.new_h, geo.new_w, geo.new_h], dtype=np.float32), out=boxes)  # float32 rounding
        return (normalize(image, self.mean, self.std), torch.from_numpy(boxes), torch.from_numpy(labels),
                torch.from_numpy(iscrowd))

    def __repr__(self) -> str:
        return (f"DetectionTransform(augmentation={self.augmentation!r}, input_size={self.input_size}, "
                f"resize={self.resize!r}, mean={self.mean}, std={self.std})")


def build_transforms(cfg: Any, train: bool, seed: int | None = None) -> DetectionTransform:
    """The sample transform of a :class:`ssdlite.config.Config`: ``data.augment`` when ``train``
    (none for evaluation), then ``preprocess`` resize/normalize to ``model.input_size``.

    ``seed`` defaults to ``cfg.train.seed``; DataLoader workers reseed it per worker
    (:func:`ssdlite.data.loader.seed_worker`) or per sample via ``set_random_seed``.
    """
    pre = cfg.preprocess
    fill = tuple(round(255 * m) for m in pre.mean)
    seed = cfg.train.seed if seed is None else seed
    aug = build_augmentation(cfg.data.augment, fill=fill, seed=seed) if train else None
    return DetectionTransform(aug, tuple(cfg.model.input_size), pre.resize, pre.mean, pre.std, pre.pad_value)
