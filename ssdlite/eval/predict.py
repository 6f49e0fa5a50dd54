"""Run a detector over a COCO-format dataset and score it with the COCO metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

from ssdlite.data.names import category_ids_of

__all__ = ["predict_coco", "evaluate_detector"]

log = logging.getLogger(__name__)


def _size_of(im: dict) -> tuple[int, int] | None:
    """The json's (height, width) of an image entry, or None when absent or not positive integers."""
    try:
        h, w = int(im["height"]), int(im["width"])
    except (KeyError, TypeError, ValueError):
        return None
    return (h, w) if h > 0 and w > 0 else None


def _image_index(annotations: str | Path | Mapping[str, Any]) -> list[tuple[int, str, tuple[int, int] | None]]:
    """(image id, file name, json (height, width) or None) of every image in a COCO json or dict, in file order."""
    if isinstance(annotations, Mapping):  # an in-memory ground truth (a VOC / YOLO split converted)
        return [(int(im["id"]), str(im["file_name"]), _size_of(im)) for im in annotations["images"]]
    path = Path(annotations)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except OSError as e:
        raise ValueError(f"cannot read annotations {path}: {e.strerror or e}") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise ValueError(f"{path}: no 'images' list (is this a COCO instances file?)")
    return [
        (int(im["id"]), str(im["file_name"]), _size_of(im))
        for im in images
        if isinstance(im, dict) and "id" in im and "file_name" in im
    ]


def predict_coco(
    detector: Any,
    images_dir: str | Path,
    annotations: str | Path | Mapping[str, Any],
    batch_size: int = 8,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    skipped: list[str] | None = None,
) -> list[dict]:
    """Detections of ``detector`` on every image of a COCO json, as COCO results dicts.

    Each result is ``{"image_id", "category_id", "bbox": [x, y, w, h] (pixels of the file), "score"}``,
    in the orientation of the json's width and height (an EXIF rotation that does not match them is
    not applied, as in training);
    label -> category id follows the detector's config (``model.category_ids``). Images that are
    missing or unreadable are skipped with a warning naming the file, and appended to ``skipped``.
    ``shard=(rank, world)`` takes every ``world``-th image (distributed evaluation).
    """
    from ssdlite.eval.coco import detections_to_coco_results
    from ssdlite.data.images import load_image

    images_dir = Path(images_dir)
    cat_ids = category_ids_of(detector.cfg.model)
    index = _image_index(annotations)[shard[0] :: shard[1]]
    results: list[dict] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(index), desc="eval", unit="img", leave=False, dynamic_ncols=True)
    for start in range(0, len(index), batch_size):
        chunk = index[start : start + batch_size]
        ids, frames = [], []
        for image_id, name, size in chunk:
            try:
                # the json size tells whether the boxes were drawn on the EXIF-rotated pixels or the
                # stored ones (training reads them the same way: CocoDetection.load_image)
                frames.append(load_image(images_dir / name, expected_size=size))
                ids.append(image_id)
            except ValueError as e:
                log.warning("skipping %s", e)
                if skipped is not None:
                    skipped.append(str(images_dir / name))
        if frames:
            for image_id, det in zip(ids, detector(frames)):
                results.extend(detections_to_coco_results(image_id, det.boxes, det.scores, det.labels, cat_ids))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return results


def evaluate_detector(
    detector: Any,
    images_dir: str | Path,
    annotations: str | Path | Mapping[str, Any],
    batch_size: int = 8,
    evaluator: str = "faster",
    progress: bool = True,
    results_out: str | Path | None = None,
    distributed: bool = False,
    metrics: tuple[str, ...] = ("coco",),
) -> Any:
    """COCO box metrics (an ``EvalResult``; VOC APs too with ``metrics``, as
    :func:`~ssdlite.eval.coco.evaluate_coco`) of ``detector`` on a dataset; with ``distributed``
    each rank predicts its shard and rank 0 scores the gathered results (others return None)."""
    from ssdlite.eval.coco import evaluate_coco
    from ssdlite import distributed as dist

    shard = (dist.rank(), dist.world_size()) if distributed else (0, 1)
    results = predict_coco(detector, images_dir, annotations, batch_size, progress and dist.is_main(), shard)
    if distributed:
        results = dist.all_gather_list(results)
        if not dist.is_main():
            return None
    if results_out is not None:
        from ssdlite.files import atomic_write

        atomic_write(results_out, lambda f: f.write(json.dumps(results).encode()))
    return evaluate_coco(annotations if isinstance(annotations, Mapping) else str(annotations), results, evaluator=evaluator,
                         metrics=metrics)
