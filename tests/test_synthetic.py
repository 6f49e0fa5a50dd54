"""The synthetic shapes dataset: deterministic, COCO-valid, objects within the promised ranges."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from helpers import ShapesData, load_tool
from ssdlite.data import CocoDetection
from ssdlite.data.synthetic import DEFAULT_CLASSES, MAX_OBJECTS, MAX_SIZE, MIN_SIZE, SHAPES, make_shapes_dataset, render_image


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = make_shapes_dataset(tmp_path / "a", 6, 2, seed=7)
    make_shapes_dataset(tmp_path / "b", 6, 2, seed=7, workers=2)  # worker processes change nothing
    make_shapes_dataset(tmp_path / "c", 6, 2, seed=8)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(fa) == 6 + 2 + 2 and fa == fb
    assert fa.keys() == fc.keys() and all(fa[k] != fc[k] for k in fa)
    assert a["train_annotations"] == tmp_path / "a" / "annotations" / "instances_train.json"


def test_objects_within_ranges(shapes_data_320: ShapesData) -> None:
    for split, n_images in (("train", 40), ("val", 8)):
        coco = json.loads(getattr(shapes_data_320, f"{split}_annotations").read_text())
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4]
        assert [c["name"] for c in coco["categories"]] == list(DEFAULT_CLASSES)
        assert len(coco["images"]) == n_images and all(im["width"] == im["height"] == 320 for im in coco["images"])
        per_image = Counter(a["image_id"] for a in coco["annotations"])
        assert set(per_image) == {im["id"] for im in coco["images"]}  # every image has objects
        assert 1 <= min(per_image.values()) and max(per_image.values()) <= MAX_OBJECTS
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 320
            assert MIN_SIZE - 1 <= max(w, h) <= MAX_SIZE, a
            assert a["iscrowd"] == 0 and 0 < a["area"] <= w * h and a["segmentation"]
    train = json.loads(shapes_data_320.train_annotations.read_text())
    counts = Counter(a["category_id"] for a in train["annotations"])
    assert set(counts) == {1, 2, 3, 4}  # every class appears
    assert len({im["id"] for im in train["images"]}) >= 30 and sum(per_image.values()) > 8  # several objects per image


def test_loads_cleanly(shapes_data_320: ShapesData) -> None:
    ds = CocoDetection(shapes_data_320.train_images, shapes_data_320.train_annotations)
    st = ds.stats
    assert len(ds) == 40 and ds.class_names == list(DEFAULT_CLASSES)
    assert all(st[k] == 0 for k in ("invalid_boxes", "degenerate_boxes", "clamped_boxes", "unknown_category"))
    image, target = ds[0]
    assert image.shape == (3, 320, 320) and target["orig_size"] == (320, 320) and len(target["boxes"]) >= 1
    assert ds.stats["unreadable_images"] == 0


def test_occlusion_is_bounded() -> None:
    """Every shape keeps >= 40% of its pixels and its box is the extent of what is visible."""
    rng = np.random.default_rng(11)
    occluded = 0
    for _ in range(20):
        image, objects = render_image(rng, 320, SHAPES)
        assert 1 <= len(objects) <= MAX_OBJECTS and image.shape == (320, 320, 3) and image.dtype == np.uint8
        for o in objects:
            assert 0 <= o["label"] < len(SHAPES)
            assert o["area"] >= 0.4 * o["full_area"]
            occluded += o["area"] < o["full_area"]
            x, y, w, h = o["bbox"]
            xs, ys = np.asarray(o["polygons"][0][0::2]), np.asarray(o["polygons"][0][1::2])
            assert x - 1 <= xs.min() and xs.max() <= x + w + 1 and y - 1 <= ys.min() and ys.max() <= y + h + 1
    assert occluded > 0  # overlaps do happen


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="classes must be distinct names"):
        make_shapes_dataset(tmp_path, 1, 1, classes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="size must be"):
        make_shapes_dataset(tmp_path, 1, 1, size=32)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tool = load_tool("make_synthetic")
    args = tool.build_parser().parse_args(["--output", str(tmp_path / "d"), "--train", "3", "--val", "1", "--seed", "2",
                                           "--classes", "circle", "star", "cross", "ellipse", "triangle"])
    assert tool.main(args) == 0
    coco = json.loads((tmp_path / "d" / "annotations" / "instances_val.json").read_text())
    assert len(coco["categories"]) == 5 and len(coco["images"]) == 1
    assert "wrote 3 train + 1 val images" in capsys.readouterr().out
