"""Config loading: strict keys and types, ranges, overrides, YAML safety, round trip."""

from __future__ import annotations

import pytest

from helpers import CONFIGS, PAPER_CONFIGS, REPO_ROOT, missing_data_reason
from ssdlite._paths import shared_data_dir
from ssdlite.config import Config, ConfigError, from_dict, load_config, to_dict


def test_paper_configs_load_and_round_trip():
    assert len(PAPER_CONFIGS) == 6
    for path in PAPER_CONFIGS:
        cfg = load_config(path)
        assert cfg.model.anchors.layout == "paper"
        assert cfg.model.num_classes == 80
        assert from_dict(to_dict(cfg)) == cfg


def test_backbone_swap_is_one_override():
    cfg = load_config(PAPER_CONFIGS[0], overrides=["model.backbone.name=mobilenet_v2", "train.lr=0.01"])
    assert cfg.model.backbone.name == "mobilenet_v2"
    assert cfg.train.lr == 0.01


def test_unknown_key_names_key_and_valid_ones(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  backbone:\n    nmae: mobilenet_v2\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "model.backbone.nmae" in msg and "'name'" in msg and "'width_mult'" in msg


def test_unknown_override_key():
    with pytest.raises(ConfigError, match=r"unknown key train\.lrr.*'lr'"):
        from_dict({}, ["train.lrr=0.1"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.lr=-0.1", "train.lr=-0.1 is out of range: must be > 0"),
        ("postprocess.score_thresh=1.5", "postprocess.score_thresh=1.5 is out of range"),
        ("train.epochs=ten", "train.epochs must be an integer"),
        ("train.ema=yes please", "train.ema must be true or false"),
        ("model.anchors.layout=ssd", "model.anchors.layout='ssd' is not allowed; choose one of ['paper', 'torchvision']"),
        ("model.input_size=[320]", "model.input_size must be a list of 2 values"),
        ("model.class_names=[a, b]", "model.class_names"),
        ("data.augment=heavy", "choose one of ['ssdlite', 'ssd', 'none']"),
        ("model.anchors.lowest_scale=0", "model.anchors.lowest_scale=0"),
        ("model.anchors.stride8_scales=[0.05, 1.5]", "model.anchors.stride8_scales=(0.05, 1.5) is out of range"),
        ("model.stride8_top_down=true", "model.stride8_top_down=True is out of range: must be false unless"),
    ],
)
def test_bad_values_name_key_and_rule(override, fragment):
    with pytest.raises(ConfigError) as e:
        from_dict({}, [override])
    assert fragment in str(e.value)


def test_python_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.yaml"
    p.write_text(f"train:\n  lr: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    assert not marker.exists()


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(p)


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(Exception):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_coco_tiny80_config_points_at_the_shared_data():
    shared = REPO_ROOT.parent / "shared" / "data"
    cfg = load_config(CONFIGS / "coco_tiny80_memorize.yaml")
    assert cfg.model.num_classes == 80 and cfg.data.augment == "none" and from_dict(to_dict(cfg)) == cfg
    for split in (cfg.data.train, cfg.data.val):  # relative to the repository root, as the README runs it
        assert (REPO_ROOT / split.images).resolve() == (shared / "coco_tiny80" / "train2017").resolve()
    root = shared_data_dir()
    if root is None or root.resolve() != shared.resolve():
        reason = missing_data_reason("coco_tiny80", "the config's annotation files") or (
            f"needs the real coco_tiny80 at {shared}, where the config's relative paths lead: it is absent there "
            f"(the data in use is {root})")
        pytest.skip(reason)
    for split in (cfg.data.train, cfg.data.val):
        assert (REPO_ROOT / split.annotations).is_file()


def test_paper_tap_count_matches_the_backbones_default():
    import backbones
    from ssdlite.config.schema import PAPER_TAPS

    assert PAPER_TAPS == len(backbones.DEFAULT_OUT_STRIDES)
