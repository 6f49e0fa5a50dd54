"""Hostile and wrong files: pickle payloads in checkpoints, bad YAML, checkpoints of another model,
ONNX files that are not ours. Each is refused with one clear error and no file can run code."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import ssdlite
from helpers import ShapesData, run_tool, shapes_config, tiny_model, write_config
from ssdlite.model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from ssdlite.config import ConfigError, from_dict, load_config, to_dict


class Payload:
    """Pickles as a call to ``open(marker, "w")``: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tiny_cfg(num_classes: int = 2, **model):
    m = tiny_model(num_classes)
    m.update(model)
    return from_dict({"model": m})


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    """A real checkpoint of a tiny 2-class model."""
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    save_checkpoint(path, ssdlite.build_model(cfg), cfg, epoch=1)
    return path


def _evil(kind: str, genuine: Path, out: Path, marker: Path) -> Path:
    """A checkpoint carrying the payload: alone, inside the weights, or hidden in a genuine checkpoint."""
    if kind == "top":
        obj = Payload(marker)
    elif kind == "in_weights":
        obj = {"format": "ssdlite", "version": 1, "config": to_dict(_tiny_cfg()), "model": {"w": Payload(marker)}}
    else:
        obj = load_checkpoint(genuine)
        obj["notes"] = Payload(marker)
    path = out / f"evil_{kind}.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=(kind != "legacy"))
    return path


PAYLOADS = ["top", "in_weights", "in_genuine", "legacy"]


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.fault(
    f"pickle payload in a checkpoint ({k.replace('_', ' ')})", "load_checkpoint refuses it (CheckpointError: refused, "
    "could run code); the payload never runs")) for k in PAYLOADS])
def test_pickle_payload_refused_by_load_checkpoint(kind, genuine, tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = _evil(kind, genuine, tmp_path, marker)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "refused" in str(e.value) and str(path) in str(e.value) and "could run code" in str(e.value)
    assert not marker.exists()


def _source_image(tmp_path: Path) -> Path:
    p = tmp_path / "frame.jpg"
    cv2.imwrite(str(p), np.full((64, 80, 3), 90, np.uint8))
    return p


ENTRY_POINTS = {
    "load_model": "CheckpointError 'refused'",
    "Detector.from_checkpoint": "CheckpointError 'refused'",
    "tools/eval.py --checkpoint": "exit 2, one error line 'refused'",
    "tools/detect.py --checkpoint": "exit 2, one error line 'refused'",
    "tools/export.py --checkpoint": "exit 2, one error line 'refused'",
    "tools/train.py --resume": "exit 2, one error line 'refused'",
}


@pytest.mark.parametrize("entry", [pytest.param(k, marks=pytest.mark.fault(
    f"pickle payload via {k}", f"{v}; the payload never runs")) for k, v in ENTRY_POINTS.items()])
def test_pickle_payload_refused_everywhere(entry, genuine, shapes_data: ShapesData, tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    evil = _evil("in_genuine", genuine, tmp_path, marker)
    if entry == "load_model":
        with pytest.raises(CheckpointError, match="refused"):
            load_model(evil)
    elif entry == "Detector.from_checkpoint":
        with pytest.raises(CheckpointError, match="refused"):
            ssdlite.Detector.from_checkpoint(evil)
    else:
        if entry.startswith("tools/eval"):
            argv = ["eval", "--checkpoint", evil, "--images", shapes_data.val_images,
                    "--annotations", shapes_data.val_annotations]
        elif entry.startswith("tools/detect"):
            argv = ["detect", "--checkpoint", evil, "--source", _source_image(tmp_path)]
        elif entry.startswith("tools/export"):
            argv = ["export", "--checkpoint", evil, "--out", tmp_path / "x.onnx"]
        else:
            out = tmp_path / "run"
            out.mkdir()
            evil.replace(out / "last.pt")
            cfg = write_config(tmp_path / "c.yaml", shapes_config(shapes_data))
            argv = ["train", "--config", cfg, "--output", out, "--resume", "--no-progress"]
        code = run_tool(argv[0], argv[1:])
        err = capsys.readouterr().err
        assert code == 2, err
        errors = [line for line in err.splitlines() if ": error:" in line]
        assert len(errors) == 1 and "refused" in errors[0], err
        assert not (tmp_path / "x.onnx").exists()
    assert not marker.exists()


@pytest.mark.fault("pickle payload as backbone weights (backbones.create(weights=...))",
                   "ValueError naming the file; the payload never runs")
def test_pickle_payload_as_backbone_weights_never_runs(tmp_path) -> None:
    import backbones

    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pt"
    torch.save({"features.0.0.weight": Payload(marker)}, path)
    with pytest.raises(ValueError, match="weights.pt"):
        backbones.create("mobilenet_v3_small", weights=path)
    cfg = from_dict({}, ["model.backbone.name=mobilenet_v3_small", f"model.backbone.weights={path}"])
    with pytest.raises(ValueError, match="weights.pt"):
        ssdlite.build_model(cfg)
    assert not marker.exists()


@pytest.mark.fault("pickle payload as backbone weights: wording", "the error says the file was refused because it could "
                   "run code (no ANSI escapes, no advice to load it unsafely)")
def test_pickle_payload_as_backbone_weights_message(tmp_path) -> None:
    import backbones

    path = tmp_path / "weights.pt"
    torch.save({"features.0.0.weight": Payload(tmp_path / "pwned")}, path)
    with pytest.raises(ValueError) as e:
        backbones.create("mobilenet_v3_small", weights=path)
    msg = str(e.value)
    assert "refused" in msg and "code" in msg and "\x1b[" not in msg


# ----------------------------------------------------------------------------- YAML


YAML_FAULTS = [
    ("python tag: object/apply", "train:\n  lr: !!python/object/apply:os.system ['touch {marker}']\n",
     ["not valid YAML", "python tags are refused"]),
    ("python tag: object/new", "train: !!python/object/new:os.system ['touch {marker}']\n",
     ["not valid YAML", "python tags are refused"]),
    ("python tag: name", "model:\n  backbone:\n    name: !!python/name:os.system\n", ["not valid YAML", "python tags are refused"]),
    ("unknown key", "model:\n  backbone:\n    nmae: mobilenet_v2\n", ["unknown key model.backbone.nmae", "'name'", "'width_mult'"]),
    ("wrong type", "train:\n  epochs: ten\n", ["train.epochs must be an integer, got 'ten'"]),
    ("wrong type (list for a number)", "train:\n  lr: [0.1]\n", ["train.lr must be a number"]),
    ("negative learning rate", "train:\n  lr: -0.1\n", ["train.lr=-0.1 is out of range: must be > 0"]),
    ("score threshold above 1", "postprocess:\n  score_thresh: 1.5\n", ["postprocess.score_thresh=1.5 is out of range: must be in [0, 1]"]),
    ("unknown backbone name", "model:\n  backbone:\n    name: mobilenet_v9\n",
     ["model.backbone.name='mobilenet_v9' is not a known backbone; choose one of", "'mobilenet_v2'", "'mobilenet_v3_large'", "timm:<model>"]),
    ("key repeated in one mapping", "train:\n  lr: 0.1\n  lr: 0.01\n", ["key 'lr' appears twice in one mapping (first on line 2)"]),
    ("unknown choice", "data:\n  augment: heavy\n", ["data.augment='heavy' is not allowed; choose one of ['ssdlite', 'ssd', 'none']"]),
]


@pytest.mark.parametrize("name, text, fragments", [pytest.param(n, t, f, id=n, marks=pytest.mark.fault(
    f"YAML config: {n}", "tools/train.py exits 2 with one error line naming the file, the key and the allowed values; "
    "nothing runs")) for n, t, f in YAML_FAULTS])
def test_bad_yaml_config(name, text, fragments, tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text.format(marker=marker))
    code = run_tool("train", ["--config", cfg, "--output", tmp_path / "run", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"train: error: {cfg}: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.fault("YAML number written 1e-3 / 1e6", "read as a number (YAML 1.2), in files and in --set; 'not a number' "
                   "only for real strings")
def test_yaml_scientific_notation_is_a_number(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: 1e-3\n  weight_decay: 4E-5\n  time_budget_s: 1e3\n")
    c = load_config(cfg, ["train.clip_grad_norm=1e1"])
    assert (c.train.lr, c.train.weight_decay, c.train.time_budget_s, c.train.clip_grad_norm) == (1e-3, 4e-5, 1e3, 10.0)
    with pytest.raises(ConfigError, match="train.lr must be a number, got '1e'"):
        from_dict({}, ["train.lr=1e"])
    with pytest.raises(ConfigError, match=r"model.class_names\[1\] must be a string, got 100000.0"):
        from_dict({}, ["model.num_classes=2", "model.class_names=[a, 1e5]"])  # a name that reads as a number: quote it
    assert from_dict({}, ["model.num_classes=2", "model.class_names=[a, '1e5']"]).model.class_names == ("a", "1e5")


@pytest.mark.fault("checkpoint whose stored config names an unknown backbone", "clear error naming the valid backbones")
def test_checkpoint_with_unknown_backbone(genuine, tmp_path) -> None:
    state = load_checkpoint(genuine)
    state["config"]["model"]["backbone"]["name"] = "resnet50"
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet50'; choose one of mobilenet_v1, mobilenet_v2"):
        load_model(path)


@pytest.mark.fault("checkpoint whose stored config is invalid", "CheckpointError naming the file and the bad key")
def test_checkpoint_with_invalid_config(genuine, tmp_path) -> None:
    state = load_checkpoint(genuine)
    state["config"]["postprocess"]["score_thresh"] = 7.0
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"odd\.pt: its stored config is not valid: postprocess\.score_thresh=7\.0"):
        load_model(path)


# ----------------------------------------------------------------------------- another model's checkpoint


def _other_class_count_checkpoint(genuine: Path, tmp_path: Path) -> Path:
    """The genuine 2-class weights under a config that says 5 classes (another class count)."""
    state = load_checkpoint(genuine)
    state["config"]["model"]["num_classes"] = 5
    path = tmp_path / "other.pt"
    torch.save(state, path)
    return path


@pytest.mark.fault("checkpoint from another class count", "CheckpointError listing the tensors that differ, with both shapes")
def test_other_class_count_names_the_tensors(genuine, tmp_path) -> None:
    path = _other_class_count_checkpoint(genuine, tmp_path)
    for load in (load_model, ssdlite.Detector.from_checkpoint):
        with pytest.raises(CheckpointError) as e:
            load(path)
        msg = str(e.value)
        assert "does not fit the model" in msg and "tensors differ in shape" in msg
        assert "cls_heads.0" in msg and "file (9," in msg and "vs model (18," in msg  # 3 anchors x (C + 1)


@pytest.mark.fault("checkpoint + --set changing the architecture", "tools/export.py and tools/detect.py exit 2 naming "
                   "the key a trained model fixes")
def test_override_of_architecture_names_the_key(genuine, tmp_path, capsys) -> None:
    change = ["--set", "model.extra_channels=[64,32,32,64]"]
    for tool, argv in (("export", ["--checkpoint", genuine, "--out", tmp_path / "x.onnx", *change]),
                       ("detect", ["--checkpoint", genuine, "--source", _source_image(tmp_path), *change])):
        code = run_tool(tool, argv)
        err = capsys.readouterr().err
        assert code == 2 and "model.extra_channels is fixed by the trained model ([64, 32, 32, 16])" in err, err


@pytest.mark.fault("tools/eval.py --checkpoint with --set changing the model", "refused naming the key, never "
                   "silently ignored")
def test_eval_does_not_ignore_overrides(genuine, shapes_data: ShapesData, capsys) -> None:
    code = run_tool("eval", ["--checkpoint", genuine, "--images", shapes_data.val_images, "--annotations",
                             shapes_data.val_annotations, "--set", "model.extra_channels=[64,32,32,64]"])
    err = capsys.readouterr().err
    assert code == 2 and "model.extra_channels is fixed by the trained model" in err


@pytest.mark.fault("detector checkpoint given as backbone weights", "ValueError naming a missing tensor and what the file holds")
def test_detector_checkpoint_as_backbone_weights(genuine) -> None:
    import backbones

    with pytest.raises(ValueError, match=r"tensor 'features\.0\.0\.weight' .* is missing from the file .*'backbone\.features"):
        backbones.create("mobilenet_v3_small", width_mult=0.5, weights=genuine)


@pytest.mark.fault("backbone weights of another architecture", "ValueError naming the tensor and both shapes")
def test_other_architecture_backbone_weights(tmp_path) -> None:
    import backbones

    path = tmp_path / "v2.pt"
    torch.save(backbones.create("mobilenet_v2").state_dict(), path)
    with pytest.raises(ValueError, match=r"tensor 'features\.0\.0\.weight' has shape \(32, 3, 3, 3\) in the file but \(16, 3, 3, 3\)"):
        backbones.create("mobilenet_v3_small", weights=path)


@pytest.mark.fault("file that is not a checkpoint (text, ONNX, empty, a folder)", "CheckpointError naming the file")
def test_not_a_checkpoint(tmp_path) -> None:
    cases = {"notes.pt": b"just text", "empty.pt": b"", "model.onnx.pt": b"\x08\x07\x12\x07pytorch"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            load_checkpoint(tmp_path / name)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an ssdlite checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": "ssdlite", "config": {}, "model": [1, 2]}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="'model' is not a state dict"):
        load_checkpoint(tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(tmp_path)


# ----------------------------------------------------------------------------- ONNX files that are not ours


@pytest.fixture(scope="module")
def foreign_onnx(tmp_path_factory) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 128, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 128, 128])],
    )
    path = tmp_path_factory.mktemp("onnx") / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("tool", [pytest.param(t, marks=pytest.mark.fault(
    f"ONNX file that is not ours (no metadata) via tools/{t}.py", "exit 2, one error line: not an ssdlite export, "
    "how to make one")) for t in ("detect", "eval")])
def test_foreign_onnx_via_tools(tool, foreign_onnx, shapes_data: ShapesData, tmp_path, capsys) -> None:
    if tool == "detect":
        argv = ["--checkpoint", foreign_onnx, "--source", _source_image(tmp_path)]
    else:
        argv = ["--checkpoint", foreign_onnx, "--images", shapes_data.val_images,
                "--annotations", shapes_data.val_annotations]
    code = run_tool(tool, argv)
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "not an ssdlite export" in errors[0] and "export" in errors[0], err


@pytest.mark.fault("not-ONNX bytes in a .onnx file, or a .pt with --backend onnxruntime", "ValueError naming the file")
def test_wrong_file_for_the_onnx_backend(genuine, tmp_path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(genuine.read_bytes())
    with pytest.raises(ValueError, match=r"model\.onnx is not a loadable ONNX model"):
        ssdlite.Detector.from_checkpoint(fake)
    with pytest.raises(ValueError, match=r"the onnxruntime back end runs \.onnx files, not .*: use backend 'torch'; export it"):
        ssdlite.Detector.from_checkpoint(genuine, backend="onnxruntime")
    with pytest.raises(ValueError, match=r"the torch back end runs checkpoint \(\.pt\) files, not .*model\.onnx: use backend 'onnxruntime'"):
        ssdlite.Detector.from_checkpoint(fake, backend="torch")
