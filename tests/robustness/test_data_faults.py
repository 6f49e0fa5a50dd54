"""Data faults: check-data reports each once (file or annotation id, summary count), and training on
the same data skips or repairs exactly what the report says, and its log repeats the counts."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ssdlite.data.check import check_dataset
from ssdlite.config import from_dict

from .conftest import DATA_FAULTS, W, H, FaultyDataset, run_tool, tiny_config, write_dataset

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


@pytest.mark.fault("check-data CLI without --decode", "finds missing and non-image files without decoding; says what it skipped")
def test_check_data_without_decode(faulty_dataset: FaultyDataset, capsys) -> None:
    code = run_tool("check_data", ["--images", faulty_dataset.images, "--annotations", faulty_dataset.annotations, "--no-progress"])
    assert code == 1
    text = capsys.readouterr().out
    assert re.search(r"missing_images: image 8, .*missing\.jpg", text)
    assert re.search(r"unreadable_images: image 10, .*text\.jpg", text)
    assert "truncated.jpg" not in text and "size_mismatch" not in text  # needs decoding: said so
    assert "--decode" in text


@pytest.mark.fault("check-data CLI on a clean dataset", "no problems found, exit 0")
def test_check_data_clean_dataset(shapes_data: Path, capsys) -> None:
    code = run_tool("check_data", ["--images", shapes_data / "train", "--annotations",
                                   shapes_data / "annotations" / "instances_train.json", "--decode", "--no-progress"])
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
    from .conftest import write_config

    write_config(cfg, tiny_config(d, j, 2))
    code = run_tool("train", ["--config", cfg, "--output", tmp_path / "run", "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "box" in err and str(j) in err


@pytest.mark.fault("invalid JSON", "check-data and training: one error line with the line and column, exit 2")
def test_invalid_json(tmp_path, capsys) -> None:
    from .conftest import write_config

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
    from .conftest import write_config

    images, files = _images(4)
    d, j = write_dataset(tmp_path, images, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 20]}], files)
    wrong = tmp_path / "imgs"
    assert run_tool("check_data", ["--images", wrong, "--annotations", j, "--no-progress"]) == 2
    assert f"image folder {wrong} does not exist" in capsys.readouterr().err
    write_config(tmp_path / "c.yaml", tiny_config(wrong, j, 2))
    code = run_tool("train", ["--config", tmp_path / "c.yaml", "--output", tmp_path / "run", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"no readable image in {wrong}" in err and "check-data" in err


@pytest.mark.fault("every image file unreadable", "check-data lists each file; training stops with one clear error (not a conv2d crash)")
def test_every_image_unreadable(tmp_path, capsys) -> None:
    from .conftest import write_config

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
