"""CoreML export (conversion only: CoreML does not run on Linux): the .mlpackage holds our metadata,
the description fields and the raw outputs' shapes; --verify is refused; a missing extra is one line."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import run_tool, tiny_model
from ssdlite.config import from_dict
from ssdlite.deploy.backends import MissingExtra
from ssdlite.deploy.formats import EXPORT_FORMATS, exporter, format_for
from ssdlite.deploy.onnx_format import build_metadata
from ssdlite.model import build_model
from ssdlite.model.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained model (128 px, 4 classes) and its config."""
    tmp = tmp_path_factory.mktemp("coreml")
    cfg = from_dict({"model": tiny_model(4)})
    model = build_model(cfg, load_backbone_weights=False).eval()
    ckpt = tmp / "tiny.pt"
    save_checkpoint(ckpt, model, cfg)
    return ckpt, model, cfg


def _shape(feature) -> list[int]:
    return list(feature.type.multiArrayType.shape)


def test_mlpackage_holds_metadata_and_shapes(checkpoint, tmp_path, capsys):
    ct = pytest.importorskip("coremltools", reason="the coreml extra is not installed (pip install 'ssdlite[coreml]')")
    ckpt, model, cfg = checkpoint
    out = tmp_path / "tiny.mlpackage"
    assert run_tool("export", ["--checkpoint", ckpt, "--out", out]) == 0  # format from the suffix
    assert "(coreml," in capsys.readouterr().out and out.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.mlpackage"]  # no staging folder left
    spec = ct.utils.load_spec(str(out))
    h, w = cfg.model.input_size
    anchors = model.anchors((h, w))
    a = anchors.shape[0]
    assert [i.name for i in spec.description.input] == ["images"] and _shape(spec.description.input[0]) == [1, 3, h, w]
    assert [(o.name, _shape(o)) for o in spec.description.output] == [("cls_logits", [1, a, 5]), ("box_deltas", [1, a, 4])]
    expected = build_metadata(cfg, model.feature_sizes((h, w)), anchors.numpy(), "raw",
                              box_weights=model.box_weights, classification=model.classification)
    stored = dict(spec.description.metadata.userDefined)
    assert {k: v for k, v in stored.items() if k.startswith("ssdlite.")} == expected
    assert json.loads(stored["ssdlite.input_size"]) == [h, w]
    meta = spec.description.metadata
    assert meta.author == "ssdlite" and "mobilenet_v3_small" in meta.shortDescription and meta.versionString == "1"
    # a second export replaces the package whole
    assert run_tool("export", ["--checkpoint", ckpt, "--format", "coreml", "--out", out]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.mlpackage"]


def test_verify_is_refused_and_bad_names(checkpoint, tmp_path, capsys):
    pytest.importorskip("coremltools", reason="the coreml extra is not installed (pip install 'ssdlite[coreml]')")
    ckpt, _, _ = checkpoint
    assert EXPORT_FORMATS["coreml"].backend is None
    assert run_tool("export", ["--checkpoint", ckpt, "--out", tmp_path / "m.mlpackage", "--verify"]) != 0
    assert "--format coreml cannot be run on this machine, so it cannot be verified" in capsys.readouterr().err
    assert not (tmp_path / "m.mlpackage").exists()
    assert run_tool("export", ["--checkpoint", ckpt, "--format", "coreml", "--out", tmp_path / "m.mlmodel"]) != 0
    assert "should end with .mlpackage" in capsys.readouterr().err


def test_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # as if not installed
    with pytest.raises(MissingExtra) as e:
        exporter(format_for(None, "m.mlpackage"))
    assert "\n" not in str(e.value) and "pip install 'ssdlite[coreml]'" in str(e.value)
