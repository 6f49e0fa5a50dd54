"""The config schema: one frozen dataclass per section, and the range checks types cannot express.

Every field is a config key (``model.backbone.name`` is ``Config.model.backbone.name``); the
comments beside the fields are the reference for what each key means. Reading YAML, overrides and
the dict form live in :mod:`ssdlite.config.loader`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BackboneConfig", "AnchorConfig", "ModelConfig", "PreprocessConfig", "LossConfig", "PostprocessConfig",
    "SplitConfig", "DataConfig", "TrainConfig", "Config", "ConfigError", "check_values",
]


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it."""


@dataclass(frozen=True)
class BackboneConfig:
    name: str = "mobilenet_v3_large"  # any name of backbones.list_backbones() or "timm:<model>"
    width_mult: float = 1.0
    reduced_tail: bool = False
    # ImageNet classification weights: a state-dict file (torchvision's or ours), a registry name
    # (`ssdlite weights`) or "imagenet" (this backbone's default row); null: from scratch
    weights: str | None = None


@dataclass(frozen=True)
class AnchorConfig:
    # "paper": the TF Object Detection API layout the MobileNet papers used (3 boxes on the
    # lowest map, 6 elsewhere); "torchvision": DefaultBoxGenerator(aspect_ratios, 0.2, 0.95).
    layout: str = "paper"
    min_ratio: float = 0.2
    max_ratio: float = 0.95
    # "paper": the scale of the extra ratio-1 box of the lowest map (TF create_ssd_anchors: 0.1).
    # Lower it for datasets of many small objects (e.g. 0.05 = 16 px at 320, one stride-16 cell).
    lowest_scale: float = 0.1
    # Per feature map; r means the pair r and 1/r. "paper": the lowest map has (0.1, ratio 1) plus
    # scale_0 with these ratios (TF reduce_boxes_in_lowest_layer); other maps have ratio 1, these
    # ratios and the interpolated scale sqrt(s_k * s_k+1). "torchvision": DefaultBoxGenerator's rule.
    aspect_ratios: tuple[tuple[float, ...], ...] = ((2.0,),) + ((2.0, 3.0),) * 5
    clip: bool = True
    # Not in the papers: non-empty adds a prediction map on the backbone's stride-8 features (before
    # the stride-16 one) with one square box per scale per location, e.g. [0.05, 0.075] = 16 and
    # 24 px at 320, for datasets of many objects below ~32 px. Empty: the papers' maps only.
    stride8_scales: tuple[float, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    num_classes: int = 80  # object classes, background excluded (logits have num_classes + 1)
    class_names: tuple[str, ...] = ()  # empty: COCO's 80 names when num_classes == 80, else class_<i>
    category_ids: tuple[int, ...] = ()  # dataset id of each label (COCO results); empty: COCO's ids / 1..C
    input_size: tuple[int, int] = (320, 320)  # (height, width)
    extra_channels: tuple[int, ...] = (512, 256, 256, 128)  # the four extra blocks, scaled by width_mult
    # The prediction layers (extra blocks and box / class predictors): "ssdlite" (MobileNetV2 paper:
    # depthwise-separable convolutions, TF use_depthwise true) or "ssd" (regular convolutions: extra
    # block = 1x1 to d/2 + 3x3 stride-2 to d, predictor = one k x k conv; TF use_depthwise false).
    head: str = "ssdlite"
    predictor_kernel: int = 3  # k of the box / class predictors (TF kernel_size): 3, or 1 (ssd_mobilenet_v1_coco)
    # With anchors.stride8_scales: add the stride-16 tap (1x1 conv, upsampled x2) to the stride-8 map
    # before its heads (FPN-style context for the shallow map). Not in the papers.
    stride8_top_down: bool = False
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    # What the raw outputs mean, for the loss, the postprocess and export alike (until version
    # 0.1 these two were loss.classification and loss.box_weights; old files are migrated):
    # "softmax" (background column 0, hard-negative mining) or "focal" (sigmoid per class)
    classification: str = "softmax"
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # box coder (wx, wy, ww, wh)


@dataclass(frozen=True)
class PreprocessConfig:
    resize: str = "stretch"  # "stretch" (torchvision) or "letterbox" (keeps the aspect ratio)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # on [0, 1] RGB
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    pad_value: int = 114  # letterbox border, uint8


@dataclass(frozen=True)
class LossConfig:
    neg_pos_ratio: int = 3  # softmax: hard negatives per positive
    iou_threshold: float = 0.5
    focal_alpha: float = 0.75
    focal_gamma: float = 2.0
    bbox_loss_weight: float = 1.0


@dataclass(frozen=True)
class PostprocessConfig:
    score_thresh: float = 0.001
    topk_candidates: int = 300  # per class, before NMS
    nms_thresh: float = 0.55
    detections_per_img: int = 300


@dataclass(frozen=True)
class SplitConfig:
    # "coco": images + annotations; "voc": root (+ split, classes); "yolo": root = the data.yaml + split
    format: str = "coco"
    images: str | None = None  # coco: the folder the json's file_name entries are relative to
    annotations: str | None = None  # coco: the instances json
    root: str | None = None  # voc: the folder of Annotations/, JPEGImages/, ImageSets/; yolo: the data.yaml
    # voc: ImageSets/Main/<split>.txt or a list file of ids (empty: every xml); yolo: train, val or test
    split: str | None = None
    classes: tuple[str, ...] = ()  # voc: class names in label order (empty: the names found, sorted)


@dataclass(frozen=True)
class DataConfig:
    train: SplitConfig = field(default_factory=SplitConfig)
    val: SplitConfig = field(default_factory=SplitConfig)
    augment: str = "ssdlite"  # "ssdlite" (min-IoU crop + flip), "ssd" (+ photometric, zoom-out) or "none"
    keep_empty: bool = True  # keep images without boxes as negatives


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 600
    batch_size: int = 24  # per process
    lr: float = 0.15  # for the reference total batch below; scaled linearly by the real total batch
    reference_batch: int = 192
    optimizer: str = "sgd"  # "sgd" (momentum) or "adamw" (betas (momentum, 0.999))
    momentum: float = 0.9
    weight_decay: float = 4e-5
    norm_weight_decay: float = 0.0  # BN weights and all biases
    warmup_epochs: float = 5.0
    workers: int = 4
    time_budget_s: float = 0.0  # 0: no budget; otherwise stop cleanly, evaluate and save
    ema: bool = False
    ema_decay: float = 0.9998
    clip_grad_norm: float = 0.0  # 0: off
    seed: int = 0
    deterministic: bool = False
    amp: bool = True  # only on CUDA
    channels_last: bool = True
    sync_bn: bool = False
    eval_every: int = 1  # epochs
    max_nonfinite: int = 20  # consecutive non-finite losses before the run stops


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ----------------------------------------------------------------------------- checks

# Backbone maps of the papers' SSDLite, len(backbones.DEFAULT_OUT_STRIDES) (strides 16 and 32; the
# config cannot import backbones, which needs torch: tests/test_config.py checks they agree).
PAPER_TAPS = 2

_CHOICES: dict[str, tuple[str, ...]] = {
    "model.anchors.layout": ("paper", "torchvision"),
    "preprocess.resize": ("stretch", "letterbox"),
    "model.classification": ("softmax", "focal"),
    "model.head": ("ssdlite", "ssd"),
    "data.augment": ("ssdlite", "ssd", "none"),
    "data.train.format": ("coco", "voc", "yolo"),  # ssdlite.data.formats.FORMAT_NAMES (tests check they agree)
    "data.val.format": ("coco", "voc", "yolo"),
    "train.optimizer": ("sgd", "adamw"),
}


def check_values(cfg: Config) -> None:
    """Range checks that the types alone cannot express."""
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of {list(choices)}")

    def need(ok: bool, key: str, rule: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={_get(cfg, key)!r} is out of range: must be {rule}")

    m, t, p, loss = cfg.model, cfg.train, cfg.postprocess, cfg.loss
    for name in ("train", "val"):
        _check_split(getattr(cfg.data, name), f"data.{name}")
    need(m.backbone.width_mult > 0, "model.backbone.width_mult", "> 0")
    need(m.num_classes >= 1, "model.num_classes", ">= 1")
    need(
        not m.class_names or len(m.class_names) == m.num_classes,
        "model.class_names",
        f"empty or exactly model.num_classes={m.num_classes} names",
    )
    need(
        not m.category_ids or len(m.category_ids) == m.num_classes,
        "model.category_ids",
        f"empty or exactly model.num_classes={m.num_classes} ids",
    )
    need(len(m.input_size) == 2 and min(m.input_size) >= 32, "model.input_size", "[height, width], each >= 32")
    need(m.predictor_kernel in (1, 3), "model.predictor_kernel", "1 or 3")
    need(len(m.extra_channels) >= 1 and min(m.extra_channels) > 0, "model.extra_channels", "positive channel counts")
    n_maps = PAPER_TAPS + len(m.extra_channels)
    need(len(m.anchors.aspect_ratios) == n_maps, "model.anchors.aspect_ratios",
         f"one list per feature map from stride 16 on ({n_maps}: {PAPER_TAPS} backbone taps + {len(m.extra_channels)} extra blocks)")
    need(all(0 < s <= 1 for s in m.anchors.stride8_scales), "model.anchors.stride8_scales", "scales in (0, 1]")
    need(not m.stride8_top_down or bool(m.anchors.stride8_scales), "model.stride8_top_down",
         "false unless model.anchors.stride8_scales adds the stride-8 map")
    need(0 < m.anchors.min_ratio < m.anchors.max_ratio <= 1.5, "model.anchors.min_ratio", "0 < min_ratio < max_ratio")
    need(0 < m.anchors.lowest_scale <= 1.0, "model.anchors.lowest_scale", "0 < lowest_scale <= 1")
    need(all(w > 0 for w in m.box_weights), "model.box_weights", "4 positive numbers (wx, wy, ww, wh)")
    need(all(s > 0 for s in cfg.preprocess.std), "preprocess.std", "> 0")
    need(0 <= p.score_thresh <= 1, "postprocess.score_thresh", "in [0, 1]")
    need(0 < p.nms_thresh <= 1, "postprocess.nms_thresh", "in (0, 1]")
    need(p.topk_candidates >= 1, "postprocess.topk_candidates", ">= 1")
    need(p.detections_per_img >= 1, "postprocess.detections_per_img", ">= 1")
    need(0 < loss.iou_threshold <= 1, "loss.iou_threshold", "in (0, 1]")
    need(loss.neg_pos_ratio >= 0, "loss.neg_pos_ratio", ">= 0")
    need(0 <= loss.focal_alpha <= 1, "loss.focal_alpha", "in [0, 1]")
    need(loss.focal_gamma >= 0, "loss.focal_gamma", ">= 0")
    need(t.epochs >= 1, "train.epochs", ">= 1")
    need(t.batch_size >= 1, "train.batch_size", ">= 1")
    need(t.reference_batch >= 1, "train.reference_batch", ">= 1")
    need(t.lr > 0, "train.lr", "> 0")
    need(0 <= t.momentum < 1, "train.momentum", "in [0, 1)")
    need(t.weight_decay >= 0, "train.weight_decay", ">= 0")
    need(t.norm_weight_decay >= 0, "train.norm_weight_decay", ">= 0")
    need(t.warmup_epochs >= 0, "train.warmup_epochs", ">= 0")
    need(t.workers >= 0, "train.workers", ">= 0")
    need(t.time_budget_s >= 0, "train.time_budget_s", ">= 0 (0 means no budget)")
    need(0 < t.ema_decay < 1, "train.ema_decay", "in (0, 1)")
    need(t.clip_grad_norm >= 0, "train.clip_grad_norm", ">= 0 (0 means off)")
    need(t.eval_every >= 1, "train.eval_every", ">= 1")
    need(t.max_nonfinite >= 1, "train.max_nonfinite", ">= 1")


# the keys each dataset format uses (the others must stay unset)
_SPLIT_KEYS = {"coco": ("images", "annotations"), "voc": ("root", "split", "classes"), "yolo": ("root", "split")}


def _check_split(split: SplitConfig, key: str) -> None:
    """A split names its dataset with its format's keys only; YOLO splits are train, val or test."""
    used = _SPLIT_KEYS[split.format]
    for k in ("images", "annotations", "root", "split", "classes"):
        if getattr(split, k) and k not in used:
            raise ConfigError(f"{key}.{k} does not apply to {key}.format={split.format!r} (it uses {', '.join(used)})")
    if split.format == "yolo" and split.root and split.split not in (None, "train", "val", "test"):
        raise ConfigError(f"{key}.split={split.split!r} is not a YOLO split; choose one of ['train', 'val', 'test']")
    if len(set(split.classes)) != len(split.classes):
        raise ConfigError(f"{key}.classes={list(split.classes)!r} repeats a name")


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg
