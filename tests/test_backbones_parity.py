"""Parity with torchvision: its ImageNet state dict loads into ours and every output matches.

torchvision's model gets random batch-norm statistics and affine parameters (so a wrong eps,
momentum-independent stat, missing layer or swapped tensor shows), its state dict goes through a
file into ``backbones.create(..., weights=path)``, and in eval mode our logits and both tap maps
must equal torchvision's logits and its activations at the same layers (forward hooks).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import backbones

# name, reduced_tail, the torchvision modules whose outputs are our taps at strides 8 (the optional
# small-object map: expansion of the block that leaves stride 8), 16 and 32
CASES = [
    ("mobilenet_v2", False, lambda tv: (tv.features[7].conv[0], tv.features[14].conv[0], tv.features[18])),
    ("mobilenet_v3_large", False, lambda tv: (tv.features[7].block[0], tv.features[13].block[0], tv.features[16])),
    ("mobilenet_v3_large", True, lambda tv: (tv.features[7].block[0], tv.features[13].block[0], tv.features[16])),
    ("mobilenet_v3_small", False, lambda tv: (tv.features[4].block[0], tv.features[9].block[0], tv.features[12])),
    ("mobilenet_v3_small", True, lambda tv: (tv.features[4].block[0], tv.features[9].block[0], tv.features[12])),
]


def _randomize_norms(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)


@pytest.mark.parametrize("name,reduced,tv_taps", CASES, ids=[f"{c[0]}{'-reduced' if c[1] else ''}" for c in CASES])
def test_torchvision_weights_give_identical_logits_and_taps(tmp_path, name, reduced, tv_taps):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    kwargs = {"reduced_tail": reduced} if name != "mobilenet_v2" else {}
    tv = getattr(torchvision.models, name)(weights=None, **kwargs)
    with torch.no_grad():
        _randomize_norms(tv, gen)
        for lin in (m for m in tv.modules() if isinstance(m, nn.Linear)):
            lin.bias.copy_(torch.randn(lin.out_features, generator=gen) * 0.1)
    tv.eval()
    path = tmp_path / f"{name}.pth"
    torch.save(tv.state_dict(), path)

    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append(out.clone())) for m in tv_taps(tv)]
    x = torch.randn(1, 3, 224, 192, generator=gen)
    with torch.no_grad():
        tv_logits = tv(x)
    for h in hooks:
        h.remove()

    ours_cls = backbones.create(name, reduced_tail=reduced, weights=path, num_classes=1000).eval()
    ours_ext = backbones.create(name, reduced_tail=reduced, weights=path).eval()
    ours_s8 = backbones.create(name, reduced_tail=reduced, weights=path, out_strides=(8, 16, 32)).eval()
    ours_16 = backbones.create(name, reduced_tail=reduced, weights=path, out_strides=(16,)).eval()  # loads the whole file
    with torch.no_grad():
        logits = ours_cls(x)
        taps = ours_ext(x)
        taps_cls = ours_cls.forward_taps(x)
        taps_s8 = ours_s8(x)
        (tap_16,) = ours_16(x)

    assert len(seen) == 3 and ours_ext.strides == [16, 32] and ours_s8.strides == [8, 16, 32]
    assert ours_ext.out_channels == [t.shape[1] for t in seen[1:]]
    assert ours_s8.out_channels == [t.shape[1] for t in seen]
    assert tv_logits.abs().max() > 1e-2 and all(t.std() > 1e-2 for t in seen)  # non-trivial activations
    assert (logits - tv_logits).abs().max() <= 1e-5
    for ours, theirs, ours_c in zip(taps, seen[1:], taps_cls):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= 1e-5
        assert (ours_c - theirs).abs().max() <= 1e-5
    assert taps_s8[0].shape[-2:] == (28, 24)  # 224 x 192 / 8
    for ours, theirs in zip(taps_s8, seen):  # the stride-8 map first, then the same two
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= 1e-5
    assert len(ours_16.features) < len(ours_ext.features) and tap_16.shape == seen[1].shape
    assert (tap_16 - seen[1]).abs().max() <= 1e-5
