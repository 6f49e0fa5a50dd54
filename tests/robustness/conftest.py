"""Builders for the fault-injection suite, the ``fault`` marker and the hook that feeds tools/robustness.py.

Every case carries ``@pytest.mark.fault(name, expected)``: the fault it injects and the
behaviour it expects. When ``SSDLITE_ROBUSTNESS_REPORT`` names a file, each collected case and
each outcome is appended to it as a JSON line (``tools/robustness.py`` turns them into its table).

:func:`build_faulty_dataset` writes a COCO dataset holding one of every data fault of the issue
and records, per fault, what ``check-data`` must report and what training must do about it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pytest

from ssdlite._paths import REPO_ROOT

REPORT_ENV = "SSDLITE_ROBUSTNESS_REPORT"
HERE = Path(__file__).resolve().parent

# ----------------------------------------------------------------------------- the fault marker and the report hook


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault(name, expected): the fault a robustness case injects and the behaviour it expects"
    )


def fault_of(item: pytest.Item) -> tuple[str, str]:
    """(fault name, expected behaviour) of a case: its innermost ``fault`` mark (a parameter's wins)."""
    own = [m for m in getattr(item, "own_markers", []) if m.name == "fault"]
    mark = own[-1] if own else item.get_closest_marker("fault")
    if mark is None:
        return item.name, ""
    name = mark.args[0] if mark.args else mark.kwargs.get("name", item.name)
    expected = mark.args[1] if len(mark.args) > 1 else mark.kwargs.get("expected", "")
    return str(name), str(expected)


def _emit(record: dict) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _ours(nodeid: str) -> bool:
    return "robustness/" in nodeid.replace("\\", "/")


def pytest_collection_finish(session: pytest.Session) -> None:
    if not os.environ.get(REPORT_ENV):
        return
    for item in session.items:
        if _ours(item.nodeid):
            name, expected = fault_of(item)
            _emit({"event": "collected", "nodeid": item.nodeid, "fault": name, "expected": expected,
                   "slow": item.get_closest_marker("slow") is not None})


_RUNNING: dict[str, dict] = {}


def _message(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail") and report.skipped:
        return str(report.wasxfail).removeprefix("reason: ")
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = report.longreprtext or ""
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    if errors:
        return " ".join(errors[:3])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not os.environ.get(REPORT_ENV) or not _ours(report.nodeid):
        return
    st = _RUNNING.setdefault(report.nodeid, {"outcome": None, "message": "", "duration": 0.0})
    st["duration"] += report.duration
    xfail = hasattr(report, "wasxfail")
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            st["outcome"] = "xpassed" if xfail else "passed"
        elif report.skipped:
            st["outcome"] = "xfailed" if xfail else "skipped"
        else:
            st["outcome"] = "failed" if report.when == "call" else "error"
        st["message"] = "" if report.passed and not xfail else _message(report)
    elif report.when == "teardown":
        if report.failed and st["outcome"] in (None, "passed"):
            st["outcome"], st["message"] = "error", "teardown: " + _message(report)
        _emit({"event": "result", "nodeid": report.nodeid, **_RUNNING.pop(report.nodeid)})


# ----------------------------------------------------------------------------- small helpers


def load_tool(name: str) -> Any:
    """The module ``tools/<name>.py`` (loaded by path, as the console script would run it)."""
    spec = importlib.util.spec_from_file_location(f"robustness_tool_{name}", REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(name: str, argv: Sequence[str]) -> int:
    """Exit code of ``tools/<name>.py argv`` run in this process (errors become one line on stderr)."""
    from ssdlite.apps.cli import run

    tool = load_tool(name)
    return run(tool.main, tool.build_parser(), [str(a) for a in argv])


def tiny_config(train_images: Path | str, train_annotations: Path | str, num_classes: int,
                val_images: Path | str | None = None, val_annotations: Path | str | None = None, **train: Any) -> dict:
    """A config dict for a tiny CPU run: MobileNetV3-Small x0.5 at 128 px, 1 epoch, no workers."""
    t = {"epochs": 1, "batch_size": 4, "lr": 0.05, "reference_batch": 4, "warmup_epochs": 0.5, "workers": 0,
         "ema": False, "seed": 7, "channels_last": False}
    t.update(train)
    return {
        "model": {"backbone": {"name": "mobilenet_v3_small", "width_mult": 0.5}, "num_classes": num_classes,
                  "input_size": [128, 128], "extra_channels": [64, 32, 32, 16]},
        "data": {"train": {"images": str(train_images), "annotations": str(train_annotations)},
                 "val": {"images": str(val_images) if val_images else None,
                         "annotations": str(val_annotations) if val_annotations else None},
                 "augment": "none"},
        "train": t,
    }


def write_config(path: Path, cfg: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic shapes set: 12 train and 4 val images of 128 px, 4 classes (a clean dataset)."""
    from ssdlite.data.synthetic import make_shapes_dataset

    d = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(d, num_train=12, num_val=4, size=128, seed=3)
    return d


def shapes_config(data: Path, **train: Any) -> dict:
    return tiny_config(data / "train", data / "annotations" / "instances_train.json", 4,
                       data / "val", data / "annotations" / "instances_val.json", **train)


# ----------------------------------------------------------------------------- the faulty dataset


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


@pytest.fixture(scope="session")
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
