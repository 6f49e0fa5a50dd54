"""The random-weight stand-ins of the latency benchmark: their score counts are what they claim."""

from __future__ import annotations

import numpy as np
import torch

from helpers import SMALLEST_CONFIG
from ssdlite.apps.bench.lively import background_shift, lively_random_model
from ssdlite.config import load_config
from ssdlite.deploy.detector import preprocess


def _mean_count(cls_logits: torch.Tensor, thresh: float) -> float:
    return float((torch.softmax(cls_logits, -1)[..., 1:] > thresh).sum()) / cls_logits.shape[0]


def test_background_shift_reaches_the_asked_count():
    logits = torch.randn(4, 2034, 81, generator=torch.Generator().manual_seed(0)) * 3.0
    assert _mean_count(logits, 0.3) > 200  # far too many before the shift
    shift = background_shift(logits, 10.0, 0.3)
    shifted = logits.clone()
    shifted[..., 0] += shift
    assert abs(_mean_count(shifted, 0.3) - 10.0) <= 1.0
    assert abs(background_shift(logits, 10.0, 0.5) - shift) > 0.1  # depends on the threshold


def test_lively_model_with_candidates_scores_about_that_many_per_image():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(3)]
    cfg = load_config(SMALLEST_CONFIG)
    model = lively_random_model(cfg, images, cls_std=0.5, candidates=10.0, score_thresh=0.3)
    batch, _ = preprocess(images, tuple(cfg.model.input_size), cfg.preprocess)
    with torch.no_grad():
        cls_logits, _ = model(torch.from_numpy(batch))
    assert not model.training
    assert abs(_mean_count(cls_logits, 0.3) - 10.0) <= 1.0
