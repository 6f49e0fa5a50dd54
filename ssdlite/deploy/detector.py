"""Inference: frames in, :class:`Detections` out, with a PyTorch or an ONNX Runtime back end.

Both back ends share one preprocess (OpenCV resize, normalization by table lookup) and one
postprocess (``ssdlite.model.postprocess``); the torch back end never imports onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from functools import lru_cache
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ssdlite.config import Config, PreprocessConfig
from ssdlite.data.names import class_names_of
from ssdlite.data.images import resize_image

__all__ = ["Detections", "Detector", "preprocess", "normalize_table", "Letterbox", "COLOR_ORDERS"]


@dataclass
class Detections:
    """Detections of one image.

    boxes: (N, 4) float32 xyxy, absolute pixels of the image given to the detector.
    scores: (N,) float32, descending. labels: (N,) int64, 0-based class indices.
    names: the class name of each detection.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.scores)

    def to_list(self) -> list[dict]:
        """JSON-friendly rows: ``{"box": [x1, y1, x2, y2], "score", "label", "name"}``."""
        return [
            {"box": [float(v) for v in b], "score": float(s), "label": int(lab), "name": n}
            for b, s, lab, n in zip(self.boxes, self.scores, self.labels, self.names)
        ]


@dataclass(frozen=True)
class Letterbox:
    """How an image was mapped to the network input: ``input = image * (sx, sy)`` (top-left aligned)."""

    sx: float
    sy: float
    width: int  # of the original image
    height: int

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) xyxy in network-input pixels -> the original image's pixels, clipped to it."""
        out = boxes / np.array([self.sx, self.sy, self.sx, self.sy], dtype=np.float32)
        size = np.array([self.width, self.height, self.width, self.height], dtype=np.float32)
        return np.minimum(np.maximum(out, np.float32(0.0), out=out), size, out=out).astype(np.float32, copy=False)


COLOR_ORDERS = ("rgb", "bgr")


def _check_image(image: Any, index: int) -> np.ndarray:
    """The (H, W, 3) uint8 view of one input image; ``ValueError`` naming the image and the fault.

    Accepted as documented: (H, W) or (H, W, 1) grayscale (replicated to 3 channels), (H, W, 4)
    with alpha (alpha dropped), non-contiguous views, any size from 1x1 up (resized to the network
    input; an 8000x8000 frame works, with no full-size copy unless it is grayscale). Refused with
    a ``ValueError``: other shapes (a (3, H, W) array gets a transpose hint), empty arrays,
    non-uint8 dtypes (float images are ambiguous: 0..1 or 0..255).
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image {index}: expected a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}")
    if image.size == 0:
        raise ValueError(f"image {index}: empty image of shape {image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:  # (H, W, 1) grayscale
        image = image[:, :, 0]
    if image.ndim == 2:  # grayscale: replicate
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        hint = ""
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] > 4:
            hint = "; this looks channels-first: pass image.transpose(1, 2, 0)"
        raise ValueError(f"image {index}: expected shape (H, W, 3) RGB, got {image.shape}{hint}")
    if image.shape[2] == 4:  # RGBA: drop alpha
        image = image[:, :, :3]
    if image.dtype != np.uint8:
        raise ValueError(
            f"image {index}: expected dtype uint8 (0..255), got {image.dtype}; convert with (img * 255).clip(0, 255).astype(np.uint8)"
        )
    return image


@lru_cache(maxsize=16)
def normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: ``(v / 255 - mean[c]) / std[c]`` for every uint8 value ``v`` and channel ``c``.

    Computed with float32 operations in torchvision's order (``ToTensor``'s ``/ 255``, then
    ``Normalize``'s ``- mean``, ``/ std``), each correctly rounded, so looking a pixel up gives the
    very bits that computing it would (tests/test_preprocess.py checks all 256 values). Read-only.
    """
    v = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    table = (v - np.asarray(mean, dtype=np.float32)[:, None]) / np.asarray(std, dtype=np.float32)[:, None]
    table = np.ascontiguousarray(table, dtype=np.float32)
    table.flags.writeable = False
    return table


def preprocess(
    images: Sequence[np.ndarray], input_size: tuple[int, int], cfg: PreprocessConfig, color: str = "rgb"
) -> tuple[np.ndarray, list[Letterbox]]:
    """uint8 images (H, W, 3) -> float32 batch (N, 3, H_in, W_in) normalized (RGB), and each image's mapping.

    ``color``: the channel order of the inputs, ``"rgb"`` or ``"bgr"`` (OpenCV's order: the
    channels are swapped after resizing, which gives the same batch as converting first).
    ``stretch`` resizes to the input size (torchvision's behaviour); ``letterbox`` scales by
    ``min(H_in / h, W_in / w)`` and pads bottom/right with ``cfg.pad_value``. Resizing uses
    ``cv2.INTER_LINEAR`` as the training pipeline does. See :func:`_check_image` for what is accepted.

    Normalization ``(x / 255 - mean) / std`` (torchvision's float32 order of operations) is a
    256-entry table per channel (:func:`normalize_table`): bit-identical values, one pass that
    also does the HWC -> CHW transpose and the channel swap.
    """
    if not isinstance(color, str) or color.lower() not in COLOR_ORDERS:
        raise ValueError(f"color={color!r} is not one of {list(COLOR_ORDERS)} (the channel order of the input images)")
    bgr = color.lower() == "bgr"
    if len(images) == 0:
        raise ValueError("no images given")
    h_in, w_in = input_size
    batch = np.empty((len(images), 3, h_in, w_in), dtype=np.float32)
    table = normalize_table(tuple(cfg.mean), tuple(cfg.std))
    maps = []
    for i, image in enumerate(images):
        image = _check_image(image, i)
        resized, geo = resize_image(image, (h_in, w_in), cfg.resize, cfg.pad_value)
        maps.append(Letterbox(geo.scale_x, geo.scale_y, image.shape[1], image.shape[0]))
        planes = cv2.split(resized)  # HWC -> 3 uint8 planes (small: the network input's size)
        for c in range(3):  # each plane through its channel's table, straight into the batch (CHW, RGB)
            cv2.LUT(planes[2 - c] if bgr else planes[c], table[c], dst=batch[i, c])
    return batch, maps


class _TorchRunner:
    """Runs the network in PyTorch: BN folded, channels_last, inference mode.

    Like every runner it also says what its outputs mean: ``anchors`` ((A, 4) xyxy input px),
    ``box_weights``, ``classification`` and ``feature_sizes``, all read from the model.
    """

    def __init__(self, model: Any, device: str = "cpu", threads: int | None = None, fold_bn: bool = True) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device(device)
        model = model.eval().to(self.device)
        if fold_bn:
            from ssdlite.deploy.fuse import fuse_conv_bn

            model = fuse_conv_bn(model)
        self.model = model.to(memory_format=torch.channels_last)
        self.input_size = model.input_size
        self.feature_sizes = model.feature_sizes(model.input_size)
        self.anchors = model.anchors()
        self.box_weights = model.box_weights
        self.classification = model.classification

    def __call__(self, batch: np.ndarray):
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
            cls_logits, box_deltas = self.model(x)
        return cls_logits.float().cpu(), box_deltas.float().cpu()


class Detector:
    """A detector ready to run on frames.

    >>> det = Detector.from_checkpoint("model.pt")                 # or a .onnx, backend="onnxruntime"
    >>> out = det([image_rgb_uint8])                                # list[Detections], boxes in image pixels

    Args:
        model: an ``SSDLite`` network (torch back end) or ``None`` with ``runner`` given.
        cfg: the model's config (input size, preprocess, anchors, postprocess settings).
        score_thresh, nms_thresh, detections_per_img: override ``cfg.postprocess``.
        runner: a callable ``batch (N,3,H,W) float32 -> (cls_logits, box_deltas)`` that also
            declares what those outputs mean (``anchors``, ``box_weights``, ``classification``), as
            the ONNX Runtime back end does from its file's metadata.
    """

    def __init__(
        self,
        model: Any,
        cfg: Config,
        *,
        device: str = "cpu",
        threads: int | None = None,
        score_thresh: float | None = None,
        nms_thresh: float | None = None,
        detections_per_img: int | None = None,
        runner: Callable[[np.ndarray], Any] | None = None,
        fold_bn: bool = True,
    ) -> None:
        import torch

        changes = {
            k: v
            for k, v in dict(score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img).items()
            if v is not None
        }
        if changes:
            from ssdlite.config import from_dict, to_dict

            cfg = from_dict(to_dict(replace(cfg, postprocess=replace(cfg.postprocess, **changes))))  # re-validated
        self.cfg = cfg
        self.class_names = class_names_of(cfg.model)
        self.input_size = tuple(cfg.model.input_size)
        if runner is None:
            if model is None:
                raise ValueError("Detector needs a model or a runner")
            runner = _TorchRunner(model, device=device, threads=threads, fold_bn=fold_bn)
            self.backend = "torch"
        else:
            self.backend = getattr(runner, "name", "custom")
            if self.backend != "torch":
                # the postprocess is tiny: a second torch thread pool only fights ONNX Runtime's threads
                torch.set_num_threads(1)
        self.runner = runner
        self.precision: str = getattr(runner, "precision", "fp32")  # what the network's arithmetic runs in
        self.backend_choice = None  # backend="auto": the Choice (which back end, why)
        own = tuple(getattr(runner, "input_size", self.input_size))
        if own != self.input_size:
            raise ValueError(f"the config's model.input_size {list(self.input_size)} is not the network's {list(own)}")
        # what the raw outputs mean comes with them, from the model or the exported file
        anchors = runner.anchors
        self.anchors = anchors if isinstance(anchors, torch.Tensor) else torch.from_numpy(np.asarray(anchors, dtype=np.float32))
        self.box_weights = tuple(runner.box_weights)
        self.classification = runner.classification

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        backend: str | None = None,
        *,
        device: str = "cpu",
        threads: int | None = None,
        overrides: Sequence[str] = (),
        weights_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> "Detector":
        """A detector from an ssdlite ``.pt`` checkpoint (torch), an exported ``.onnx`` (onnxruntime) or
        the name of published weights (``"coco"``, see ``ssdlite weights``: downloaded into
        ``weights_dir`` or the torch.hub cache, verified, converted once).

        ``backend``: one of :data:`ssdlite.deploy.backends.BACKENDS`; by default the one that runs
        the file's kind (``"onnxruntime"`` for ``.onnx``, ``"torch"`` for checkpoints). ``"auto"``:
        the fastest installed back end for the file on this machine, measured once (a few seconds)
        and cached (:mod:`ssdlite.deploy.auto`); for a ``.pt`` checkpoint that is torch, since the
        other back ends run an export (``ssdlite export``). ``det.backend_choice`` says why.
        """
        from ssdlite.model.pretrained import resolve_checkpoint

        path = resolve_checkpoint(path, weights_dir)
        from ssdlite.deploy.backends import check_backend, default_backend, make_runner

        choice = None
        if backend == "auto":
            from ssdlite.deploy.auto import choose_backend

            choice = choose_backend(path, threads)
            backend = choice.backend
        backend = backend or default_backend(path)
        check_backend(backend, path)
        if backend != "torch":
            runner = make_runner(backend, path, threads=threads)
            det = cls(None, runner.config(overrides), runner=runner, **kwargs)
        else:
            from ssdlite.model.checkpoint import load_model

            model, cfg = load_model(path, overrides)
            det = cls(model, cfg, device=device, threads=threads, **kwargs)
        det.backend_choice = choice
        return det

    def raw(self, batch: np.ndarray):
        """Network outputs ``(cls_logits (N, A, C+1), box_deltas (N, A, 4))`` of a preprocessed batch."""
        return self.runner(batch)

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray, color: str = "rgb") -> list[Detections]:
        """Detect objects in uint8 images (H, W, 3); boxes come back in each image's pixels.

        ``images``: a list of images, or one image array ((H, W, 3), (H, W, 4) or (H, W) gray).
        ``color``: ``"rgb"`` (default) or ``"bgr"`` for frames straight from OpenCV. A wrong
        order cannot be detected from the pixels: it silently lowers accuracy.
        """
        if isinstance(images, np.ndarray) and images.ndim in (2, 3):
            images = [images]
        batch, maps = preprocess(images, self.input_size, self.cfg.preprocess, color=color)
        cls_logits, box_deltas = self.runner(batch)
        return self.postprocess(cls_logits, box_deltas, maps)

    def postprocess(self, cls_logits: Any, box_deltas: Any, maps: Sequence[Letterbox]) -> list[Detections]:
        """Raw outputs -> :class:`Detections` in each original image's pixels."""
        from ssdlite.model.postprocess import postprocess_numpy

        results = postprocess_numpy(
            cls_logits,
            box_deltas,
            self.anchors,
            self.input_size,
            self.cfg.postprocess,
            classification=self.classification,
            box_weights=self.box_weights,
        )
        return [
            Detections(boxes=m.to_image(boxes), scores=scores, labels=labels, names=[self.class_names[i] for i in labels.tolist()])
            for (boxes, scores, labels), m in zip(results, maps)
        ]
