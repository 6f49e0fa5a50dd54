"""Decode settings under ``model``: old files migrate, and a trained model refuses overrides of what it fixes.

``tests/data/legacy`` holds a checkpoint and an ONNX export written before the move (their configs
say ``loss.classification: focal`` and ``loss.box_weights: [8, 8, 4, 4]``) with the detections that
version gave; see its README.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from ssdlite.apps.cli import main as cli_main
from ssdlite.config import ConfigError, from_dict, load_config, migrate, to_dict, trained_config
from ssdlite.deploy.detector import Detector
from ssdlite.model.checkpoint import load_checkpoint, load_model

LEGACY = Path(__file__).parent / "data" / "legacy"
LEGACY_FILES = ["checkpoint_v1.pt", "export_v1.onnx"]


def _legacy_image() -> np.ndarray:
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (96, 128, 3)).astype(np.uint8)
    img[20:60, 30:90] = (250, 40, 40)
    return img


def test_legacy_checkpoint_stores_the_old_keys():
    stored = load_checkpoint(LEGACY / "checkpoint_v1.pt")["config"]
    assert stored["loss"]["classification"] == "focal" and stored["loss"]["box_weights"] == [8.0, 8.0, 4.0, 4.0]
    assert "classification" not in stored["model"]  # really written by the earlier layout


@pytest.mark.parametrize("name", LEGACY_FILES)
def test_legacy_files_give_the_detections_they_gave(name):
    det = Detector.from_checkpoint(LEGACY / name, threads=1)
    assert det.cfg.model.classification == "focal" and det.cfg.model.box_weights == (8.0, 8.0, 4.0, 4.0)
    assert det.classification == "focal" and det.box_weights == (8.0, 8.0, 4.0, 4.0)
    expected = json.loads((LEGACY / "expected.json").read_text())[name]
    (got,) = det([_legacy_image()])
    assert len(expected["scores"]) == 20 and got.names == expected["names"]
    np.testing.assert_array_equal(got.labels, expected["labels"])
    np.testing.assert_allclose(got.scores, expected["scores"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.boxes, expected["boxes"], rtol=0, atol=1e-3)


def test_migrate_moves_old_keys_and_refuses_a_disagreement():
    data = {"loss": {"classification": "focal", "box_weights": [1, 2, 3, 4], "neg_pos_ratio": 2}}
    moved = migrate(data)
    assert moved == {"loss": {"neg_pos_ratio": 2}, "model": {"classification": "focal", "box_weights": [1, 2, 3, 4]}}
    assert data["loss"]["classification"] == "focal"  # the input is not modified
    assert migrate({"loss": {"box_weights": [1, 1, 1, 1]}}) == {"model": {"box_weights": [1, 1, 1, 1]}}  # emptied section dropped
    same = migrate({"loss": {"box_weights": [1, 1, 1, 1]}, "model": {"box_weights": [1, 1, 1, 1]}})
    assert same == {"model": {"box_weights": [1, 1, 1, 1]}}
    with pytest.raises(ConfigError, match=r"loss.box_weights=\[1, 1, 1, 1\] and model.box_weights=\[2, 2, 2, 2\] disagree"):
        from_dict({"loss": {"box_weights": [1, 1, 1, 1]}, "model": {"box_weights": [2, 2, 2, 2]}})


def test_old_keys_in_a_yaml_file_and_in_overrides(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("loss:\n  classification: focal\n  box_weights: [5, 5, 2, 2]\n")
    with pytest.warns(FutureWarning, match=r"loss.(classification|box_weights) is now model.\1") as caught:
        cfg = load_config(path)
    assert cfg.model.classification == "focal" and cfg.model.box_weights == (5.0, 5.0, 2.0, 2.0)
    assert sorted(str(w.message).split(": ")[1].split(" ")[0] for w in caught) == ["loss.box_weights", "loss.classification"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = from_dict({}, ["loss.box_weights=[1,1,2,2]", "loss.classification=focal"])  # a training --set
    assert cfg.model.box_weights == (1.0, 1.0, 2.0, 2.0) and cfg.model.classification == "focal"
    assert "box_weights" not in to_dict(cfg)["loss"]


# every --set that would change what the trained outputs mean; each must be refused naming its key
REFUSED = {
    "loss.box_weights=[1,1,1,1]": "model.box_weights",  # the case: silently wrong boxes before
    "loss.classification=softmax": "model.classification",  # sigmoid scores read as a softmax before
    "model.box_weights=[10,10,5,5]": "model.box_weights",
    "model.classification=softmax": "model.classification",
    "model.anchors.min_ratio=0.1": "model.anchors.min_ratio",
    "model.anchors.layout=torchvision": "model.anchors.layout",
    "model.anchors.stride8_scales=[0.05]": "model.anchors.stride8_scales",
    "model.num_classes=4": "model.num_classes",
    "model.class_names=[a,b,c]": "model.class_names",
    "model.category_ids=[1,2,3]": "model.category_ids",
    "model.input_size=[320,320]": "model.input_size",
    "model.backbone.width_mult=0.5": "model.backbone.width_mult",
    "model.extra_channels=[64,32,32,64]": "model.extra_channels",
    "preprocess.mean=[0.485,0.456,0.406]": "preprocess.mean",
    "preprocess.std=[0.2,0.2,0.2]": "preprocess.std",
}


@pytest.mark.parametrize("name", LEGACY_FILES)
@pytest.mark.parametrize("override", sorted(REFUSED))
def test_trained_model_refuses_overrides_of_what_it_fixed(name, override):
    with pytest.raises(ConfigError, match=rf"{name}: {REFUSED[override]} is fixed by the trained model"):
        Detector.from_checkpoint(LEGACY / name, threads=1, overrides=[override])


@pytest.mark.parametrize("name", LEGACY_FILES)
def test_trained_model_takes_overrides_of_thresholds(name):
    det = Detector.from_checkpoint(LEGACY / name, threads=1, overrides=["postprocess.score_thresh=0.6",
                                                                       "postprocess.detections_per_img=5", "preprocess.resize=letterbox"])
    assert det.cfg.postprocess.score_thresh == 0.6 and det.cfg.preprocess.resize == "letterbox"
    (got,) = det([_legacy_image()])
    assert 0 < len(got) <= 5 and float(got.scores.min()) > 0.6


def test_checkpoint_config_and_load_model_refuse_too():
    with pytest.raises(ConfigError, match="model.box_weights is fixed"):
        load_model(LEGACY / "checkpoint_v1.pt", ["loss.box_weights=[1,1,1,1]"])
    stored = to_dict(from_dict({"model": {"num_classes": 3}}))
    assert trained_config(stored, ["model.num_classes=3"], "x").model.num_classes == 3  # the same value is no change


@pytest.mark.parametrize("name", LEGACY_FILES)
def test_detect_tool_refuses_in_one_line(name, tmp_path, capsys):
    image = tmp_path / "frame.png"
    import cv2

    cv2.imwrite(str(image), _legacy_image())
    code = cli_main(["detect", "--checkpoint", str(LEGACY / name), "--source", str(image), "--set", "loss.box_weights=[1,1,1,1]"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "model.box_weights is fixed by the trained model" in err, err
