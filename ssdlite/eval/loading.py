"""COCO ground truth and box results: loading them from files or dicts, and checking them.

Both evaluators (:mod:`ssdlite.eval.backends`) get what these functions return: copies that
they may write into, with unique annotation ids; the checks name the first bad entry instead
of the libraries' cryptic errors.

Results follow the COCO results format: a list of
``{"image_id": int, "category_id": int, "bbox": [x, y, w, h] (absolute pixels), "score": float}``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

__all__ = [
    "PathLike", "load_ground_truth", "load_results", "check_results", "check_scores", "check_image_ids",
    "unique_category_names",
]

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
_RESULT_KEYS = frozenset(("image_id", "category_id", "bbox", "score"))
_NEG_INF = -math.inf


def _read_json(path: PathLike, what: str) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise OSError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None


def load_ground_truth(gt: PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A COCO instances dict from a path or a dict, checked, that the evaluators may modify.

    A dict is copied (its annotation dicts too: both evaluators write keys into them).
    Raises ValueError when ``images``, ``annotations`` or ``categories`` is missing.
    """
    source = str(gt) if isinstance(gt, (str, Path)) else "ground-truth dict"
    if isinstance(gt, (str, Path)):
        data = _read_json(gt, "ground-truth file")
    elif isinstance(gt, Mapping):
        data = dict(gt)
        data["annotations"] = [dict(a) for a in gt.get("annotations", ())]
    else:
        raise ValueError(f"ground truth must be a path or a COCO dict, got {type(gt).__name__}")
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a COCO instances file is a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{source}: missing or invalid {key!r} list (not a COCO instances file?)")
    ids = set()
    for ann in data["annotations"]:
        if "area" not in ann or "bbox" not in ann or "image_id" not in ann or "category_id" not in ann:
            # both evaluators bin objects by the annotation's "area" (the segment area in COCO)
            raise ValueError(
                f"{source}: annotation id={ann.get('id')} lacks one of 'image_id', 'category_id', 'bbox', 'area'"
            )
        ids.add(ann.get("id"))
    if len(ids) != len(data["annotations"]) or 0 in ids or None in ids:
        # Both evaluators look annotations up by id and use id 0 to mean "unmatched": a
        # repeated, missing or zero id silently drops or mis-scores objects. Renumber our copy.
        log.warning("%s: annotation ids are missing, repeated or 0; renumbering them 1..%d for evaluation",
                    source, len(data["annotations"]))
        for i, ann in enumerate(data["annotations"], 1):
            ann["id"] = i
    return data


def load_results(results: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[dict[str, Any]]:
    """COCO box results as a fresh list of dicts (safe to hand to an evaluator, which writes into them).

    Accepts a path to a results json, a list of dicts, or a COCO-style dict whose
    ``annotations`` are the results. Each result needs ``image_id``, ``category_id``,
    ``bbox`` ([x, y, w, h] pixels) and ``score``.
    """
    source = str(results) if isinstance(results, (str, Path)) else "results"
    if isinstance(results, (str, Path)):
        data = _read_json(results, "results file")
        copy_items = False
    else:
        data = results
        copy_items = True
    if isinstance(data, Mapping):
        if not isinstance(data.get("annotations"), list):
            raise ValueError(f"{source}: expected a list of results or a dict with an 'annotations' list")
        data = data["annotations"]
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{source}: expected a list of results, got {type(data).__name__}")
    return [dict(d) for d in data] if copy_items else list(data)


def check_results(dets: list[Any], source: str = "results") -> None:
    """Raise a ValueError naming the first malformed result (one pass; run when an evaluator fails)."""
    bad = [i for i, d in enumerate(dets)
           if not (type(d) is dict and d.keys() >= _RESULT_KEYS
                   and isinstance(d["bbox"], (list, tuple)) and len(d["bbox"]) == 4
                   and all(isinstance(v, (int, float)) for v in d["bbox"])
                   and isinstance(d["score"], (int, float)) and d["score"] == d["score"])]
    if bad:
        d = dets[bad[0]]
        raise ValueError(
            f"{source}: {len(bad)} result(s) malformed, e.g. #{bad[0]}: each must be a dict with "
            f"{sorted(_RESULT_KEYS)}, bbox [x, y, w, h] numbers and a numeric, non-NaN score, got {d!r:.200}"
        )


def check_scores(dets: list[dict[str, Any]]) -> None:
    """A missing, non-numeric or NaN score raises (COCO ranks by score; NaN would rank arbitrarily)."""
    bad = [i for i, d in enumerate(dets) if not d["score"] > _NEG_INF]
    if bad:
        raise ValueError(f"{len(bad)} result(s) have a NaN or -inf score, e.g. #{bad[0]}: {dets[bad[0]]!r:.200}")


def check_image_ids(dets: list[dict[str, Any]], gt: dict[str, Any]) -> None:
    """Every result's image must be a ground-truth image (pycocotools asserts the same)."""
    try:
        dt_img_ids = {d["image_id"] for d in dets}
        dt_cat_ids = {d["category_id"] for d in dets}
    except (KeyError, TypeError):
        check_results(dets)
        raise
    gt_ids = {img["id"] for img in gt["images"]}
    unknown = dt_img_ids - gt_ids
    if unknown:
        some = sorted(unknown)[:5]
        raise ValueError(
            f"{len(unknown)} image id(s) of the results are not in the ground truth (e.g. {some}); "
            "results and annotations must come from the same dataset"
        )
    gt_cats = {c["id"] for c in gt["categories"]}
    stray = dt_cat_ids - gt_cats
    if stray:
        log.warning("results use %d category id(s) absent from the ground truth (ignored): %s",
                    len(stray), sorted(stray)[:10])


def unique_category_names(cats: list[dict[str, Any]]) -> list[str]:
    """The names of categories (their id when unnamed), a repeated name made unique with `` (id)``."""
    names = [str(c.get("name", c["id"])) for c in cats]
    repeated = {n for n in names if names.count(n) > 1}
    return [f"{n} ({c['id']})" if n in repeated else n for n, c in zip(names, cats)]
