"""VOC and YOLO readers, their bad data, the format table, conversion and the config keys.

Every bad case is named once by check-data (file and object / line) and skipped and counted by the
dataset training uses; round trips keep images, classes, class order and boxes up to each format's
precision. The real VOC sample (``voc_sample_rodm``) is in ``test_data_formats_real.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import run_tool
from ssdlite.data.coco import CocoDetection
from ssdlite.data.convert import convert_dataset
from ssdlite.data.formats import FORMAT_NAMES, detect_format, read_split


def _jpg(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return path.read_bytes()


def _voc_object(name: str, box: tuple, difficult: int = 0, truncated: int = 0) -> str:
    coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return (f"<object><name>{name}</name><truncated>{truncated}</truncated><difficult>{difficult}</difficult>"
            f"<bndbox>{coords}</bndbox></object>")


def _voc_xml(stem: str, objects: list[str], w: int = 64, h: int = 48) -> str:
    return (f"<annotation><filename>{stem}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>")


@pytest.fixture
def voc_dir(tmp_path: Path) -> Path:
    """A VOC folder: 5 good images (one with a difficult and a truncated object) and every bad case."""
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    xmls = {
        "a": [_voc_object("cat", (1, 1, 10, 20)), _voc_object("dog", (20, 5, 40, 30), difficult=1, truncated=1)],
        "b": [_voc_object("dog", (5, 5, 30, 30)), _voc_object("cat", (30, 10, 20, 40))],  # x2 < x1
        "c": [_voc_object("cat", (50, 10, 90, 40))],  # 26 px outside the 64 px wide image: clamped
        "d": [_voc_object("horse", (5, 5, 30, 30)), _voc_object("cat", (2, 2, 12, 12))],  # unknown class
        "e": [_voc_object("dog", (3, 3, 33, 33))],
    }
    for i, (stem, objs) in enumerate(xmls.items()):
        (root / "Annotations" / f"{stem}.xml").write_text(_voc_xml(stem, objs))
        _jpg(root / "JPEGImages" / f"{stem}.jpg", seed=i)
    (root / "Annotations" / "f.xml").write_text("<annotation><size><width>64</width>")  # malformed
    _jpg(root / "JPEGImages" / "f.jpg")
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\nc\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("d\ne\n")
    return root


def test_voc_reader_boxes_convention_and_flags(voc_dir: Path) -> None:
    images, ix = read_split("voc", voc_dir, split="train")
    assert images == voc_dir / "JPEGImages" and ix.class_names == ["cat", "dog"] and ix.category_ids == [1, 2]
    # VOC's 1-based inclusive pixels: xmin=1..xmax=10 covers the continuous [0, 10]
    np.testing.assert_array_equal(ix.boxes[:2], [[0, 0, 10, 20], [19, 4, 40, 30]])
    assert ix.crowd[:2].tolist() == [False, True] and ix.attributes[:2].tolist() == [0, 1]  # difficult, truncated
    ds = CocoDetection(images, ix)
    assert len(ds) == 3 and ds.stats["crowd_boxes"] == 1 and ds.stats["invalid_boxes"] == 1
    assert ds.stats["clamped_boxes"] == 1 and ds[2][1]["boxes"].tolist() == [[49.0, 9.0, 64.0, 40.0]]


def test_voc_bad_data_reported_once(voc_dir: Path, capsys) -> None:
    code = run_tool("check_data", [voc_dir, "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    lines = [line for line in out.splitlines() if line.split(":")[0] in ("clamped_boxes", "invalid_boxes", "malformed_annotations")]
    assert sorted(lines) == sorted([
        "clamped_boxes: image 3, Annotations/c.xml object 1: box [49, 9, 90, 40] extends 26 px outside the 64x48 image; "
        "clamped",
        "invalid_boxes: image 2, Annotations/b.xml object 2: box [29, 9, 20, 40] is not x1 <= x2, y1 <= y2 finite "
        "numbers; dropped",
        "malformed_annotations: Annotations/f.xml: not a readable xml (no element found: line 1, column 35); image dropped",
    ]), out
    # with the class list given, another name is an unknown category
    _, ix = read_split("voc", voc_dir, split="val", class_names=["cat", "dog"])
    assert [str(p) for p in ix.problems] == [
        "unknown_category: image 1, Annotations/d.xml object 1: class 'horse' is not one of the 2 classes; object dropped"]
    assert ix.counts["boxes"] == 2 and ix.counts["annotations"] == 3


@pytest.fixture
def yolo_yaml(tmp_path: Path) -> Path:
    """A YOLO dataset: names as a dict, val as a list of folders, and every bad case."""
    root = tmp_path / "yolo"
    good = _jpg(root / "images" / "train" / "a.jpg")
    (root / "images" / "train" / "t.jpg").write_bytes(good[:600])  # truncated JPEG
    (root / "images" / "train" / "bad.jpg").write_text("not an image")
    _jpg(root / "images" / "train" / "back.jpg")  # no label file: a background image
    _jpg(root / "images" / "val" / "d.jpg")
    _jpg(root / "extra" / "images" / "val" / "d.jpg")  # the same name in another folder
    labels = root / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.5 0.5 0.5\n1 0.5 1.2 0.5 0.5\n5 0.5 0.5 0.2 0.2\n"
                                  "1 0.9 0.5 0.4 0.2\n")
    (labels / "t.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (labels / "bad.txt").write_text("")
    (labels / "zz.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # no image
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "val" / "d.txt").write_text("1 0.25 0.25 0.5 0.5\n")
    yaml = root / "data.yaml"
    yaml.write_text("path: .\ntrain: images/train\nval: [images/val, extra/images/val]\nnames: {0: cat, 1: dog}\n")
    return yaml


def test_yolo_reader_and_training_samples(yolo_yaml: Path) -> None:
    root, ix = read_split("yolo", yolo_yaml, split="train")
    assert root == yolo_yaml.parent / "images" / "train" and ix.class_names == ["cat", "dog"] and ix.normalized
    assert ix.counts["images"] == 4 and ix.counts["boxes"] == 3 and ix.counts["images_empty"] == 2
    ds = CocoDetection(root, ix, on_unreadable="substitute")
    image, target = ds[0]  # a.jpg, 64x48: the normalized boxes are scaled when the file is read
    np.testing.assert_allclose(target["boxes"].numpy(), [[16, 12, 48, 36], [44.8, 19.2, 64, 28.8]], atol=1e-4)
    assert target["labels"].tolist() == [0, 1]
    assert ds[1][1]["boxes"].shape == (0, 4)  # back.jpg: background, kept
    ds[2], ds[3]  # bad.jpg and t.jpg: skipped, substituted and counted
    assert ds.stats["unreadable_images"] == 2


def test_yolo_bad_data_reported_once(yolo_yaml: Path, capsys) -> None:
    code = run_tool("check_data", [yolo_yaml, "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    found = [line for line in out.splitlines() if not line.startswith(("check-data", "note", "summary"))]
    root = yolo_yaml.parent
    assert found == [
        "malformed_annotations: image 1, labels/train/a.txt line 2: 4 values, expected 5 numbers (class cx cy w h) or a "
        "polygon (class x1 y1 x2 y2 x3 y3 ...); line dropped",
        "invalid_boxes: image 1, labels/train/a.txt line 3: coordinates 0.5 1.2 0.5 0.5 are not all in [0, 1] (YOLO labels "
        "are fractions of the image size); line dropped",
        "unknown_category: image 1, labels/train/a.txt line 4: class id 5 is not in 0..1 (2 names in data.yaml); line dropped",
        "clamped_boxes: image 1, labels/train/a.txt line 5: box [0.7, 0.4, 1.1, 0.6] extends 0.1 of the image size "
        "outside the image; clamped",
        "orphan_labels: labels/train/zz.txt: label file without an image of the same name; ignored",
        f"unreadable_images: image 3, {root}/images/train/bad.jpg: empty or not an image format OpenCV reads (sample skipped)",
        f"unreadable_images: image 4, {root}/images/train/t.jpg: truncated JPEG: no end-of-image marker (FF D9) at its end "
        "(sample skipped)",
        "duplicate_file_names: extra/images/val/d.jpg: an image named d.jpg was already read from "
        f"{root}/images/val/d.jpg; this one is dropped (converted datasets name images by file name)",
    ], out


def test_format_table_and_detection(voc_dir: Path, yolo_yaml: Path, shapes_data) -> None:
    assert FORMAT_NAMES == ("coco", "voc", "yolo")
    from ssdlite.config.schema import _CHOICES

    assert _CHOICES["data.train.format"] == _CHOICES["data.val.format"] == FORMAT_NAMES
    assert detect_format(voc_dir)[0] == "voc" and detect_format(yolo_yaml.parent) == ("yolo", yolo_yaml)
    assert detect_format(shapes_data.train_annotations)[0] == "coco"
    with pytest.raises(ValueError, match="cannot tell the format of"):
        detect_format(voc_dir / "JPEGImages")
    with pytest.raises(ValueError, match="VOC folder .*VOC/Annotations/Annotations does not exist"):
        read_split("voc", voc_dir / "Annotations")
    with pytest.raises(ValueError, match="VOC split 'trainval' not found: none of .*ImageSets/Main/trainval.txt"):
        read_split("voc", voc_dir, split="trainval")
    yolo_yaml.write_text(yolo_yaml.read_text() + "colour: red\n")
    with pytest.raises(ValueError, match=r"data.yaml: unknown key\(s\) \['colour'\]"):
        read_split("yolo", yolo_yaml)


def _coco_boxes(ann_json: Path) -> tuple[list[str], dict[str, list]]:
    """Class names in id order, and ``{file_name: sorted [(class name, x, y, w, h, iscrowd)]}`` of a COCO json."""
    data = json.loads(ann_json.read_text())
    cats = {c["id"]: c["name"] for c in data["categories"]}
    files = {im["id"]: im["file_name"] for im in data["images"]}
    out: dict[str, list] = {f: [] for f in files.values()}
    for a in data["annotations"]:
        out[files[a["image_id"]]].append((cats[a["category_id"]], *a["bbox"], a.get("iscrowd", 0)))
    return [cats[k] for k in sorted(cats)], {f: sorted(v) for f, v in out.items()}


def test_round_trips_keep_images_classes_and_boxes(shapes_data, tmp_path: Path) -> None:
    """COCO -> YOLO -> COCO: boxes within 1e-6 of the image size; -> VOC -> COCO: VOC's integer pixels."""
    src = shapes_data.val_annotations
    names, boxes = _coco_boxes(src)
    size = shapes_data.size
    assert run_tool("convert_data", [src, "--to", "yolo", "--output", tmp_path / "y"]) == 0
    assert (tmp_path / "y" / "images" / "val").is_dir() and (tmp_path / "y" / "images" / "val").iterdir()
    assert run_tool("convert_data", [tmp_path / "y" / "data.yaml", "--to", "coco", "--output", tmp_path / "c"]) == 0
    names2, boxes2 = _coco_boxes(tmp_path / "c" / "annotations" / "instances_val.json")
    assert names2 == names and boxes2.keys() == boxes.keys()
    for f in boxes:
        got = np.array([b[1:5] for b in boxes2[f]])
        want = np.array([b[1:5] for b in boxes[f]])
        assert [b[0] for b in boxes2[f]] == [b[0] for b in boxes[f]]
        np.testing.assert_allclose(got, want, atol=1e-6 * size, rtol=0)
    # -> VOC (copied images) -> COCO: integer pixels, within half a pixel of the source
    assert run_tool("convert_data", [tmp_path / "c" / "annotations" / "instances_val.json", "--to", "voc",
                                     "--output", tmp_path / "v", "--copy"]) == 0
    assert not (tmp_path / "v" / "JPEGImages" / next(iter(boxes))).is_symlink()
    convert_dataset(tmp_path / "v", "coco", tmp_path / "c2")
    names3, boxes3 = _coco_boxes(tmp_path / "c2" / "annotations" / "instances_val.json")
    assert names3 == names and boxes3.keys() == boxes.keys()
    for f in boxes:
        got, want = np.array([b[1:5] for b in boxes3[f]]), np.array([b[1:5] for b in boxes[f]])
        xyxy = lambda b: np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)  # noqa: E731
        np.testing.assert_allclose(xyxy(got), xyxy(want), atol=0.5 + 1e-6, rtol=0)
        assert np.all(got == np.round(got))


def test_voc_round_trip_is_exact(voc_dir: Path, tmp_path: Path) -> None:
    """VOC -> COCO -> VOC gives the same integer boxes, difficult and truncated flags."""
    convert_dataset(voc_dir, "coco", tmp_path / "c", split="train")
    coco = json.loads((tmp_path / "c" / "annotations" / "instances_train.json").read_text())
    assert coco["annotations"][0]["bbox"] == [0.0, 0.0, 10.0, 20.0]  # xmin=1..xmax=10: 10 px wide
    assert coco["annotations"][1]["iscrowd"] == 1 and coco["annotations"][1]["attributes"]["truncated"]
    convert_dataset(tmp_path / "c" / "annotations" / "instances_train.json", "voc", tmp_path / "v")
    a = (tmp_path / "v" / "Annotations" / "a.xml").read_text()
    assert "<xmin>1</xmin>" in a and "<xmax>10</xmax>" in a and "<ymax>20</ymax>" in a
    assert "<difficult>1</difficult>" in a and "<truncated>1</truncated>" in a
    _, ix = read_split("voc", tmp_path / "v", split="train")
    _, ix0 = read_split("voc", voc_dir, split="train")
    np.testing.assert_array_equal(ix.boxes, ix0.boxes)
    assert ix.crowd.tolist() == ix0.crowd.tolist() and ix.attributes.tolist() == ix0.attributes.tolist()
    assert (tmp_path / "v" / "JPEGImages" / "a.jpg").is_symlink()  # linked by default


def test_convert_errors_are_one_line(voc_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert run_tool("convert_data", [voc_dir, "--to", "yolo", "--output", tmp_path / "full"]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert run_tool("convert_data", [tmp_path / "nothing", "--to", "yolo", "--output", tmp_path / "o"]) == 2
    assert f"dataset {tmp_path / 'nothing'} does not exist" in capsys.readouterr().err
    (voc_dir / "ImageSets" / "Main" / "empty.txt").write_text("")
    assert run_tool("convert_data", [voc_dir, "--split", "empty", "--to", "coco", "--output", tmp_path / "o"]) == 2
    assert "no image to convert" in capsys.readouterr().err


def test_config_split_keys_are_validated(tmp_path: Path) -> None:
    from ssdlite.config import ConfigError, from_dict

    cfg = from_dict({}, ["data.train.format=voc", "data.train.root=VOC2012", "data.train.split=trainval",
                         "data.val.format=yolo", "data.val.root=data.yaml", "data.val.split=val"])
    assert cfg.data.train.root == "VOC2012" and cfg.data.val.format == "yolo"
    bad = {
        "data.train.format=vox": "data.train.format='vox' is not allowed; choose one of ['coco', 'voc', 'yolo']",
        "data.train.folder=x": "unknown key data.train.folder",
        "data.train.root=VOC2012": "data.train.root does not apply to data.train.format='coco' (it uses images, annotations)",
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            from_dict({}, [override])
    with pytest.raises(ConfigError, match="data.val.split='valid' is not a YOLO split"):
        from_dict({}, ["data.val.format=yolo", "data.val.root=d.yaml", "data.val.split=valid"])


def test_index_cache_is_used_and_invalidated(voc_dir: Path, yolo_yaml: Path) -> None:
    """A second read comes from the cache (same index, problems too); editing a file reads it again."""
    import os

    from ssdlite.data.index_cache import cache_dir
    from ssdlite.data.voc import read_voc_index
    from ssdlite.data.yolo import read_yolo_index

    for read, edit in ((lambda **k: read_voc_index(voc_dir, "train", **k), voc_dir / "Annotations" / "c.xml"),
                       (lambda **k: read_yolo_index(yolo_yaml, "train", **k), yolo_yaml.parent / "labels" / "train" / "a.txt")):
        _, fresh = read(cache=False)
        _, first = read()
        before = set(os.listdir(cache_dir()))
        _, cached = read()
        assert set(os.listdir(cache_dir())) == before
        for a, b in zip(fresh, cached):
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b)
            else:
                assert a == b
        edit.write_text(edit.read_text().replace("</object>", "</object>" + _voc_object("cat", (2, 2, 9, 9)))
                        if edit.suffix == ".xml" else "0 0.5 0.5 0.2 0.2\n")
        _, changed = read()
        assert changed.counts["boxes"] != cached.counts["boxes"]


def test_eval_ground_truth_refuses_a_model_of_other_classes(voc_dir: Path) -> None:
    """A model whose class names match none of the split's objects would score nothing (AP -1 everywhere): an error."""
    from ssdlite.config import from_dict
    from ssdlite.data.convert import split_ground_truth

    split = from_dict({"data": {"val": {"format": "voc", "root": str(voc_dir), "split": "val"}}}).data.val
    _, gt = split_ground_truth(split, class_names=["cat", "dog"])
    assert len(gt["annotations"]) == 2  # d's cat and e's dog (d's horse is not a class)
    with pytest.raises(ValueError, match=r"none of its objects is of the model's classes \(class_0, class_1\).*'horse'"):
        split_ground_truth(split, class_names=["class_0", "class_1"])


def test_voc_difficult_objects_reach_the_ground_truth_as_difficult_ignore_regions(voc_dir: Path) -> None:
    from ssdlite.config import from_dict
    from ssdlite.data.convert import split_ground_truth

    split = from_dict({"data": {"val": {"format": "voc", "root": str(voc_dir), "split": "train"}}}).data.val
    _, gt = split_ground_truth(split, class_names=["cat", "dog"])
    flags = [(a["iscrowd"], a.get("difficult", 0)) for a in gt["annotations"]]
    assert flags.count((1, 1)) == 1 and all(f in ((0, 0), (1, 1)) for f in flags)  # a's dog: COCO ignore, VOC difficult
