"""The SSDLite network: backbone taps -> four extra blocks -> depthwise-separable prediction heads
(or, with ``model.head: ssd``, the regular-convolution SSD prediction layers of the MobileNetV1 paper).

Follows the MobileNetV2 paper (section 6.2) and torchvision's ``models/detection/ssdlite.py``:
the forward pass returns raw tensors only; box decoding and NMS live outside it
(``ssdlite.model.postprocess``) so that export, the loss and both inference back ends share one
code path each. As torchvision's ``SSD`` does, the module owns what its outputs mean: its anchor
generator (:meth:`SSDLite.anchors`), the box coder's weights and the score function
(``classification``); the trainer, the ``Detector``, export and (through the exported file) the
ONNX Runtime back end all take them from here.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops.misc import Conv2dNormActivation

import backbones
from ssdlite.config import Config, ModelConfig
from ssdlite.model.anchors import AnchorGenerator
from ssdlite.model.box_coder import DEFAULT_WEIGHTS

__all__ = ["HEADS", "SSDLite", "build_model", "detection_norm_layer", "tap_strides"]

# BN as the TF reference trains SSDLite (decay 0.97, eps 1e-3); torchvision uses the same.
detection_norm_layer: Callable[..., nn.Module] = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.03)


def _normal_init(module: nn.Module, std: float = 0.03) -> None:
    """torchvision's SSDLite init: conv weights ~ N(0, 0.03), biases 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0.0)


HEADS = ("ssdlite", "ssd")  # model.head: depthwise-separable or regular prediction layers


def _extra_block(in_channels: int, out_channels: int, norm_layer: Callable[..., nn.Module], head: str = "ssdlite") -> nn.Sequential:
    """One extra feature map at half the resolution (TF ``multi_resolution_feature_maps`` with
    ``insert_1x1_conv``): 1x1 conv to d/2, then a 3x3 stride-2 step to d; BN + ReLU6 after each conv.

    ``ssdlite``: the 3x3 step is depthwise then a 1x1 conv to d (``use_depthwise`` true);
    ``ssd``: one regular 3x3 stride-2 conv to d (``use_depthwise`` false).
    """
    mid = out_channels // 2
    # pointwise reduction
    layers = [Conv2dNormActivation(in_channels, mid, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6)]
    if head == "ssd":
        # regular 3x3 stride-2 conv
        layers.append(Conv2dNormActivation(mid, out_channels, kernel_size=3, stride=2, norm_layer=norm_layer, activation_layer=nn.ReLU6))
    else:
        layers += [
            # depthwise downsampling (stride 2)
            Conv2dNormActivation(mid, mid, kernel_size=3, stride=2, groups=mid, norm_layer=norm_layer, activation_layer=nn.ReLU6),
            # pointwise expansion
            Conv2dNormActivation(mid, out_channels, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
        ]
    return nn.Sequential(*layers)


def _prediction_block(in_channels: int, out_channels: int, norm_layer: Callable[..., nn.Module], head: str = "ssdlite",
                      kernel_size: int = 3) -> nn.Sequential:
    """A box or class predictor (TF ``convolutional_box_predictor``, no layers before it); its last
    module is the conv with bias that produces the outputs.

    ``ssdlite``: k x k depthwise conv + BN + ReLU6, then a 1x1 conv (``use_depthwise`` true);
    ``ssd``: one regular k x k conv (``use_depthwise`` false; k = 1 in ``ssd_mobilenet_v1_coco``).
    """
    pad = kernel_size // 2
    if head == "ssd":
        # regular k x k prediction, with bias
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=pad))
    return nn.Sequential(
        # depthwise k x k
        Conv2dNormActivation(in_channels, in_channels, kernel_size=kernel_size, groups=in_channels, norm_layer=norm_layer,
                             activation_layer=nn.ReLU6),
        # pointwise prediction, with bias
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def _flatten_head(outputs: list[Tensor], k: int) -> Tensor:
    """Per-map head outputs (N, A_l*k, H, W) -> (N, sum_l H*W*A_l, k), torchvision's anchor order."""
    flat = []
    for out in outputs:
        n, _, h, w = out.shape
        out = out.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2)  # (N, H, W, A_l, k)
        flat.append(out.reshape(n, -1, k))
    return torch.cat(flat, dim=1)


class SSDLite(nn.Module):
    """SSDLite detector network.

    Args:
        backbone: a ``backbones.create(...)`` feature extractor declaring ``out_channels`` and
            ``strides`` of its taps, finest first: ``[16, 32]``, or ``[8, 16, 32]`` with the optional
            small-object map (``out_strides=tap_strides(model_cfg)``).
        num_classes: object classes, background excluded (logits have ``num_classes + 1`` columns,
            column 0 is background).
        anchor_generator: the default boxes of the ``len(backbone.strides) + len(extra_channels)``
            maps; its boxes per location set the heads' widths.
        extra_channels: output channels of the extra blocks on the stride-32 tap (already scaled).
        input_size: ``(H, W)`` of the network input the model is trained and exported at.
        box_weights: the box coder's ``(wx, wy, ww, wh)``: how ``box_deltas`` encode boxes.
        classification: ``"softmax"`` (column 0 is the background) or ``"focal"`` (independent
            sigmoid scores): how ``cls_logits`` become scores.
        norm_layer: normalization for the extras and heads.
        head: ``"ssdlite"`` (depthwise-separable extras and predictors, the MobileNetV2 paper's) or
            ``"ssd"`` (regular convolutions, as SSD and TF's ``ssd_mobilenet_v1_coco``).
        predictor_kernel: k of the k x k box / class predictors (1 or 3).
        top_down: with a stride-8 tap, add to it the stride-16 tap through a 1x1 conv + BN + ReLU6,
            upsampled x2 (nearest): the shallow stride-8 map gets deeper context, as in FPN (Lin et
            al. 2017). Not in the papers' SSDLite.

    ``forward(images (N, 3, H, W)) -> (cls_logits (N, A, C+1), box_deltas (N, A, 4))``;
    ``anchors()`` -> the ``(A, 4)`` xyxy input-pixel boxes those rows refer to.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        anchor_generator: AnchorGenerator,
        extra_channels: list[int],
        *,
        input_size: tuple[int, int] = (320, 320),
        box_weights: tuple[float, float, float, float] = DEFAULT_WEIGHTS,
        classification: str = "softmax",
        norm_layer: Callable[..., nn.Module] = detection_norm_layer,
        head: str = "ssdlite",
        predictor_kernel: int = 3,
        top_down: bool = False,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head={head!r} is not allowed; choose one of {list(HEADS)}")
        if predictor_kernel not in (1, 3):
            raise ValueError(f"predictor_kernel={predictor_kernel!r} is not allowed; choose 1 or 3")
        if classification not in ("softmax", "focal"):
            raise ValueError(f"classification={classification!r} is not allowed; choose 'softmax' or 'focal'")
        num_anchors = anchor_generator.num_anchors_per_location()
        tap_channels, strides = list(backbone.out_channels), list(backbone.strides)
        if len(tap_channels) != len(strides):
            raise ValueError(f"the backbone declares {len(tap_channels)} out_channels but {len(strides)} strides")
        map_channels = tap_channels + list(extra_channels)
        if len(num_anchors) != len(strides) + len(extra_channels):
            raise ValueError(
                f"num_anchors has {len(num_anchors)} entries but the model has {len(map_channels)} feature maps "
                f"({len(strides)} backbone taps at strides {strides} + {len(extra_channels)} extra blocks)"
            )
        self.backbone = backbone
        self.num_classes = num_classes
        # what the outputs mean (plain attributes: the state dict holds weights only)
        self.anchor_generator = anchor_generator
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.box_weights = tuple(float(w) for w in box_weights)
        self.classification = classification
        self.head, self.predictor_kernel = head, int(predictor_kernel)
        self.num_anchors = list(num_anchors)
        self.map_channels = map_channels
        # extra feature maps, each halving the resolution of the one before
        ins = [tap_channels[-1]] + list(extra_channels[:-1])
        self.extras = nn.ModuleList(_extra_block(i, o, norm_layer, head) for i, o in zip(ins, extra_channels))
        self.top_down: nn.Module | None = None
        if top_down:
            if strides[:2] != [8, 16]:
                raise ValueError(f"top_down needs backbone taps at strides 8 and 16 first, got strides {strides}")
            self.top_down = Conv2dNormActivation(
                tap_channels[1], tap_channels[0], kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6
            )
        # one classification and one box predictor per map
        predictor = partial(_prediction_block, norm_layer=norm_layer, head=head, kernel_size=predictor_kernel)
        self.cls_heads = nn.ModuleList(predictor(c, (num_classes + 1) * a) for c, a in zip(map_channels, num_anchors))
        self.box_heads = nn.ModuleList(predictor(c, 4 * a) for c, a in zip(map_channels, num_anchors))
        _normal_init(self.extras)
        if self.top_down is not None:
            _normal_init(self.top_down)
        _normal_init(self.cls_heads)
        _normal_init(self.box_heads)

    def features(self, images: Tensor) -> list[Tensor]:
        """The ``len(taps) + len(extras)`` feature maps, highest resolution first."""
        maps = list(self.backbone(images))
        if self.top_down is not None:
            maps[0] = maps[0] + F.interpolate(self.top_down(maps[1]), size=maps[0].shape[-2:], mode="nearest")
        x = maps[-1]
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"SSDLite expects images of shape (N, 3, H, W), got {tuple(images.shape)}")
        maps = self.features(images)
        cls_logits = _flatten_head([head(x) for head, x in zip(self.cls_heads, maps)], self.num_classes + 1)
        box_deltas = _flatten_head([head(x) for head, x in zip(self.box_heads, maps)], 4)
        return cls_logits, box_deltas

    def anchors(self, input_size: tuple[int, int] | None = None, device: torch.device | str | None = None) -> Tensor:
        """``(A, 4)`` float32 xyxy anchors in input pixels, in the order of the outputs' rows.

        ``input_size`` defaults to the model's; computed once per size and device (do not modify
        the result in place).
        """
        size = self.input_size if input_size is None else (int(input_size[0]), int(input_size[1]))
        return self.anchor_generator(size, self.feature_sizes(size), device)

    def feature_sizes(self, input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """(h, w) of every feature map for an input (H, W), from conv arithmetic (no forward pass).

        Every stride-2 layer of the MobileNets and the extras is a k x k conv with padding k // 2,
        so each halving rounds up; a backbone may override with ``feature_sizes(input_size)``.
        """
        if hasattr(self.backbone, "feature_sizes"):
            sizes = list(self.backbone.feature_sizes(input_size))
        else:
            sizes = [tuple(math.ceil(n / s) for n in input_size) for s in self.backbone.strides]
        for _ in self.extras:
            h, w = sizes[-1]
            sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
        return [tuple(int(v) for v in s) for s in sizes]


def scaled_extra_channels(m: ModelConfig, min_depth: int = 16) -> list[int]:
    """The extras' channels scaled by the backbone width multiplier (at least ``min_depth``)."""
    return [max(min_depth, int(d * m.backbone.width_mult)) for d in m.extra_channels]


def tap_strides(m: ModelConfig) -> tuple[int, ...]:
    """The backbone strides the detector taps, finest first: the papers' (16, 32), with the
    small-object stride 8 first when ``model.anchors.stride8_scales`` adds its map."""
    return (8, *backbones.DEFAULT_OUT_STRIDES) if m.anchors.stride8_scales else tuple(backbones.DEFAULT_OUT_STRIDES)


def build_model(cfg: Config | ModelConfig, load_backbone_weights: bool = True, weights_dir: str | None = None) -> SSDLite:
    """The SSDLite network a config describes, with its anchors, box weights and score function.

    The one place a detector is assembled: training, the ``Detector``, export and conversion
    all build through here and read what the outputs mean from the module.

    ``model.backbone.weights`` is a file path, a registry name or ``imagenet``
    (:mod:`ssdlite.model.pretrained`; named files are downloaded into ``weights_dir``, default
    the torch.hub cache). ``load_backbone_weights=False`` skips them (used when a checkpoint will
    overwrite every tensor anyway, so the ImageNet file need not exist on this machine).
    """
    m = cfg.model if isinstance(cfg, Config) else cfg
    b = m.backbone
    backbone = backbones.create(
        b.name,
        width_mult=b.width_mult,
        reduced_tail=b.reduced_tail,
        norm_layer=detection_norm_layer,
        out_strides=tap_strides(m),
    )
    if load_backbone_weights and b.weights is not None:
        from ssdlite.model.pretrained import load_backbone_weights as load_pretrained

        load_pretrained(backbone, b, weights_dir)
    return SSDLite(
        backbone, m.num_classes, AnchorGenerator(m.anchors), scaled_extra_channels(m),
        input_size=m.input_size, box_weights=m.box_weights, classification=m.classification,
        head=m.head, predictor_kernel=m.predictor_kernel,
        top_down=m.stride8_top_down,  # the config allows it only with stride8_scales; SSDLite checks the taps
    )
