"""Data: COCO / VOC / YOLO readers and conversion, the dataset, augmentation presets, batching and
the synthetic shapes set.

``read_split("voc", "VOCdevkit/VOC2012", split="val")`` (or ``"coco"``, ``"yolo"``) gives
``(image folder, CocoIndex)``, which ``CocoDetection(image_folder, index)`` takes like a json;
``convert_dataset(src, "yolo", dst)`` converts between the formats.

``CocoDetection(image_dir, annotation_json, transform=build_transforms(cfg, train=True))``
gives ``(image (3, H, W) float32, target)`` samples; ``build_loader(dataset, ...)`` batches
them into ``(images (N, 3, H, W), [target, ...])``. See :mod:`ssdlite.data.coco` for the
target contract and :mod:`ssdlite.data.problems` for the data faults that are counted.

Submodules load on first use, so ``from ssdlite.data import load_image`` does not import
albumentations.
"""

from __future__ import annotations

from ssdlite._lazy import lazy_attributes

_LAZY = {
    "CocoDetection": "ssdlite.data.coco",
    "read_split": "ssdlite.data.formats",
    "convert_dataset": "ssdlite.data.convert",
    "Problem": "ssdlite.data.problems",
    "load_image": "ssdlite.data.images",
    "build_loader": "ssdlite.data.loader",
    "collate": "ssdlite.data.loader",
    "seed_worker": "ssdlite.data.loader",
    "make_shapes_dataset": "ssdlite.data.synthetic",
    "DetectionTransform": "ssdlite.data.transforms",
    "RandomIoUCrop": "ssdlite.data.transforms",
    "ZoomOut": "ssdlite.data.transforms",
    "build_augmentation": "ssdlite.data.transforms",
    "build_transforms": "ssdlite.data.transforms",
    "normalize": "ssdlite.data.transforms",
    "resize_geometry": "ssdlite.data.images",
    "resize_image": "ssdlite.data.images",
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
