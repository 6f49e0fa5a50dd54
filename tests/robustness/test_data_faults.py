"""Data faults: check-data reports each once (file or annotation id, summary count), and training on
the same data skips or repairs exactly what the report says, and its log repeats the counts."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from helpers import ShapesData, run_tool, tiny_config, write_config
from ssdlite.data.check import check_dataset
from ssdlite.config import from_dict

# ----------------------------------------------------------------------------- the faulty dataset
#
# build_faulty_dataset writes a COCO dataset holding one of every data fault of the issue and
# records, per fault, what check-data must report and what training must do about it.


@dataclass(frozen=True)
class DataFault:
    """One injected data fault and what must happen to it.

    kind: the problem kind check-data must report exactly once (None: a variant that must
    load with no problem). ann_id / file: where the report must point (file: basename).
    image_id: the image whose training sample shows the effect (None: no sample to look at).
    """

    id: str
    name: str
    kind: str | None
    report: str  # expected from check-data
    training: str  # expected from training
    ann_id: int | None = None
    file: str | None = None
    image_id: int | None = None

    def matches(self, p: Any) -> bool:
        if self.ann_id is not None:
            return p.annotation_id == self.ann_id
        return p.file is not None and Path(p.file).name == self.file


@dataclass
class FaultyDataset:
    images: Path
    annotations: Path
    faults: list[DataFault]
    fed: dict[int, tuple[tuple[int, int], list[list[float]]]]  # image id -> (decoded (h, w), boxes xyxy file px)
    skipped: set[int]  # image ids that must never reach the loss
    expected_counts: dict[str, int] = field(default_factory=dict)


W, H = 64, 48
BOX = [10.0, 10.0, 20.0, 20.0]
BOX_XYXY = [10.0, 10.0, 30.0, 30.0]

DATA_FAULTS = [
    DataFault("missing_file", "missing image file", "missing_images",
              "reported once: missing_images, the file", "sample skipped (substituted), never reaches the loss",
              file="missing.jpg", image_id=8),
    DataFault("truncated_jpeg", "truncated JPEG", "unreadable_images",
              "reported once: unreadable_images, the file", "sample skipped (substituted)", file="truncated.jpg", image_id=9),
    DataFault("text_as_jpeg", "text file named .jpg", "unreadable_images",
              "reported once: unreadable_images, the file", "sample skipped (substituted)", file="text.jpg", image_id=10),
    DataFault("grayscale", "grayscale PNG", None, "no problem", "trained on as 3-channel RGB, box kept",
              file="gray.png", image_id=2),
    DataFault("cmyk", "CMYK JPEG", None, "no problem", "trained on as RGB, box kept", file="cmyk.jpg", image_id=3),
    DataFault("png16", "16-bit PNG", None, "no problem", "trained on as 8-bit RGB, box kept", file="deep16.png", image_id=4),
    DataFault("rgba", "RGBA PNG", None, "no problem", "trained on with alpha dropped, box kept", file="rgba.png", image_id=5),
    DataFault("exif_displayed", "EXIF-rotated JPEG, json has the displayed size", None, "no problem",
              "EXIF rotation applied (48x64), box kept", file="exif_displayed.jpg", image_id=6),
    DataFault("exif_stored", "EXIF-rotated JPEG, json has the stored size", "exif_orientation",
              "reported once: exif_orientation, the file", "rotation ignored (64x48) so the box still fits",
              file="exif_stored.jpg", image_id=7),
    DataFault("size_mismatch", "json image size disagrees with the file", "size_mismatch",
              "reported once: size_mismatch, the file", "decoded size used, box clamped to it",
              file="wrong_size.jpg", image_id=11),
    DataFault("zero_box", "box with zero width", "degenerate_boxes",
              "reported once: degenerate_boxes, annotation 102", "annotation dropped", ann_id=102, image_id=1),
    DataFault("negative_box", "box with negative width", "degenerate_boxes",
              "reported once: degenerate_boxes, annotation 103", "annotation dropped", ann_id=103, image_id=1),
    DataFault("outside_box", "box entirely outside the image", "degenerate_boxes",
              "reported once: degenerate_boxes, annotation 104", "annotation dropped", ann_id=104, image_id=1),
    DataFault("partly_outside_box", "box partly outside the image", "clamped_boxes",
              "reported once: clamped_boxes, annotation 101", "box clamped to the image, kept", ann_id=101, image_id=1),
    DataFault("nan_box", "NaN in a box", "invalid_boxes",
              "reported once: invalid_boxes, annotation 105", "annotation dropped", ann_id=105, image_id=1),
    DataFault("string_box", "string in a box", "invalid_boxes",
              "reported once: invalid_boxes, annotation 106", "annotation dropped", ann_id=106, image_id=1),
    DataFault("null_box", "null in a box", "invalid_boxes",
              "reported once: invalid_boxes, annotation 107", "annotation dropped", ann_id=107, image_id=1),
    DataFault("unknown_category", "category id not in categories", "unknown_category",
              "reported once: unknown_category, annotation 108", "annotation dropped", ann_id=108, image_id=1),
    DataFault("unknown_image", "annotation for an unknown image id", "unknown_image",
              "reported once: unknown_image, annotation 120", "annotation dropped", ann_id=120),
    DataFault("duplicate_image_id", "duplicate image ids", "duplicate_image_ids",
              "reported once: duplicate_image_ids, the second entry's file", "second entry dropped, first one trained",
              file="dup.jpg", image_id=1),
    DataFault("no_image_size", "image entry without width/height", "missing_image_size",
              "reported once: missing_image_size, the file", "size taken from the file, box clamped to it",
              file="nosize.jpg", image_id=12),
    DataFault("image_without_id", "image entry without an id", "invalid_images",
              "reported once: invalid_images, the file", "entry dropped", file="noid.jpg"),
    DataFault("negative_image", "image without annotations", None, "no problem",
              "trained on as a negative (no boxes)", file="negative.jpg", image_id=13),
]


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise RuntimeError(f"could not write {path}")


def _write_exif_rotated(path: Path, rgb: np.ndarray) -> None:
    """A JPEG stored W x H whose EXIF orientation 6 says: show it rotated 90 degrees clockwise (H x W)."""
    from PIL import Image

    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(path, exif=exif.tobytes(), quality=95)


def build_faulty_dataset(root: Path) -> FaultyDataset:
    """Write ``root/images`` + ``root/instances.json`` with every fault of :data:`DATA_FAULTS`."""
    from PIL import Image

    d = root / "images"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    _write_rgb(d / "good.jpg", rgb)
    shutil.copy(d / "good.jpg", d / "dup.jpg")
    shutil.copy(d / "good.jpg", d / "nosize.jpg")
    shutil.copy(d / "good.jpg", d / "negative.jpg")
    shutil.copy(d / "good.jpg", d / "noid.jpg")
    cv2.imwrite(str(d / "gray.png"), rgb[:, :, 0])
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    cv2.imwrite(str(d / "deep16.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(d / "rgba.png"), np.dstack([rgb[..., ::-1], np.full((H, W), 100, np.uint8)]))
    _write_exif_rotated(d / "exif_displayed.jpg", rgb)
    _write_exif_rotated(d / "exif_stored.jpg", rgb)
    good = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    assert cv2.imdecode(np.frombuffer(good[: len(good) // 2], np.uint8), cv2.IMREAD_COLOR) is None, "truncation must break it"
    (d / "text.jpg").write_text("label,x,y\ncat,1,2\n")
    _write_rgb(d / "wrong_size.jpg", rgb)

    def img(i: int, name: str, w: int | None = W, h: int | None = H) -> dict:
        e: dict[str, Any] = {"id": i, "file_name": name}
        if w is not None:
            e.update(width=w, height=h)
        return e

    images = [
        img(1, "good.jpg"), img(2, "gray.png"), img(3, "cmyk.jpg"), img(4, "deep16.png"), img(5, "rgba.png"),
        img(6, "exif_displayed.jpg", H, W), img(7, "exif_stored.jpg"), img(8, "missing.jpg"), img(9, "truncated.jpg"),
        img(10, "text.jpg"), img(11, "wrong_size.jpg", 100, 80), img(1, "dup.jpg"), img(12, "nosize.jpg", None),
        img(13, "negative.jpg"), {"file_name": "noid.jpg", "width": W, "height": H},
    ]

    def ann(i: int, image_id: Any, bbox: Any, cat: Any = 1) -> dict:
        return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": 1.0, "iscrowd": 0}

    anns = [
        ann(100, 1, [5.0, 6.0, 20.0, 10.0]),
        ann(101, 1, [50.0, 30.0, 40.0, 40.0], 2),  # partly outside: clamped to [50, 30, 64, 48]
        ann(102, 1, [5.0, 5.0, 0.0, 10.0]),  # zero width
        ann(103, 1, [30.0, 5.0, -10.0, 10.0]),  # negative width
        ann(104, 1, [500.0, 500.0, 10.0, 10.0]),  # entirely outside
        ann(105, 1, [1.0, 2.0, math.nan, 3.0]),  # NaN (written as the NaN literal)
        ann(106, 1, ["1", 2, 3, 4]),  # a string
        ann(107, 1, [1, 2, None, 4]),  # null
        ann(108, 1, [5.0, 6.0, 20.0, 10.0], 99),  # category not in categories
        ann(110, 2, BOX), ann(111, 3, BOX), ann(112, 4, BOX), ann(113, 5, BOX),
        ann(114, 6, [2.0, 2.0, 20.0, 40.0]),  # fits the displayed 48 x 64
        ann(115, 7, [40.0, 5.0, 20.0, 30.0]),  # fits the stored 64 x 48, not the displayed 48 x 64
        ann(116, 8, BOX), ann(117, 9, BOX), ann(118, 10, BOX),
        ann(119, 11, [40.0, 30.0, 50.0, 40.0]),  # inside the json's 100 x 80, clamped to the real 64 x 48
        ann(120, 999, BOX),  # unknown image
        ann(121, 12, [40.0, 30.0, 50.0, 40.0]),  # no json size: clamped to the decoded 64 x 48
    ]
    cats = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}, indent=1))

    fed = {
        1: ((H, W), [[5.0, 6.0, 25.0, 16.0], [50.0, 30.0, 64.0, 48.0]]),
        2: ((H, W), [BOX_XYXY]), 3: ((H, W), [BOX_XYXY]), 4: ((H, W), [BOX_XYXY]), 5: ((H, W), [BOX_XYXY]),
        6: ((W, H), [[2.0, 2.0, 22.0, 42.0]]),
        7: ((H, W), [[40.0, 5.0, 60.0, 35.0]]),
        11: ((H, W), [[40.0, 30.0, 64.0, 48.0]]),
        12: ((H, W), [[40.0, 30.0, 64.0, 48.0]]),
        13: ((H, W), []),
    }
    counts = {
        "images": 15, "images_kept": 13, "annotations": len(anns), "boxes": 13, "crowd_boxes": 0,
        "invalid_images": 1, "duplicate_image_ids": 1, "missing_image_size": 1, "unknown_image": 1,
        "unknown_category": 1, "invalid_boxes": 3, "clamped_boxes": 1, "degenerate_boxes": 3,
        "missing_images": 1, "unreadable_images": 2, "size_mismatch": 1, "exif_orientation": 1,
    }
    return FaultyDataset(d, path, list(DATA_FAULTS), fed, {8, 9, 10}, counts)


@pytest.fixture(scope="module")
def faulty_dataset(tmp_path_factory: pytest.TempPathFactory) -> FaultyDataset:
    return build_faulty_dataset(tmp_path_factory.mktemp("faulty"))


def write_dataset(root: Path, images: list[dict], annotations: Any, files: dict[str, np.ndarray | bytes] | None = None,
                  categories: list[dict] | None = None) -> tuple[Path, Path]:
    """A small COCO dataset from explicit entries; ``files`` maps file names to RGB arrays or raw bytes."""
    d = root / "images"
    d.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        if isinstance(content, bytes):
            (d / name).write_bytes(content)
        else:
            _write_rgb(d / name, content)
    path = root / "instances.json"
    cats = categories if categories is not None else [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return d, path


REPORT_FAULTS = [pytest.param(f, id=f.id, marks=pytest.mark.fault(f"check-data: {f.name}", f.report)) for f in DATA_FAULTS]
TRAINING_FAULTS = [pytest.param(f, id=f.id, marks=pytest.mark.fault(f"training: {f.name}", f.training)) for f in DATA_FAULTS]


def _key(p) -> tuple:
    return (p.kind, p.annotation_id, p.image_id, Path(p.file).name if p.file else None)


@pytest.fixture(scope="module")
def report(faulty_dataset: FaultyDataset):
    return check_dataset(faulty_dataset.images, faulty_dataset.annotations, decode=True)


@pytest.fixture(scope="module")
def trained(faulty_dataset: FaultyDataset):
    """One epoch on the faulty data (one batch of every sample); every target that reached the loss."""
    from ssdlite.train.trainer import Trainer

    torch.set_num_threads(1)
    out = faulty_dataset.images.parent / "run"
    n = faulty_dataset.expected_counts["images_kept"]
    cfg = from_dict(tiny_config(faulty_dataset.images, faulty_dataset.annotations, 2, batch_size=n, reference_batch=n))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        trainer = Trainer(cfg, out, progress=False)
        seen: list[dict] = []
        criterion = trainer.criterion

        def recording(cls_logits, box_deltas, anchors, targets):
            seen.extend({k: (v.clone() if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets)
            return criterion(cls_logits, box_deltas, anchors, targets)

        trainer.criterion = recording
        trainer.fit()
    return trainer, seen, stdout.getvalue()


def _logged_counts(stdout: str, last: bool = False) -> dict[str, int]:
    lines = [line for line in stdout.splitlines() if line.startswith("data:")]
    assert lines, f"no 'data:' line in the training log:\n{stdout}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1 if last else 0])}


# ----------------------------------------------------------------------------- check-data, fault by fault


@pytest.mark.parametrize("fault", REPORT_FAULTS)
def test_check_data_reports_each_fault_once(fault, report) -> None:
    found = [p for p in report.problems if fault.matches(p)]
    if fault.kind is None:
        assert found == [], f"{fault.name} must load without a problem, got {[str(p) for p in found]}"
        return
    assert [p.kind for p in found] == [fault.kind], [str(p) for p in found]
    p = found[0]
    where = str(p)
    assert (f"annotation {fault.ann_id}" in where) if fault.ann_id is not None else (fault.file in where), where
    assert p.detail


@pytest.mark.fault("check-data: counts of the whole faulty set", "summary counts equal the injected faults, no problem twice")
def test_check_data_counts_and_no_duplicates(report, faulty_dataset: FaultyDataset) -> None:
    for key, value in faulty_dataset.expected_counts.items():
        assert report.counts[key] == value, (key, report.counts[key], value)
    keys = [_key(p) for p in report.problems]
    assert len(keys) == len(set(keys)), "a problem is reported twice"
    assert sum(report.problem_counts.values()) == len(report.problems)
    claimed = {(f.kind, f.ann_id, f.file) for f in DATA_FAULTS if f.kind}
    assert len(report.problems) == len(claimed), [str(p) for p in report.problems]


@pytest.mark.fault("check-data CLI on the faulty set", "one line per problem, a summary with the counts, JSON report, exit 1")
def test_check_data_cli_lists_every_problem_once(faulty_dataset: FaultyDataset, report, tmp_path, capsys) -> None:
    out = tmp_path / "report.json"
    code = run_tool("check_data", ["--images", faulty_dataset.images, "--annotations", faulty_dataset.annotations,
                                   "--decode", "--json-out", out, "--no-progress"])
    assert code == 1
    text = capsys.readouterr().out
    lines = text.splitlines()
    for p in report.problems:
        assert lines.count(str(p)) == 1, str(p)
    summary = [line for line in lines if line.startswith("summary:")]
    assert len(summary) == 1 and f"{len(report.problems)} problems" in summary[0]
    for kind, n in report.problem_counts.items():
        assert f"{n} {kind}" in summary[0], kind
    data = json.loads(out.read_text())
    assert data["ok"] is False and data["counts"] == report.counts and len(data["problems"]) == len(report.problems)


@pytest.mark.fault("check-data CLI without --decode", "finds missing, non-image and truncated files without decoding; says what it skipped")
def test_check_data_without_decode(faulty_dataset: FaultyDataset, capsys) -> None:
    code = run_tool("check_data", ["--images", faulty_dataset.images, "--annotations", faulty_dataset.annotations, "--no-progress"])
    assert code == 1
    text = capsys.readouterr().out
    assert re.search(r"missing_images: image 8, .*missing\.jpg", text)
    assert re.search(r"unreadable_images: image 10, .*text\.jpg", text)
    # a truncated JPEG lacks its end-of-image marker: found without decoding; a size mismatch needs decoding
    assert re.search(r"unreadable_images: image 9, .*truncated\.jpg: truncated JPEG: no end-of-image marker", text)
    assert "size_mismatch" not in text
    assert "--decode" in text


@pytest.mark.fault("check-data CLI on a clean dataset", "no problems found, exit 0")
def test_check_data_clean_dataset(shapes_data: ShapesData, capsys) -> None:
    code = run_tool("check_data", ["--images", shapes_data.train_images, "--annotations", shapes_data.train_annotations,
                                   "--decode", "--no-progress"])
    assert code == 0
    assert "no problems found" in capsys.readouterr().out


# ----------------------------------------------------------------------------- training on the same data


@pytest.mark.parametrize("fault", TRAINING_FAULTS)
def test_training_handles_fault_as_reported(fault, trained, report, faulty_dataset: FaultyDataset) -> None:
    trainer, seen, _ = trained
    # the training dataset found exactly what check-data reported for this fault
    ours = sorted(_key(p) for p in report.problems if fault.matches(p))
    theirs = sorted(_key(p) for p in trainer.train_set.problems if fault.matches(p))
    assert theirs == ours
    fed = {}
    for t in seen:
        fed.setdefault(t["image_id"], t)
    if fault.image_id is None:
        return
    if fault.image_id in faulty_dataset.skipped:
        assert fault.image_id not in fed, f"{fault.file} reached the loss"
        return
    assert fault.image_id in fed, f"image {fault.image_id} ({fault.file}) was not trained on"
    t = fed[fault.image_id]
    size, boxes = faulty_dataset.fed[fault.image_id]
    assert tuple(t["orig_size"]) == size
    h, w = size
    scale = torch.tensor([w / 128, h / 128, w / 128, h / 128])  # network input (128 x 128, stretched) -> file px
    got = (t["boxes"] * scale).numpy().reshape(-1, 4)
    np.testing.assert_allclose(got, np.array(boxes, np.float32).reshape(-1, 4), atol=1e-3)
    if fault.id == "duplicate_image_id":
        assert "dup.jpg" not in [trainer.train_set.file_name(i) for i in range(len(trainer.train_set))]


@pytest.mark.fault("training counts equal check-data's", "after one epoch the training set's counts are check-data's")
def test_training_counts_equal_check_data(trained, report) -> None:
    trainer, seen, _ = trained
    stats = trainer.train_set.stats
    for key, value in stats.items():
        assert report.counts[key] == value, (key, value, report.counts[key])
    assert len(seen) == trainer.train_set.stats["images_kept"]  # one full batch: the bad files were substituted


@pytest.mark.fault("training log repeats the json counts", "the 'data:' line has check-data's counts of json faults")
def test_training_log_repeats_json_counts(trained, report) -> None:
    from ssdlite.data.problems import PARSE_PROBLEMS

    logged = _logged_counts(trained[2])
    for key in ("images", "images_kept", "annotations", "boxes", *PARSE_PROBLEMS):
        assert logged.get(key, 0) == report.counts[key], (key, logged.get(key), report.counts[key])


@pytest.mark.fault("training log repeats the file counts", "a 'data:' line after loading has the file-fault counts of check-data")
def test_training_log_repeats_file_counts(trained, report) -> None:
    from ssdlite.data.problems import LOAD_PROBLEMS

    logged = _logged_counts(trained[2], last=True)
    for key in LOAD_PROBLEMS:
        assert logged.get(key, 0) == report.counts[key], (key, logged.get(key), report.counts[key])


# ----------------------------------------------------------------------------- whole-dataset faults


def _images(n: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    rgb = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return ([{"id": i + 1, "file_name": f"{i}.jpg", "width": W, "height": H} for i in range(n)],
            {f"{i}.jpg": rgb for i in range(n)})


@pytest.mark.fault("check-data: empty annotations list", "no_boxes reported (every image a negative), exit 1")
def test_empty_annotations_check_data(tmp_path, capsys) -> None:
    images, files = _images(4)
    d, j = write_dataset(tmp_path, images, [], files)
    assert run_tool("check_data", ["--images", d, "--annotations", j, "--decode", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "no_boxes" in out and "has no annotations" in out and "4 images" in out


@pytest.mark.fault("training: empty annotations list", "refused with a clear error naming the json (nothing to learn)")
def test_empty_annotations_training(tmp_path, capsys) -> None:
    images, files = _images(4)
    d, j = write_dataset(tmp_path, images, [], files)
    cfg = tmp_path / "c.yaml"
    write_config(cfg, tiny_config(d, j, 2))
    code = run_tool("train", ["--config", cfg, "--output", tmp_path / "run", "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "box" in err and str(j) in err


@pytest.mark.fault("invalid JSON", "check-data and training: one error line with the line and column, exit 2")
def test_invalid_json(tmp_path, capsys) -> None:
    images, files = _images(2)
    d, j = write_dataset(tmp_path, images, [], files)
    j.write_text('{"images": [\n  {"id": 1, "file_name": "0.jpg"},\n  {"id": 2 "file_name": "1.jpg"}\n]}')
    assert run_tool("check_data", ["--images", d, "--annotations", j, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "invalid JSON at line 3, column 12" in err and str(j) in err and len(err.strip().splitlines()) == 1
    write_config(tmp_path / "c.yaml", tiny_config(d, j, 2))
    assert run_tool("train", ["--config", tmp_path / "c.yaml", "--output", tmp_path / "run", "--no-progress"]) == 2
    assert "invalid JSON at line 3, column 12" in capsys.readouterr().err


@pytest.mark.fault("annotation json not UTF-8 / missing", "one clear error line naming the file, exit 2")
def test_unreadable_json(tmp_path, capsys) -> None:
    images, files = _images(1)
    d, j = write_dataset(tmp_path, images, [], files)
    j.write_bytes(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "caf\u00e9"}]}).encode("latin-1")
                  .replace(b"\\u00e9", b"\xe9"))
    assert run_tool("check_data", ["--images", d, "--annotations", j, "--no-progress"]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert run_tool("check_data", ["--images", d, "--annotations", tmp_path / "nope.json", "--no-progress"]) == 2
    assert "nope.json" in capsys.readouterr().err


@pytest.mark.fault("image folder does not exist", "check-data: clear error, exit 2; training: stops naming the folder")
def test_missing_image_folder(tmp_path, capsys) -> None:
    images, files = _images(4)
    d, j = write_dataset(tmp_path, images, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 20]}], files)
    wrong = tmp_path / "imgs"
    assert run_tool("check_data", ["--images", wrong, "--annotations", j, "--no-progress"]) == 2
    assert f"image folder {wrong} does not exist" in capsys.readouterr().err
    write_config(tmp_path / "c.yaml", tiny_config(wrong, j, 2))
    code = run_tool("train", ["--config", tmp_path / "c.yaml", "--output", tmp_path / "run", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"image folder {wrong} does not exist" in err


@pytest.mark.fault("every image file unreadable", "check-data lists each file; training stops with one clear error (not a conv2d crash)")
def test_every_image_unreadable(tmp_path, capsys) -> None:
    images, _ = _images(4)
    files = {f"{i}.jpg": b"not a picture" for i in range(4)}
    anns = [{"id": 10 + i, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 20, 20]} for i in range(4)]
    d, j = write_dataset(tmp_path, images, anns, files)
    assert run_tool("check_data", ["--images", d, "--annotations", j, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert out.count("unreadable_images: image") == 4 and "no_images" in out and "none of the 4 image files is readable" in out
    write_config(tmp_path / "c.yaml", tiny_config(d, j, 2))
    code = run_tool("train", ["--config", tmp_path / "c.yaml", "--output", tmp_path / "run", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no readable image" in err and "unreadable (4)" in err


@pytest.mark.fault("EXIF-rotated JPEG loaded outside training (load_image)", "rotation applied by default; given the "
                   "json's (h, w), the stored orientation the boxes fit is kept, as in training")
def test_load_image_with_expected_size(faulty_dataset: FaultyDataset) -> None:
    from ssdlite.data import load_image

    path = faulty_dataset.images / "exif_stored.jpg"
    assert load_image(path).shape == (W, H, 3)  # displayed: rotated 90 degrees
    assert load_image(path, expected_size=(H, W)).shape == (H, W, 3)  # the json's size: stored pixels
    assert load_image(path, expected_size=(W, H)).shape == (W, H, 3)
    assert load_image(path, expected_size=(10, 10)).shape == (W, H, 3)  # neither fits: rotation applied
