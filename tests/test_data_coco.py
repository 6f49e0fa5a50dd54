"""CocoDetection on real COCO quirks (coco_tiny80) and on a generated dataset with every data fault."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import ShapesData, require_shared
from ssdlite.data.names import COCO80_IDS, COCO80_NAMES
from ssdlite.data import CocoDetection, build_loader, collate, load_image

# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def tiny80() -> Path:
    return require_shared("coco_tiny80", "official COCO annotations: ids 1..90 with gaps, crowd RLE, known counts")


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_tiny80_matches_the_json(tiny80: Path, split: str) -> None:
    ann_path = tiny80 / "annotations" / f"instances_{split}.json"
    raw = json.loads(ann_path.read_text())
    ds = CocoDetection(tiny80 / split, ann_path)

    # ids 1..90 with gaps -> contiguous labels in sorted id order, names from the json
    assert ds.category_ids == list(COCO80_IDS)
    assert ds.class_names == list(COCO80_NAMES)
    assert len(ds) == len(raw["images"]) == 80
    st = ds.stats
    assert st["annotations"] == len(raw["annotations"])
    assert st["boxes"] == len(raw["annotations"])  # the official json has no faults
    n_crowd = sum(a["iscrowd"] for a in raw["annotations"])
    assert n_crowd > 0 and st["crowd_boxes"] == n_crowd
    assert ds.problems == []

    # every box of every image: xywh -> xyxy, label = index of its category id, crowd kept as ignore
    by_image: dict[int, list[dict]] = {}
    for a in raw["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for i in range(len(ds)):
        t = ds.get_target(i)
        anns = by_image.get(t["image_id"], [])
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32).reshape(-1, 4)
        order = np.lexsort(expected.T[::-1])
        got = t["boxes"].numpy()
        np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], expected[order], atol=1e-3)
        assert sorted(t["labels"].tolist()) == sorted(COCO80_IDS.index(a["category_id"]) for a in anns)
        assert int(t["iscrowd"].sum()) == sum(a["iscrowd"] for a in anns)


def test_tiny80_sample_decodes_to_json_size(tiny80: Path) -> None:
    ds = CocoDetection(tiny80 / "val2017", tiny80 / "annotations" / "instances_val2017.json")
    image, target = ds[3]
    h, w = ds.image_size(3)
    assert image.shape == (3, h, w) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert target["orig_size"] == (h, w)
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["iscrowd"].dtype == torch.bool
    assert ds.stats["size_mismatch"] == 0


def _assert_compact_index(ds: CocoDetection) -> None:
    for name, value in vars(ds).items():
        if isinstance(value, (list, dict, tuple, set)):
            assert len(value) <= max(ds.num_classes, 20), f"{name} holds {len(value)} Python objects"
    assert isinstance(ds._boxes, np.ndarray) and ds._boxes.dtype == np.float32


def test_index_is_compact_numpy(tiny80: Path) -> None:
    """No Python container per image or annotation survives the parse (forked workers would copy them)."""
    ds = CocoDetection(tiny80 / "train2017", tiny80 / "annotations" / "instances_train2017.json")
    assert ds.stats["annotations"] > 700
    _assert_compact_index(ds)
    assert ds._boxes.shape == (705, 4)


def test_index_is_compact_numpy_on_generated_data(shapes_data_320: ShapesData) -> None:
    """The same on the shapes set (a user's clone has no coco_tiny80): 40 images, more than the 20 allowed."""
    ds = CocoDetection(shapes_data_320.train_images, shapes_data_320.train_annotations)
    assert len(ds) == 40 and ds.stats["annotations"] > 40
    _assert_compact_index(ds)
    assert ds._boxes.shape == (ds.stats["boxes"], 4)


# ----------------------------------------------------------------------------- generated faults


def _write_jpeg_with_exif_rotation(path: Path) -> None:
    from PIL import Image

    raw = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide x 20 high, left half white
    raw[:, :20] = 255
    im = Image.fromarray(raw)
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    im.save(path, exif=exif.tobytes(), quality=95)


def _write_cmyk_jpeg(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((30, 30, 3), 200, np.uint8)).convert("CMYK").save(path)


@pytest.fixture()
def faulty(tmp_path: Path) -> dict:
    """A COCO dataset with one of every fault; returns paths and the expected counts."""
    d = tmp_path / "images"
    d.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(d / "good.jpg"), rgb)
    cv2.imwrite(str(d / "gray.png"), rgb[:, :, 0])
    cv2.imwrite(str(d / "rgba.png"), np.dstack([rgb, np.full((48, 64), 128, np.uint8)]))
    cv2.imwrite(str(d / "deep.png"), (rgb.astype(np.uint16) * 257))  # 16-bit PNG
    _write_jpeg_with_exif_rotation(d / "exif.jpg")
    _write_cmyk_jpeg(d / "cmyk.jpg")
    (d / "text.jpg").write_text("this is not an image\n")
    good = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    cv2.imwrite(str(d / "small.jpg"), rgb)  # 64x48 on disk, the json claims 100x100
    (d / "empty.jpg").write_bytes(rgb.tobytes()[:0] + b"")

    images = [
        {"id": 1, "file_name": "good.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "gray.png", "width": 64, "height": 48},
        {"id": 3, "file_name": "rgba.png", "width": 64, "height": 48},
        {"id": 4, "file_name": "deep.png", "width": 64, "height": 48},
        {"id": 5, "file_name": "exif.jpg", "width": 20, "height": 40},
        {"id": 6, "file_name": "cmyk.jpg", "width": 30, "height": 30},
        {"id": 7, "file_name": "missing.jpg", "width": 64, "height": 48},
        {"id": 8, "file_name": "text.jpg", "width": 64, "height": 48},
        {"id": 9, "file_name": "truncated.jpg", "width": 64, "height": 48},
        {"id": 10, "file_name": "small.jpg", "width": 100, "height": 100},
        {"id": 11, "file_name": "empty.jpg", "width": 64, "height": 48},
        {"id": 1, "file_name": "duplicate.jpg", "width": 64, "height": 48},  # duplicate id
        {"file_name": "no_id.jpg", "width": 64, "height": 48},  # invalid entry
        {"id": 12, "file_name": "good.jpg"},  # no size: clamped at load time
    ]
    box = [5.0, 6.0, 20.0, 10.0]
    anns = [
        {"id": 100, "image_id": 1, "category_id": 1, "bbox": box, "iscrowd": 0},  # ok
        {"id": 101, "image_id": 1, "category_id": 3, "bbox": [50.0, 30.0, 40.0, 40.0], "iscrowd": 0},  # clamped
        {"id": 102, "image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 48], "iscrowd": 1},  # crowd
        {"id": 103, "image_id": 2, "category_id": 1, "bbox": [5, 5, 0, 10], "iscrowd": 0},  # zero width
        {"id": 104, "image_id": 2, "category_id": 1, "bbox": [30, 5, -10, 10], "iscrowd": 0},  # negative width
        {"id": 105, "image_id": 2, "category_id": 1, "bbox": [500, 500, 10, 10], "iscrowd": 0},  # outside the image
        {"id": 106, "image_id": 2, "category_id": 1, "bbox": [5, 5, 0.5, 10], "iscrowd": 0},  # under 1 px
        {"id": 107, "image_id": 3, "category_id": 1, "bbox": [1.0, 2.0, math.nan, 3.0], "iscrowd": 0},  # NaN
        {"id": 108, "image_id": 3, "category_id": 1, "bbox": ["1", 2, 3, 4], "iscrowd": 0},  # string
        {"id": 109, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3], "iscrowd": 0},  # 3 numbers
        {"id": 110, "image_id": 3, "category_id": 1, "iscrowd": 0},  # no bbox
        {"id": 111, "image_id": 3, "category_id": 1, "bbox": [1, 2, math.inf, 3], "iscrowd": 0},  # infinite
        {"id": 112, "image_id": 4, "category_id": 999, "bbox": box, "iscrowd": 0},  # unknown category
        {"id": 113, "image_id": 4, "category_id": "1", "bbox": box, "iscrowd": 0},  # category id string
        {"id": 114, "image_id": 12345, "category_id": 1, "bbox": box, "iscrowd": 0},  # unknown image
        {"id": 115, "image_id": 4, "category_id": 3, "bbox": box, "iscrowd": 0},  # ok
        {"id": 116, "image_id": 5, "category_id": 1, "bbox": [2, 2, 10, 30], "iscrowd": 0},  # ok (exif frame)
        {"id": 117, "image_id": 10, "category_id": 1, "bbox": [40, 30, 50, 50], "iscrowd": 0},  # re-clamped at load
        {"id": 118, "image_id": 12, "category_id": 1, "bbox": [40, 30, 50, 50], "iscrowd": 0},  # clamped at load
        {"id": 119, "image_id": 7, "category_id": 1, "bbox": box, "iscrowd": 0},  # its file is missing
    ]
    cats = [{"id": 3, "name": "three"}, {"id": 1, "name": "one"}]
    ann_path = tmp_path / "instances.json"
    ann_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))  # NaN/Infinity literals
    expected = {
        "images": 14, "images_kept": 12, "annotations": 20, "boxes": 8, "crowd_boxes": 1,
        "invalid_images": 1, "duplicate_image_ids": 1, "missing_image_size": 1, "unknown_image": 1,
        "unknown_category": 2, "invalid_boxes": 5, "clamped_boxes": 1, "degenerate_boxes": 4,
    }
    return {"dir": d, "json": ann_path, "expected": expected}


def test_parse_faults_are_counted_and_named(faulty: dict) -> None:
    ds = CocoDetection(faulty["dir"], faulty["json"])
    st = ds.stats
    for key, value in faulty["expected"].items():
        assert st[key] == value, (key, st[key], value)
    assert st["missing_images"] == st["unreadable_images"] == st["size_mismatch"] == 0  # nothing loaded yet
    by_kind: dict[str, set] = {}
    for p in ds.problems:
        by_kind.setdefault(p.kind, set()).add(p.annotation_id)
    assert by_kind["degenerate_boxes"] == {103, 104, 105, 106}
    assert by_kind["invalid_boxes"] == {107, 108, 109, 110, 111}
    assert by_kind["unknown_category"] == {112, 113}
    assert by_kind["unknown_image"] == {114}
    assert by_kind["clamped_boxes"] == {101}
    dup = [p for p in ds.problems if p.kind == "duplicate_image_ids"]
    assert dup[0].image_id == 1 and dup[0].file == "duplicate.jpg"
    assert all(str(p) for p in ds.problems)
    # category ids sorted (1, 3) even though the json lists 3 first
    assert ds.category_ids == [1, 3] and ds.class_names == ["one", "three"]
    # clamped box and crowd box of image 1
    t = ds.get_target(0)
    np.testing.assert_allclose(t["boxes"].numpy(), [[5, 6, 25, 16], [50, 30, 64, 48], [0, 0, 64, 48]])
    assert t["labels"].tolist() == [0, 1, 0] and t["iscrowd"].tolist() == [False, False, True]


def test_load_faults_skip_warn_once_and_count(faulty: dict, caplog: pytest.LogCaptureFixture) -> None:
    ds = CocoDetection(faulty["dir"], faulty["json"])
    names = [ds.file_name(i) for i in range(len(ds))]
    bad = {"missing.jpg", "text.jpg", "truncated.jpg", "empty.jpg"}
    with caplog.at_level(logging.WARNING, logger="ssdlite.data"):
        for _ in range(2):  # a second pass warns nothing new and counts nothing twice
            samples = [ds[i] for i in range(len(ds))]
    for name, s in zip(names, samples):
        assert (s is None) == (name in bad), name
    st = ds.stats
    assert st["missing_images"] == 1 and st["unreadable_images"] == 3 and st["size_mismatch"] == 1
    for name in bad | {"small.jpg"}:
        assert sum(name in r.getMessage() for r in caplog.records) == 1, name
    load = {(p.kind, Path(p.file).name) for p in ds.problems if p.kind in ("missing_images", "unreadable_images", "size_mismatch")}
    assert load == {("missing_images", "missing.jpg"), ("unreadable_images", "text.jpg"),
                    ("unreadable_images", "truncated.jpg"), ("unreadable_images", "empty.jpg"), ("size_mismatch", "small.jpg")}

    by_name = dict(zip(names, samples))
    for name in ("gray.png", "rgba.png", "deep.png", "cmyk.jpg", "good.jpg"):
        image, target = by_name[name]
        assert image.shape[0] == 3 and image.dtype == torch.float32, name
    # decoded size wins: small.jpg is 64x48, its box [40, 30, 90, 80] is clamped to it
    image, target = by_name["small.jpg"]
    assert target["orig_size"] == (48, 64)
    np.testing.assert_allclose(target["boxes"].numpy(), [[40, 30, 64, 48]])
    # no size in the json: clamped to the decoded size at load time
    image, target = samples[names.index("good.jpg", 1)] if names.count("good.jpg") > 1 else (None, None)
    assert target is not None and target["boxes"].tolist() == [[40.0, 30.0, 64.0, 48.0]]
    # a batch drops the unreadable samples
    images, targets = collate([by_name[n] for n in ("good.jpg", "missing.jpg", "gray.png", "text.jpg")])
    assert images.shape == (2, 3, 48, 64) and len(targets) == 2


def test_decoding_variants(faulty: dict) -> None:
    d = faulty["dir"]
    rgb_bgr = cv2.imread(str(d / "good.jpg"))
    gray = load_image(d / "gray.png")
    assert gray.shape == (48, 64, 3) and (gray[..., 0] == gray[..., 1]).all()
    rgba = load_image(d / "rgba.png")
    assert rgba.shape == (48, 64, 3)
    deep = load_image(d / "deep.png")
    assert deep.dtype == np.uint8 and deep.shape == (48, 64, 3)
    np.testing.assert_array_equal(deep, load_image(d / "rgba.png"))  # 16-bit -> the same 8-bit pixels
    good = load_image(d / "good.jpg")
    np.testing.assert_array_equal(good, rgb_bgr[..., ::-1])  # RGB order
    cmyk = load_image(d / "cmyk.jpg")
    assert cmyk.shape == (30, 30, 3) and abs(int(cmyk.mean()) - 200) <= 3
    # EXIF orientation 6: stored 40x20 with the left half white -> shown 20x40 with the top half white
    rot = load_image(d / "exif.jpg")
    assert rot.shape == (40, 20, 3)
    assert rot[5, 10].min() > 200 and rot[35, 10].max() < 50


def test_evaluation_reads_exif_images_as_training_does(tmp_path: Path) -> None:
    """predict_coco passes the json's height/width to load_image: an EXIF rotation that the json
    size does not describe is not applied (the boxes were drawn on the stored pixels)."""
    import types

    from ssdlite.config import from_dict
    from ssdlite.eval.predict import predict_coco

    _write_jpeg_with_exif_rotation(tmp_path / "exif.jpg")
    images = [
        {"id": 1, "file_name": "exif.jpg", "width": 20, "height": 40},  # the rotated (displayed) size
        {"id": 2, "file_name": "exif.jpg", "width": 40, "height": 20},  # the stored size: no rotation
        {"id": 3, "file_name": "exif.jpg"},  # no size: EXIF applies
    ]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    shapes = []

    def detector(frames):
        shapes.extend(f.shape for f in frames)
        return [types.SimpleNamespace(boxes=np.zeros((0, 4)), scores=np.zeros(0), labels=np.zeros(0, np.int64)) for _ in frames]

    detector.cfg = from_dict({}, ["model.num_classes=1"])
    assert predict_coco(detector, tmp_path, gt, progress=False) == []
    assert shapes == [(40, 20, 3), (20, 40, 3), (40, 20, 3)]


@pytest.mark.parametrize("name, words", [("missing.jpg", "not found"), ("text.jpg", "cannot decode"),
                                         ("truncated.jpg", "cannot decode")])
def test_load_image_errors_name_the_file(faulty: dict, name: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as e:
        load_image(faulty["dir"] / name)
    assert name in str(e.value)


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(ValueError, match=r"broken\.json: invalid JSON at line 2, column 12"):
        CocoDetection(tmp_path, bad)
    with pytest.raises(ValueError, match="not found"):
        CocoDetection(tmp_path, tmp_path / "absent.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        CocoDetection(tmp_path, tmp_path / "list.json")
    (tmp_path / "dupcat.json").write_text(json.dumps({"images": [], "categories": [{"id": 1}, {"id": 1}]}))
    with pytest.raises(ValueError, match="category id 1 appears twice"):
        CocoDetection(tmp_path, tmp_path / "dupcat.json")


def test_empty_annotations_and_keep_empty(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    images = [{"id": 1, "file_name": "a.jpg", "width": 30, "height": 20}, {"id": 2, "file_name": "a.jpg", "width": 30, "height": 20}]
    cats = [{"id": 5, "name": "x"}]
    path = tmp_path / "j.json"
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": cats}))
    ds = CocoDetection(tmp_path, path)
    assert len(ds) == 2 and ds.stats["images_empty"] == 2
    image, target = ds[0]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    path.write_text(json.dumps({"images": images, "categories": cats,
                                "annotations": [{"id": 1, "image_id": 2, "category_id": 5, "bbox": [1, 1, 5, 5]}]}))
    ds = CocoDetection(tmp_path, path, keep_empty=False)
    assert len(ds) == 1 and ds.image_ids.tolist() == [2] and ds.stats["images_dropped_empty"] == 1


def test_given_category_order_is_reused(faulty: dict) -> None:
    ds = CocoDetection(faulty["dir"], faulty["json"], category_ids=[3, 7])
    assert ds.category_ids == [3, 7] and ds.class_names == ["three", "class_7"]
    t = ds.get_target(0)  # image 1: category 1 boxes are now unknown, category 3 -> label 0
    assert t["labels"].tolist() == [0]
    # each annotation is counted once, under its first fault (image, category, box): all but
    # the unknown-image one (114) and the two of category 3 (101, 115)
    assert ds.stats["unknown_category"] == 20 - 1 - 2 and ds.stats["invalid_boxes"] == 0


def test_worker_faults_reach_the_main_process(faulty: dict) -> None:
    from ssdlite.config import from_dict
    from ssdlite.data import build_transforms

    cfg = from_dict({"model": {"input_size": [64, 64]}, "data": {"augment": "ssdlite"}})
    ds = CocoDetection(faulty["dir"], faulty["json"], transform=build_transforms(cfg, train=True))
    loader = build_loader(ds, batch_size=4, shuffle=True, workers=2, seed=0, persistent_workers=False)
    seen = 0
    for images, targets in loader:
        assert images.shape[1:] == (3, 64, 64) and images.shape[0] == len(targets)
        seen += len(targets)
    st = ds.stats  # read in the main process: counts come from the workers
    assert seen == len(ds) - 4
    assert st["missing_images"] == 1 and st["unreadable_images"] == 3 and st["size_mismatch"] == 1


def test_substitute_keeps_batches_full(faulty: dict) -> None:
    ds = CocoDetection(faulty["dir"], faulty["json"], on_unreadable="substitute")
    samples = [ds[i] for i in range(len(ds))]
    assert all(s is not None for s in samples)
    names = [ds.file_name(i) for i in range(len(ds))]
    # missing.jpg (7) -> text.jpg and truncated.jpg are unreadable too -> small.jpg (10) stands in
    assert samples[names.index("missing.jpg")][1]["image_id"] == 10
    assert ds.stats["missing_images"] == 1 and ds.stats["unreadable_images"] == 3
    with pytest.raises(ValueError, match="on_unreadable"):
        CocoDetection(faulty["dir"], faulty["json"], on_unreadable="retry")
