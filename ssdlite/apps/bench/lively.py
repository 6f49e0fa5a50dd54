"""Random-weight detectors that behave like trained ones, for speed measurements and export tests.

An untrained SSDLite gives every anchor the same flat scores, so nothing passes a real-time
threshold and the postprocess does no work; these helpers make its outputs depend on the image
and calibrate how many scores pass, as a trained detector's would.
"""

from __future__ import annotations

from typing import Any

__all__ = ["lively_random_model", "background_shift"]


def lively_random_model(cfg: Any, images: Any, seed: int = 0, cls_std: float = 0.05, candidates: float | None = None,
                        score_thresh: float = 0.3) -> Any:
    """An untrained ``SSDLite`` whose outputs depend on the image, like a trained one's.

    Fresh initializations shrink the activations layer after layer (the deep maps end near
    1e-20) and give every anchor the same flat scores, so nothing passes a 0.3 threshold.
    Here the BN statistics are re-estimated on ``images`` (uint8 RGB (H, W, 3), e.g. a few
    frames), which restores unit-scale activations, and the last conv of every head gets
    N(0, ``cls_std``) (class) / N(0, 0.05) (box) weights, so a few boxes per image score above
    0.3 and the postprocess does real work. Returns the model in eval mode.

    ``candidates``: also shift the background logit (the bias of every class head's background
    channels) so that the ``images`` average this many (anchor, class) scores above
    ``score_thresh``. Without it the count swings from 0 to over 1,000 frame to frame (all but
    the background columns are random), where a trained detector's background column dominates
    all but a few anchors; the latency benchmark asks for 10.
    """
    import torch
    from torch import nn

    from ssdlite.deploy.detector import preprocess
    from ssdlite.model import build_model

    torch.manual_seed(seed)
    model = build_model(cfg, load_backbone_weights=False)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    batch, _ = preprocess(list(images), tuple(cfg.model.input_size), cfg.preprocess)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(batch))
        for heads, std in ((model.cls_heads, cls_std), (model.box_heads, 0.05)):
            for head in heads:
                head[-1].weight.normal_(0.0, std)
        if candidates is not None:
            model.eval()
            shift = background_shift(model(torch.from_numpy(batch))[0], candidates, score_thresh)
            k = cfg.model.num_classes + 1
            for head in model.cls_heads:  # channels a * (C + 1) + k; k = 0 is the background
                head[-1].bias.view(-1, k)[:, 0] += shift
    return model.eval()


def background_shift(cls_logits: Any, candidates: float, score_thresh: float) -> float:
    """The shift of the background logit (bisection) after which ``cls_logits`` (N, A, C + 1)
    average ``candidates`` softmax scores above ``score_thresh`` per image; a shift in
    [-20, 40], the nearest count there when the asked one cannot be reached (foreground logits too
    flat to pass the threshold at all)."""
    import torch

    def mean_count(shift: float) -> float:
        logits = cls_logits.clone()
        logits[..., 0] += shift
        return float((torch.softmax(logits, -1)[..., 1:] > score_thresh).sum() / logits.shape[0])

    lo, hi = -20.0, 40.0  # the count decreases as the shift grows
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean_count(mid) > candidates else (lo, mid)
    return 0.5 * (lo + hi)
