"""SSD default boxes (anchors) for a list of feature maps.

Two layouts (``AnchorConfig.layout``), both with scales linear from ``min_ratio`` to
``max_ratio`` over the maps plus 1.0 after the last one (used only by the interpolated box):

``"torchvision"``
    ``torchvision.models.detection.anchor_utils.DefaultBoxGenerator(aspect_ratios, min_ratio,
    max_ratio, clip=clip)``, value for value and in the same order: per location
    ``(s_k, 1)``, ``(sqrt(s_k s_k+1), 1)``, then ``(w, h)`` and ``(h, w)`` with
    ``w = s_k sqrt(r)``, ``h = s_k / sqrt(r)`` for each ``r`` of ``aspect_ratios[k]``.
``"paper"``
    The TF Object Detection API ``ssd_anchor_generator`` (``create_ssd_anchors`` with
    ``reduce_boxes_in_lowest_layer=True``) of the MobileNetV2/V3 papers' SSDLite configs.
    Lowest map: ``(lowest_scale, 1)`` (TF: 0.1) then ``(s_0, r)``, ``(s_0, 1/r)`` for ``r`` in
    ``aspect_ratios[0]`` (3 boxes with the default ``(2,)``). Other maps: ``(s_k, 1)``, then
    ``(s_k, r)``, ``(s_k, 1/r)`` for each ``r``, then ``(sqrt(s_k s_k+1), 1)`` (6 boxes with
    ``(2, 3)``). A ``(scale, ratio)`` box has ``w = scale sqrt(ratio) * base_w`` and
    ``h = scale / sqrt(ratio) * base_h`` in normalized coordinates, where, as in TF's
    ``MultipleGridAnchorGenerator``, ``base_w = min(H, W) / W`` and ``base_h = min(H, W) / H``
    (both 1 for a square input; a ratio-1 box stays square in pixels otherwise).

With ``stride8_scales`` (not in the papers), a stride-8 map comes first with one ratio-1 box
``(s, 1)`` per scale per location (both layouts), and ``aspect_ratios`` still describes the maps
from stride 16 on, whose boxes do not change.

Centers are ``((j + 0.5) / fw, (i + 0.5) / fh)``; with ``clip`` the normalized widths and
heights are clamped to [0, 1] in (cx, cy, w, h) form (torchvision's rule; the centers are
untouched). Order: per feature map, row-major over locations, the boxes of one location
contiguous (torchvision's and TF's order). Anchors are computed once per
``(image_size, feature_sizes, device)`` and cached.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ssdlite.config import AnchorConfig

__all__ = ["AnchorGenerator", "linear_scales"]


def linear_scales(num_maps: int, min_ratio: float, max_ratio: float) -> list[float]:
    """``num_maps`` scales linear from ``min_ratio`` to ``max_ratio``, then 1.0 (``num_maps + 1`` values).

    Same formula as TF ``create_ssd_anchors`` and torchvision ``DefaultBoxGenerator``; a single
    map gets ``[min_ratio, max_ratio]`` as in torchvision.
    """
    if num_maps < 1:
        raise ValueError(f"need at least one feature map, got {num_maps}")
    if num_maps == 1:
        return [min_ratio, max_ratio]
    step = max_ratio - min_ratio
    return [min_ratio + step * k / (num_maps - 1.0) for k in range(num_maps)] + [1.0]


class AnchorGenerator:
    """SSD default boxes from an :class:`~ssdlite.config.AnchorConfig`.

    ``gen(image_size=(H, W), feature_sizes=[(fh, fw), ...])`` returns ``(A, 4)`` float32 xyxy
    anchors in pixels of the network input, ``A = sum(fh * fw * n_k)`` with
    ``n_k = num_anchors_per_location()[k]``. Plain Python + torch, no ``nn.Module`` state.
    """

    def __init__(self, cfg: AnchorConfig) -> None:
        if cfg.layout not in ("paper", "torchvision"):
            raise ValueError(f"model.anchors.layout={cfg.layout!r} is not allowed; choose 'paper' or 'torchvision'")
        if not cfg.aspect_ratios:
            raise ValueError("model.anchors.aspect_ratios must have one list per feature map, got none")
        for k, ratios in enumerate(cfg.aspect_ratios):
            if any(r <= 0 for r in ratios):
                raise ValueError(f"model.anchors.aspect_ratios[{k}]={list(ratios)} must be positive")
        self.cfg = cfg
        self.scales = linear_scales(len(cfg.aspect_ratios), cfg.min_ratio, cfg.max_ratio)
        # Per map: list of (scale, ratio) box specs, or (w, h) pairs for torchvision.
        self._specs = self._paper_specs() if cfg.layout == "paper" else self._torchvision_specs()
        if cfg.stride8_scales:
            if any(not 0 < s <= 1 for s in cfg.stride8_scales):
                raise ValueError(f"model.anchors.stride8_scales={list(cfg.stride8_scales)} must be in (0, 1]")
            # (scale, ratio 1) for the paper layout's _wh; (w, h) = (s, s) for torchvision's: the same box
            self._specs.insert(0, [(float(s), 1.0) if cfg.layout == "paper" else (float(s), float(s)) for s in cfg.stride8_scales])
        self._cache: dict[tuple, Tensor] = {}
        self._cache_cxcywh: dict[tuple, Tensor] = {}

    # ------------------------------------------------------------------ box shapes per location

    def _torchvision_specs(self) -> list[list[tuple[float, float]]]:
        """(w, h) pairs per map, exactly DefaultBoxGenerator._generate_wh_pairs."""
        specs = []
        for k, ratios in enumerate(self.cfg.aspect_ratios):
            s_k = self.scales[k]
            s_prime = math.sqrt(self.scales[k] * self.scales[k + 1])
            pairs = [(s_k, s_k), (s_prime, s_prime)]
            for r in ratios:
                sq = math.sqrt(r)
                w, h = s_k * sq, s_k / sq
                pairs += [(w, h), (h, w)]
            specs.append(pairs)
        return specs

    def _paper_specs(self) -> list[list[tuple[float, float]]]:
        """(scale, ratio) specs per map, exactly TF create_ssd_anchors (reduce_boxes_in_lowest_layer)."""
        specs = []
        for k, ratios in enumerate(self.cfg.aspect_ratios):
            s_k, s_next = self.scales[k], self.scales[k + 1]
            if k == 0:
                layer = [(self.cfg.lowest_scale, 1.0)]  # TF create_ssd_anchors: 0.1
                for r in ratios:
                    layer += [(s_k, r), (s_k, 1.0 / r)]
            else:
                layer = [(s_k, 1.0)]
                for r in ratios:
                    layer += [(s_k, r), (s_k, 1.0 / r)]
                layer.append((math.sqrt(s_k * s_next), 1.0))
            specs.append(layer)
        return specs

    def num_anchors_per_location(self) -> list[int]:
        """Boxes per location of each feature map (paper default: 3, 6, 6, 6, 6, 6; torchvision: 6 each;
        ``len(stride8_scales)`` first when set)."""
        return [len(s) for s in self._specs]

    def _wh(self, k: int, image_size: tuple[int, int]) -> Tensor:
        """(n_k, 2) normalized (w, h) of the boxes of one location of map k, float32, before clipping."""
        if self.cfg.layout == "torchvision":
            return torch.as_tensor(self._specs[k], dtype=torch.float32)
        h_img, w_img = image_size
        base_h = min(h_img, w_img) / h_img
        base_w = min(h_img, w_img) / w_img
        pairs = [(s * math.sqrt(r) * base_w, s / math.sqrt(r) * base_h) for s, r in self._specs[k]]
        return torch.as_tensor(pairs, dtype=torch.float32)

    # ------------------------------------------------------------------ grids

    def _key(self, image_size: Sequence[int], feature_sizes: Sequence[Sequence[int]], device) -> tuple:
        if len(image_size) != 2:
            raise ValueError(f"image_size must be (H, W), got {tuple(image_size)!r}")
        sizes = tuple((int(h), int(w)) for h, w in feature_sizes)
        if len(sizes) != len(self._specs):
            raise ValueError(
                f"got {len(sizes)} feature maps but the anchors describe {len(self._specs)}: "
                f"model.anchors.aspect_ratios has {len(self.cfg.aspect_ratios)} entries"
                f"{' + the stride-8 map (stride8_scales)' if self.cfg.stride8_scales else ''}"
            )
        return (int(image_size[0]), int(image_size[1])), sizes, torch.device(device if device is not None else "cpu")

    def anchors_cxcywh_normalized(
        self, image_size: tuple[int, int], feature_sizes: Sequence[tuple[int, int]], device: torch.device | str | None = None
    ) -> Tensor:
        """(A, 4) float32 anchors as (cx, cy, w, h) normalized to [0, 1] by the input (W, H), cached.

        Same order as :meth:`__call__`; width and height already clipped when ``cfg.clip``.
        """
        key = self._key(image_size, feature_sizes, device)
        if key not in self._cache_cxcywh:
            (h_img, w_img), sizes, dev = key
            out = []
            for k, (fh, fw) in enumerate(sizes):
                # Same ops as torchvision's _grid_default_boxes (float32 centers from int arange).
                shifts_x = ((torch.arange(0, fw) + 0.5) / fw).to(dtype=torch.float32)
                shifts_y = ((torch.arange(0, fh) + 0.5) / fh).to(dtype=torch.float32)
                shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
                wh = self._wh(k, (h_img, w_img))
                n = wh.shape[0]
                shifts = torch.stack((shift_x.reshape(-1), shift_y.reshape(-1)) * n, dim=-1).reshape(-1, 2)
                if self.cfg.clip:
                    wh = wh.clamp(min=0, max=1)
                out.append(torch.cat((shifts, wh.repeat(fh * fw, 1)), dim=1))
            self._cache_cxcywh[key] = torch.cat(out, dim=0).to(dev)
        return self._cache_cxcywh[key]

    def __call__(
        self, image_size: tuple[int, int], feature_sizes: Sequence[tuple[int, int]], device: torch.device | str | None = None
    ) -> Tensor:
        """Anchors for an input of ``image_size`` and the given feature map sizes.

        Args:
            image_size: (H, W) of the network input in pixels.
            feature_sizes: [(fh, fw), ...], one per feature map, finest first.
            device: where to put the result (default CPU); cached per device.

        Returns:
            (A, 4) float32 xyxy anchors in input pixels, the same tensor object on every call
            with the same arguments (do not modify it in place).
        """
        key = self._key(image_size, feature_sizes, device)
        if key not in self._cache:
            (h_img, w_img), _, dev = key
            boxes = self.anchors_cxcywh_normalized(image_size, feature_sizes, "cpu")
            x_y_size = torch.tensor([w_img, h_img])  # int64, as torchvision: float32 * int64 -> float32
            xyxy = torch.cat(
                [(boxes[:, :2] - 0.5 * boxes[:, 2:]) * x_y_size, (boxes[:, :2] + 0.5 * boxes[:, 2:]) * x_y_size], -1
            )
            self._cache[key] = xyxy.to(dev)
        return self._cache[key]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(layout={self.cfg.layout!r}, scales={[round(s, 4) for s in self.scales]}, "
            f"aspect_ratios={[list(r) for r in self.cfg.aspect_ratios]}, clip={self.cfg.clip})"
        )
