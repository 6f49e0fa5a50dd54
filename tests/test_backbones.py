"""backbones/: names, widths, declared taps, weights files, bad input, user registration, timm."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d, SqueezeExcitation

import backbones
from backbones import _registry

V3_WIDTHS = (0.5, 0.75, 1.0, 1.25)  # V3 takes any alpha > 0: a sample


def _grid():
    for name in backbones.list_backbones():
        info = backbones.backbone_info(name)
        for width in info.widths or V3_WIDTHS:
            for reduced in (False, True) if info.reduced_tail else (False,):
                yield pytest.param(name, width, reduced, id=f"{name}-{width}{'-reduced' if reduced else ''}")


@pytest.mark.parametrize("name,width,reduced", list(_grid()))
def test_taps_have_declared_channels_and_strides(name, width, reduced):
    model = backbones.create(name, width_mult=width, reduced_tail=reduced).eval()
    assert model.strides == [16, 32]
    assert len(model.out_channels) == 2 and all(c % 8 == 0 for c in model.out_channels)
    with torch.no_grad():
        for size in (320, 300):
            maps = model(torch.randn(1, 3, size, size))
            assert isinstance(maps, list) and len(maps) == 2
            for m, c, s in zip(maps, model.out_channels, model.strides):
                assert tuple(m.shape) == (1, c, math.ceil(size / s), math.ceil(size / s)), (size, s)


@pytest.mark.parametrize("name,width,reduced", list(_grid()))
def test_stride8_map_comes_first_and_the_other_two_are_unchanged(name, width, reduced):
    torch.manual_seed(0)
    base = backbones.create(name, width_mult=width, reduced_tail=reduced).eval()
    s8 = backbones.create(name, width_mult=width, reduced_tail=reduced, out_strides=(8, 16, 32)).eval()
    s8.load_state_dict(base.state_dict())  # same tensors: the stride-8 map only reads an inner activation
    assert s8.strides == [8, 16, 32] and s8.out_channels[1:] == base.out_channels and s8.out_channels[0] % 8 == 0
    x = torch.randn(1, 3, 300, 300)
    with torch.no_grad():
        maps, ref = s8(x), base(x)
    assert tuple(maps[0].shape) == (1, s8.out_channels[0], 38, 38)
    assert all(torch.equal(a, b) for a, b in zip(maps[1:], ref))


def test_stride8_map_of_v1_is_conv5_and_rules():
    v1 = backbones.create("mobilenet_v1", out_strides=(8, 16, 32)).eval()
    assert v1.out_channels == [256, 512, 1024]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(v1(x)[0], v1.features[:6](x))  # stem + conv1..conv5
    with pytest.raises(ValueError, match="feature extractor"):
        backbones.create("mobilenet_v1", out_strides=(8, 16, 32), num_classes=10)
    with pytest.raises(ValueError, match=r"^two_tap has no tap at stride 8; it declares taps at strides 16, 32$"):
        _two_tap_net(out_strides=(8, 16, 32))


def _two_tap_net(**kwargs):
    from backbones._common import MobileNet, Tap

    layers = nn.Sequential(nn.Conv2d(3, 8, 3, 16, 1), nn.Conv2d(8, 8, 3, 2, 1))
    return MobileNet(layers, [Tap(0, "out", 8, 16), Tap(1, "out", 8, 32)], name="two_tap", **kwargs)


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_default_out_strides_are_the_papers_pair_and_every_tap_is_declared(name):
    assert backbones.DEFAULT_OUT_STRIDES == (16, 32)
    default, explicit = backbones.create(name), backbones.create(name, out_strides=(16, 32))
    assert default.strides == explicit.strides == [16, 32] and default.out_channels == explicit.out_channels
    assert len(default.features) == len(explicit.features)
    assert [t.stride for t in default.available_taps] == [8, 16, 32]
    assert [t.channels for t in default.available_taps][1:] == default.out_channels


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
@pytest.mark.parametrize("stride", [16, 32])
def test_one_tap_alone_cuts_the_features_after_it(name, stride):
    torch.manual_seed(0)
    both = backbones.create(name).eval()
    alone = backbones.create(name, out_strides=(stride,)).eval()
    tap = next(t for t in alone.available_taps if t.stride == stride)
    assert alone.strides == [stride] and alone.out_channels == [tap.channels] and len(alone.features) == tap.layer + 1
    assert alone.full_depth == both.full_depth
    alone.load_state_dict({k: v for k, v in both.state_dict().items() if k in alone.state_dict()})
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        (single,), pair = alone(x), both(x)
    assert torch.equal(single, pair[[16, 32].index(stride)])


def test_undeclared_or_malformed_out_strides_are_errors():
    with pytest.raises(ValueError, match=r"^mobilenet_v3_small has no tap at stride 4, 64; it declares taps at strides 8, 16, 32$"):
        backbones.create("mobilenet_v3_small", out_strides=(4, 16, 64))
    for bad in [(), (32, 16), (16, 16), (16.0,), "16"]:
        with pytest.raises(ValueError, match=r"mobilenet_v2: out_strides must be positive ints in increasing order"):
            backbones.create("mobilenet_v2", out_strides=bad)
    with pytest.raises(ValueError, match=r"out_strides applies to the feature extractor \(num_classes=None\) only"):
        backbones.create("mobilenet_v2", out_strides=(16, 32), num_classes=10)
    assert backbones.create("mobilenet_v1", width_mult=0.25, num_classes=3).strides == [16, 32]  # forward_taps' default


@pytest.mark.parametrize(
    "name,width,reduced,expected",
    [
        ("mobilenet_v1", 1.0, False, [512, 1024]),
        ("mobilenet_v1", 0.25, False, [128, 256]),
        ("mobilenet_v2", 1.0, False, [576, 1280]),
        ("mobilenet_v2", 0.35, False, [192, 1280]),  # 96 * 0.35 -> 32 channels, x6; last conv stays 1280
        ("mobilenet_v2", 1.4, False, [816, 1792]),  # 96 * 1.4 -> 136, x6; 1280 * 1.4
        ("mobilenet_v3_large", 1.0, False, [672, 960]),
        ("mobilenet_v3_large", 1.0, True, [672, 480]),
        ("mobilenet_v3_small", 1.0, False, [288, 576]),
        ("mobilenet_v3_small", 1.0, True, [288, 288]),
        # authors' rule: 112 * 0.75 -> 88 input channels, x6 expansion (torchvision's rounding gives 504)
        ("mobilenet_v3_large", 0.75, False, [528, 720]),
    ],
)
def test_tap_channels_match_the_papers(name, width, reduced, expected):
    assert backbones.create(name, width_mult=width, reduced_tail=reduced).out_channels == expected


def test_design_example():
    bb = backbones.create("mobilenet_v3_large", reduced_tail=True, width_mult=1.0, weights=None)
    assert bb.out_channels == [672, 480] and bb.strides == [16, 32]
    assert backbones.list_backbones()[:4] == ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize(
    "name,layers", [("mobilenet_v1", 14), ("mobilenet_v2", 19), ("mobilenet_v3_large", 17), ("mobilenet_v3_small", 13)]
)
def test_feature_extractor_stops_at_the_last_tap(name, layers):
    model = backbones.create(name)
    assert len(model.features) == layers  # stem + blocks + last tap layer, nothing after
    assert model.classifier is None and not hasattr(model, "avgpool")
    assert not any(k.startswith("classifier") for k in model.state_dict())
    full = backbones.create(name, num_classes=1000)
    assert len(full.features) == layers
    # the extractor holds exactly the classifier net's non-classifier tensors
    assert set(model.state_dict()) == {k for k in full.state_dict() if not k.startswith("classifier.")}


def test_classification_network_and_its_taps():
    model = backbones.create("mobilenet_v3_small", num_classes=10).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        logits = model(x)
        taps = model.forward_taps(x)
    assert logits.shape == (2, 10)
    assert [tuple(t.shape[1:]) for t in taps] == [(288, 6, 8), (576, 3, 4)]


def test_v3_blocks_squeeze_excite_and_hard_activations():
    large, small = backbones.create("mobilenet_v3_large"), backbones.create("mobilenet_v3_small")
    assert sum(isinstance(m, SqueezeExcitation) for m in large.modules()) == 8
    assert sum(isinstance(m, SqueezeExcitation) for m in small.modules()) == 9
    for model in (large, small):
        assert any(isinstance(m, nn.Hardswish) for m in model.modules())
        assert all(isinstance(se.scale_activation, nn.Hardsigmoid) for se in model.modules() if isinstance(se, SqueezeExcitation))


def test_batch_norm_defaults_follow_torchvision_and_norm_layer_overrides():
    bn = lambda m: next(x for x in m.modules() if isinstance(x, nn.BatchNorm2d))  # noqa: E731
    v2, v3 = bn(backbones.create("mobilenet_v2")), bn(backbones.create("mobilenet_v3_large"))
    assert (v2.eps, v2.momentum) == (1e-5, 0.1)
    assert (v3.eps, v3.momentum) == (1e-3, 0.01)
    frozen = backbones.create("mobilenet_v3_small", norm_layer=partial(FrozenBatchNorm2d, eps=1e-3))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())


# ----------------------------------------------------------------------------- weights files


@pytest.fixture(scope="module")
def tv_v3_large_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_large_tv.pth"
    torch.save(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), path)
    return path


def test_full_tail_weights_into_reduced_tail_name_tensor_and_shapes(tv_v3_large_file):
    with pytest.raises(ValueError) as e:
        backbones.create("mobilenet_v3_large", reduced_tail=True, weights=tv_v3_large_file)
    msg = str(e.value)
    assert str(tv_v3_large_file) in msg
    assert "'features.13.block.3.0.weight'" in msg
    assert "(160, 672, 1, 1)" in msg and "(80, 672, 1, 1)" in msg


def test_wrong_architecture_or_classes(tv_v3_large_file):
    with pytest.raises(ValueError, match=r"mobilenet_v3_small.*|shape"):
        backbones.create("mobilenet_v3_small", weights=tv_v3_large_file)
    with pytest.raises(ValueError, match=r"'classifier.3.weight' has shape \(1000, 1280\) in the file but \(10, 1280\)"):
        backbones.create("mobilenet_v3_large", num_classes=10, weights=tv_v3_large_file)


def test_text_file_missing_file_and_non_state_dicts(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    with pytest.raises(ValueError, match=r"notes\.txt.*not a PyTorch state-dict file"):
        backbones.create("mobilenet_v2", weights=text)
    with pytest.raises(ValueError, match=r"absent\.pth.*does not exist"):
        backbones.create("mobilenet_v2", weights=tmp_path / "absent.pth")
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ValueError, match=r"list\.pth.*holds a list, not a state dict"):
        backbones.create("mobilenet_v2", weights=listed)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    state = backbones.create("mobilenet_v1").state_dict()
    del state["features.5.pw.0.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"partial\.pth.*'features\.5\.pw\.0\.weight' of shape \(256, 256, 1, 1\).*missing"):
        backbones.create("mobilenet_v1", weights=path)
    state = backbones.create("mobilenet_v1").state_dict()
    state["features.99.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"'features\.99\.weight' of shape \(3,\) in the file has no place"):
        backbones.create("mobilenet_v1", weights=path)
    with pytest.raises(ValueError, match=r"'features\.99\.weight' of shape \(3,\) in the file has no place"):
        backbones.create("mobilenet_v1", out_strides=(16,), weights=path)  # it skips conv12, conv13 only


def test_our_own_weights_round_trip_nested_and_ddp_prefixed(tmp_path):
    torch.manual_seed(0)
    src = backbones.create("mobilenet_v1", width_mult=0.5, num_classes=7).eval()
    x = torch.randn(1, 3, 64, 64)
    for i, obj in enumerate(
        [src.state_dict(), {"model": src.state_dict(), "epoch": 3}, {"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}]
    ):
        path = tmp_path / f"ours{i}.pth"
        torch.save(obj, path)
        dst = backbones.create("mobilenet_v1", width_mult=0.5, num_classes=7, weights=path).eval()
        ext = backbones.create("mobilenet_v1", width_mult=0.5, weights=path).eval()  # ignores the classifier
        with torch.no_grad():
            assert torch.equal(dst(x), src(x))
            for a, b in zip(ext(x), src.forward_taps(x)):
                assert torch.equal(a, b)


def test_frozen_norm_loads_torchvision_weights(tv_v3_large_file):
    model = backbones.create("mobilenet_v3_large", weights=tv_v3_large_file, norm_layer=partial(FrozenBatchNorm2d, eps=1e-3))
    tv = torch.load(tv_v3_large_file, weights_only=True)
    assert torch.equal(model.state_dict()["features.4.block.1.1.running_var"], tv["features.4.block.1.1.running_var"])


# ----------------------------------------------------------------------------- bad input


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        backbones.create("mobilenet_v4")
    for name in ("'mobilenet_v4'", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "timm:"):
        assert name in str(e.value)


@pytest.mark.parametrize(
    "name,width,allowed",
    [
        ("mobilenet_v1", 0.35, "0.25, 0.5, 0.75, 1.0"),
        ("mobilenet_v1", 1.4, "0.25, 0.5, 0.75, 1.0"),
        ("mobilenet_v2", 0.25, "0.35, 0.5, 0.75, 1.0, 1.3, 1.4"),
        ("mobilenet_v2", 2.0, "0.35, 0.5, 0.75, 1.0, 1.3, 1.4"),
        ("mobilenet_v3_large", 0.0, "> 0"),
        ("mobilenet_v3_small", -1.0, "> 0"),
    ],
)
def test_width_out_of_range_lists_allowed_values(name, width, allowed):
    with pytest.raises(ValueError) as e:
        backbones.create(name, width_mult=width)
    assert name in str(e.value) and str(width) in str(e.value) and allowed in str(e.value)


def test_reduced_tail_and_num_classes_rules():
    with pytest.raises(ValueError, match="reduced_tail"):
        backbones.create("mobilenet_v2", reduced_tail=True)
    with pytest.raises(ValueError, match="num_classes"):
        backbones.create("mobilenet_v1", num_classes=0)


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 1, 3, 64, 64), (64,)])
def test_non_4d_input_is_a_clear_error(shape):
    for model in (backbones.create("mobilenet_v3_small"), backbones.create("mobilenet_v1", width_mult=0.25, num_classes=3)):
        with pytest.raises(ValueError, match=r"4-D image batch \(N, 3, H, W\), got \(" + ", ".join(map(str, shape))):
            model(torch.zeros(shape))


# ----------------------------------------------------------------------------- registration, timm


@pytest.fixture
def scratch_registry():
    before = dict(_registry._REGISTRY)
    yield
    _registry._REGISTRY.clear()
    _registry._REGISTRY.update(before)


class _Tiny(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c16 = nn.Conv2d(3, width, 16, stride=16)
        self.c32 = nn.Conv2d(width, 2 * width, 2, stride=2)
        self.out_channels, self.strides = [width, 2 * width], [16, 32]

    def forward(self, x):
        a = self.c16(x)
        return [a, self.c32(a)]


def test_register_a_users_backbone(scratch_registry):
    @backbones.register("tiny", widths=(1.0, 2.0))
    def tiny(*, width_mult, reduced_tail, num_classes, norm_layer, out_strides):
        return _Tiny(int(8 * width_mult))  # fixed taps: ignores out_strides

    assert "tiny" in backbones.list_backbones()
    model = backbones.create("tiny", width_mult=2.0)
    assert model.out_channels == [16, 32]
    assert [t.shape[1:] for t in model(torch.zeros(1, 3, 64, 64))] == [(16, 4, 4), (32, 2, 2)]
    with pytest.raises(ValueError, match="choose one of 1.0, 2.0"):
        backbones.create("tiny", width_mult=3.0)
    with pytest.raises(ValueError, match=r"^backbone 'tiny' has no tap at stride 8; it declares taps at strides 16, 32$"):
        backbones.create("tiny", out_strides=(8, 16, 32))
    with pytest.raises(ValueError, match=r"'tiny' returns maps at strides \[16, 32\], not the requested \[32\]"):
        backbones.create("tiny", out_strides=(32,))
    with pytest.raises(ValueError, match="already registered"):
        backbones.register("tiny")(lambda **kw: _Tiny(8))
    with pytest.raises(ValueError, match="must not start with 'timm:'"):
        backbones.register("timm:x")

    @backbones.register("undeclared")
    def undeclared(**kw):
        return nn.Conv2d(3, 8, 3)

    with pytest.raises(ValueError, match="must declare out_channels and strides"):
        backbones.create("undeclared")


def test_timm_names():
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install ssdlite\[timm\]") as e:
            backbones.create("timm:mobilenetv3_large_100")
        assert isinstance(e.value, ValueError)  # tools print it as one line
        return
    model = backbones.create("timm:mobilenetv3_small_100").eval()
    assert model.strides == [16, 32]
    with torch.no_grad():
        maps = model(torch.zeros(1, 3, 320, 320))
    assert [tuple(m.shape[1:]) for m in maps] == [(c, 320 // s, 320 // s) for c, s in zip(model.out_channels, model.strides)]


class _FakeFeatureInfo:
    def __init__(self, levels, out_indices):
        self.levels, self.out_indices = levels, tuple(out_indices)

    def reduction(self):
        return [self.levels[i][1] for i in self.out_indices]

    def channels(self):
        return [self.levels[i][0] for i in self.out_indices]


class _FakeFeatureNet(nn.Module):
    """timm ``features_only`` stand-in: levels (channels, reduction) = strides 2, 4, 8, 16, 16, 32."""

    LEVELS = [(8, 2), (16, 4), (24, 8), (40, 16), (48, 16), (96, 32)]

    def __init__(self, out_indices):
        super().__init__()
        self.feature_info = _FakeFeatureInfo(self.LEVELS, out_indices)
        self.convs = nn.ModuleList(nn.Conv2d(3, c, r, stride=r) for c, r in self.LEVELS)

    def forward(self, x):
        return [self.convs[i](x) for i in self.feature_info.out_indices]


def test_timm_wrapper_picks_the_last_levels_at_16_and_32(monkeypatch, tmp_path):
    """The ``timm:`` path against a stand-in module (timm itself is optional and not installed here)."""
    import types

    calls = []

    def create_model(name, pretrained=False, features_only=False, out_indices=None, num_classes=None, **kw):
        calls.append(dict(name=name, features_only=features_only, out_indices=out_indices, num_classes=num_classes))
        if name != "fakenet":
            raise RuntimeError(f"Unknown model ({name})")
        if not features_only:
            return nn.Linear(3, num_classes)
        return _FakeFeatureNet(range(6) if out_indices is None else out_indices)

    monkeypatch.setitem(__import__("sys").modules, "timm", types.SimpleNamespace(create_model=create_model))
    model = backbones.create("timm:fakenet")
    assert calls[-1]["out_indices"] == (4, 5)  # the last stride-16 level, then the stride-32 one
    assert model.out_channels == [48, 96] and model.strides == [16, 32]
    assert [tuple(m.shape[1:]) for m in model(torch.zeros(1, 3, 64, 64))] == [(48, 4, 4), (96, 2, 2)]
    with pytest.raises(ValueError, match="4-D"):
        model(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match=r"timm:nonet.*Unknown model"):
        backbones.create("timm:nonet")
    with pytest.raises(ValueError, match="width_mult and reduced_tail do not apply"):
        backbones.create("timm:fakenet", reduced_tail=True)
    assert isinstance(backbones.create("timm:fakenet", num_classes=5), nn.Linear)
    declared = [(t.stride, t.channels, t.layer) for t in model.available_taps]  # the last level at each reduction
    assert declared == [(2, 8, 0), (4, 16, 1), (8, 24, 2), (16, 48, 4), (32, 96, 5)]
    s8 = backbones.create("timm:fakenet", out_strides=(8, 16, 32))
    assert calls[-1]["out_indices"] == (2, 4, 5) and s8.strides == [8, 16, 32] and s8.out_channels == [24, 48, 96]
    assert backbones.create("timm:fakenet", out_strides=(4,)).out_channels == [16] and calls[-1]["out_indices"] == (1,)
    with pytest.raises(ValueError, match=r"^timm:fakenet has no tap at stride 64; it declares taps at strides 2, 4, 8, 16, 32$"):
        backbones.create("timm:fakenet", out_strides=(16, 64))
    # timm's own tensor names load into the body; head tensors of the file are not needed
    state = {**_FakeFeatureNet(range(6)).state_dict(), "conv_head.weight": torch.zeros(2)}
    torch.save(state, tmp_path / "fake.pth")
    loaded = backbones.create("timm:fakenet", weights=tmp_path / "fake.pth")
    assert torch.equal(loaded.body.convs[5].weight, state["convs.5.weight"])
