"""Real Pascal VOC 2012 data (``voc_sample_rodm``: 100 images, their XML and the same boxes as COCO
json): read as VOC, converted to YOLO and back, and a short training + evaluation from VOC folders.

The training test runs on the synthetic shapes converted to VOC when the real folder is absent
(a user's clone), so the VOC path is always tested; only the VOC-vs-COCO comparison needs the real files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import missing_data_reason, require_shared, run_tool, shapes_config, tiny_model, write_config
from ssdlite._paths import shared_data_dir
from ssdlite.data.convert import convert_dataset
from ssdlite.data.formats import read_split

WHY = "the real VOC reader check"


def test_real_voc_reads_as_its_coco_json() -> None:
    """Same images and boxes as the COCO json, up to VOC's 1-based pixels: the json (CVAT's export)
    takes xmin as the 0-based left edge, we take xmin - 1 (the devkit's convention), so x1 and y1
    differ by exactly 1 px and x2, y2 agree."""
    root = require_shared("voc_sample_rodm", WHY)
    _, voc = read_split("voc", root, split="ImageSets_all.txt")
    _, coco = read_split("coco", root / "instances_default_cvat_coco_v1.json", images=str(root / "JPEGImages"))
    assert voc.counts["images"] == coco.counts["images"] == 100 and voc.counts["boxes"] == coco.counts["boxes"] == 273
    assert len(voc.class_names) == 20 and sorted(coco.class_names) == voc.class_names and not voc.problems
    assert voc.counts["crowd_boxes"] == 38  # VOC's difficult objects: ignore regions

    def by_file(ix) -> dict[str, list]:
        out = {}
        for i in range(len(ix.image_ids)):
            name = ix.name_blob[ix.name_offsets[i]:ix.name_offsets[i + 1]].tobytes().decode()
            a, b = ix.box_offsets[i], ix.box_offsets[i + 1]
            out[name] = sorted((ix.class_names[ix.labels[k]], *ix.boxes[k].tolist()) for k in range(a, b))
        return out

    v, c = by_file(voc), by_file(coco)
    assert v.keys() == c.keys()
    for name in v:
        assert [b[0] for b in v[name]] == [b[0] for b in c[name]], name
        diff = np.array([b[1:] for b in c[name]]) - np.array([b[1:] for b in v[name]])
        np.testing.assert_array_equal(diff, np.tile([1.0, 1.0, 0.0, 0.0], (len(diff), 1)), err_msg=name)


def test_real_voc_to_yolo_and_back(tmp_path: Path) -> None:
    """VOC -> YOLO -> VOC: the same images and integer boxes (difficult objects have no YOLO form)."""
    root = require_shared("voc_sample_rodm", WHY)
    convert_dataset(root, "yolo", tmp_path / "y", split="ImageSets_all.txt")
    convert_dataset(tmp_path / "y" / "data.yaml", "voc", tmp_path / "v")
    _, src = read_split("voc", root, split="ImageSets_all.txt")
    _, back = read_split("voc", tmp_path / "v", split="train")
    assert back.class_names == src.class_names and len(back.image_ids) == 100
    np.testing.assert_array_equal(back.boxes, src.boxes[~src.crowd])
    np.testing.assert_array_equal(back.labels, src.labels[~src.crowd])


def _voc_data(tmp_path: Path, make_shapes) -> tuple[Path, list[str]]:
    """The real VOC folder, or (a user's clone) the shapes dataset converted to VOC; and its image ids."""
    if missing_data_reason("voc_sample_rodm", WHY) is None:
        root = shared_data_dir() / "voc_sample_rodm"
        return root, (root / "ImageSets_all.txt").read_text().split()
    shapes = make_shapes(12, 4, 128)
    convert_dataset(shapes.train_annotations, "voc", tmp_path / "voc")
    return tmp_path / "voc", (tmp_path / "voc" / "ImageSets" / "Main" / "train.txt").read_text().split()


def test_train_and_evaluate_from_voc_folders(tmp_path: Path, make_shapes, capsys) -> None:
    """A short run trains from VOC folders and is scored on a VOC split (difficult objects ignored)."""
    root, ids = _voc_data(tmp_path, make_shapes)
    (tmp_path / "train.txt").write_text("\n".join(ids[:12]) + "\n")
    (tmp_path / "val.txt").write_text("\n".join(ids[12:16] or ids[:4]) + "\n")
    _, ix = read_split("voc", root)
    cfg = shapes_config(make_shapes(12, 4, 128))
    cfg["model"] = tiny_model(len(ix.class_names))
    cfg["data"]["train"] = {"format": "voc", "root": str(root), "split": str(tmp_path / "train.txt"),
                            "classes": list(ix.class_names)}
    cfg["data"]["val"] = {"format": "voc", "root": str(root), "split": str(tmp_path / "val.txt")}
    write_config(tmp_path / "voc.yaml", cfg)
    assert run_tool("train", ["--config", tmp_path / "voc.yaml", "--output", tmp_path / "run", "--no-progress"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "AP" in metrics[-1] and 0.0 <= metrics[-1]["AP"] <= 1.0
    capsys.readouterr()
    assert run_tool("eval", ["--checkpoint", tmp_path / "run" / "last.pt", "--data", root, "--split",
                             tmp_path / "val.txt", "--no-per-class"]) == 0
    out = capsys.readouterr().out
    assert "Average Precision" in out and f"on {len((tmp_path / 'val.txt').read_text().split())} images" in out


def test_missing_voc_folder_is_one_line(tmp_path: Path, capsys) -> None:
    cfg = {"model": tiny_model(2), "data": {"train": {"format": "voc", "root": str(tmp_path / "VOCdevkit")}},
           "train": {"epochs": 1, "workers": 0}}
    write_config(tmp_path / "c.yaml", cfg)
    assert run_tool("train", ["--config", tmp_path / "c.yaml", "--output", tmp_path / "run", "--no-progress"]) == 2
    assert f"train: error: VOC folder {tmp_path / 'VOCdevkit'} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("split", ["train", None])
def test_yolo_training_reads_its_split(tmp_path: Path, make_shapes, split) -> None:
    """data.train.format=yolo (split defaulting to train) gives the trainer the YOLO split."""
    from ssdlite.config import from_dict
    from ssdlite.train.trainer import Trainer

    shapes = make_shapes(12, 4, 128)
    convert_dataset(shapes.train_annotations, "yolo", tmp_path / "y")
    sets = ["data.train.format=yolo", f"data.train.root={tmp_path / 'y' / 'data.yaml'}"]
    ds = Trainer._load_train_set(from_dict({"model": tiny_model(4)}, sets + ([f"data.train.split={split}"] if split else [])))
    names = [c["name"] for c in json.loads(shapes.train_annotations.read_text())["categories"]]
    assert len(ds) == 12 and ds.class_names == names and ds.num_classes == 4
    image, target = ds[0]
    assert image.shape[1:] == (128, 128) and target["boxes"].numel() > 0


def test_train_and_evaluate_from_yolo_folders(tmp_path: Path, make_shapes, capsys) -> None:
    """Train from a YOLO split and score on another YOLO dataset's val split (image sizes from headers)."""
    shapes = make_shapes(12, 4, 128)
    convert_dataset(shapes.train_annotations, "yolo", tmp_path / "train")
    convert_dataset(shapes.val_annotations, "yolo", tmp_path / "val")
    cfg = shapes_config(shapes)
    cfg["data"]["train"] = {"format": "yolo", "root": str(tmp_path / "train" / "data.yaml")}
    cfg["data"]["val"] = {"format": "yolo", "root": str(tmp_path / "val" / "data.yaml")}
    write_config(tmp_path / "yolo.yaml", cfg)
    assert run_tool("train", ["--config", tmp_path / "yolo.yaml", "--output", tmp_path / "run", "--no-progress"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "AP" in metrics[-1]
    capsys.readouterr()
    assert run_tool("eval", ["--checkpoint", tmp_path / "run" / "last.pt", "--data", tmp_path / "val" / "data.yaml",
                             "--no-per-class"]) == 0
    assert "on 4 images" in capsys.readouterr().out
