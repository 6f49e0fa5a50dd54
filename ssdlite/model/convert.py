"""Import torchvision's ``ssdlite320_mobilenet_v3_large`` weights into an ssdlite checkpoint.

torchvision splits the MobileNetV3 backbone at the C4 expansion layer
(``backbone.features.0`` = features[:13] + features[13].block[0], ``backbone.features.1`` =
features[13].block[1:] + features[14:]); our backbone keeps torchvision's classification names
(``features.N...``) and taps the same layer, so conversion is a renaming. The result uses the
``torchvision`` anchor layout and the 91-way COCO ids (our 90 classes = ids 1..90, "N/A" gaps).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ssdlite.data.names import COCO90_IDS, COCO90_NAMES
from ssdlite.config import Config, from_dict

__all__ = ["torchvision_config", "convert_torchvision_state_dict", "convert_torchvision_file"]

C4 = 13  # index of torchvision's C4 block (first stride-32 bottleneck) in mobilenet_v3_large.features


def torchvision_config(input_size: tuple[int, int] = (320, 320)) -> Config:
    """The config equivalent to ``ssdlite320_mobilenet_v3_large(num_classes=91)`` (reduced tail)."""
    return from_dict(
        {
            "model": {
                "backbone": {"name": "mobilenet_v3_large", "reduced_tail": True, "width_mult": 1.0},
                "num_classes": len(COCO90_IDS),
                "class_names": list(COCO90_NAMES),
                "category_ids": list(COCO90_IDS),
                "input_size": list(input_size),
                "anchors": {"layout": "torchvision", "aspect_ratios": [[2.0, 3.0]] * 6, "clip": True},
            },
            "postprocess": {"score_thresh": 0.001, "topk_candidates": 300, "nms_thresh": 0.55, "detections_per_img": 300},
            "preprocess": {"resize": "stretch", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        }
    )


_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^backbone\.features\.0\.(\d+)\.(.*)$"), "features"),
    (re.compile(r"^backbone\.features\.1\.(\d+)\.(.*)$"), "tail"),
    (re.compile(r"^backbone\.extra\.(.*)$"), "extras.{0}"),
    (re.compile(r"^head\.classification_head\.module_list\.(.*)$"), "cls_heads.{0}"),
    (re.compile(r"^head\.regression_head\.module_list\.(.*)$"), "box_heads.{0}"),
]


def _rename(key: str) -> str:
    for pattern, target in _RULES:
        m = pattern.match(key)
        if not m:
            continue
        if target == "features":
            i, rest = int(m.group(1)), m.group(2)
            return f"backbone.features.{i}.{rest}" if i < C4 else f"backbone.features.{C4}.block.0.{rest}"
        if target == "tail":
            i, rest = int(m.group(1)), m.group(2)
            if i == 0:  # the rest of the C4 block: block[1:] (a Sequential slice keeps its child names)
                return f"backbone.features.{C4}.block.{rest}"
            return f"backbone.features.{C4 + i}.{rest}"
        return target.format(m.group(1))
    raise ValueError(f"unexpected tensor {key!r}: not part of torchvision's ssdlite320_mobilenet_v3_large")


def convert_torchvision_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision SSD state dict -> our ``SSDLite`` state dict (tensors shared, keys renamed)."""
    return {_rename(k): v for k, v in state.items()}


def convert_torchvision_file(src: str | Path, dst: str | Path) -> Config:
    """Read a torchvision state-dict file (``weights_only=True``), write our checkpoint to ``dst``.

    Every tensor must fit: a file of another architecture raises ``ValueError`` naming the tensor.
    """
    from backbones._weights import read_state_dict
    from ssdlite.model.checkpoint import load_state_dict_strict, save_checkpoint
    from ssdlite.model import build_model

    state = read_state_dict(src)
    cfg = torchvision_config()
    model = build_model(cfg)
    load_state_dict_strict(model, convert_torchvision_state_dict(state), f"torchvision file {src}")
    save_checkpoint(dst, model, cfg, source=f"torchvision ssdlite320_mobilenet_v3_large: {Path(src).name}")
    return cfg
