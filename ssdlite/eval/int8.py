"""int8 export under a measured accuracy bound: ``ssdlite export --int8``.

:func:`export_int8` exports the checkpoint to fp32 ONNX, scores it on annotated images, then
quantizes it with each recipe of its backbone family in turn (:data:`ssdlite.deploy.quantize.RECIPES`:
the chosen one first, then fallbacks that keep more in float or calibrate differently), scores
every int8 candidate through the same ``Detector`` path (ONNX Runtime, the same preprocess and
postprocess, ``evaluate_detector``) and writes the first whose COCO AP is at most ``max_ap_drop``
below fp32's. When none is, nothing is written and :class:`AccuracyBoundError` says what each
recipe lost. Where there are no annotations the bound cannot be measured: that is an error
unless the caller passes ``max_ap_drop=None`` (written unmeasured, and recorded so).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ssdlite.deploy.quantize import DEFAULT_CALIBRATION_COUNT as DEFAULT_COUNT

__all__ = ["Attempt", "Int8Report", "AccuracyBoundError", "export_int8", "export_int8_file", "export_tflite_int8_file", "DEFAULT_COUNT",
           "DEFAULT_MAX_AP_DROP"]

DEFAULT_MAX_AP_DROP = 0.01  # absolute COCO AP: 0.01 = 1 AP point

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One recipe tried: its APs on the evaluation images (None when unmeasured) and the drop from fp32."""

    recipe: str
    description: str
    ap: float | None
    ap50: float | None
    drop: float | None
    seconds: float
    accepted: bool = False


@dataclass
class Int8Report:
    """What :func:`export_int8` did: the file (None when refused), fp32 and per-recipe APs, the data used."""

    path: str | None
    backbone: str
    family: str
    calibration: str  # where the calibration images came from
    calibration_images: int
    skipped: list[str]  # calibration files that could not be read
    evaluated_on: str | None  # annotations scored (None: the bound was not measured)
    evaluated_images: int
    max_ap_drop: float | None
    fp32_ap: float | None
    fp32_ap50: float | None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def chosen(self) -> Attempt | None:
        return next((a for a in self.attempts if a.accepted), None)

    def tried(self) -> str:
        """``recipe (description): AP 0.512 (-0.031); ...`` for every attempt."""
        parts = []
        for a in self.attempts:
            ap = "AP not measured" if a.ap is None else f"AP {a.ap:.4f} ({-a.drop:+.4f})"
            parts.append(f"{a.recipe} ({a.description}): {ap}")
        return "; ".join(parts)

    def summary(self) -> str:
        c = self.chosen
        if c is None:
            return f"no recipe within the bound; tried {self.tried()}"
        if c.ap is None:
            return f"{c.recipe} ({c.description}); accuracy NOT measured (no annotations, --max-ap-drop none)"
        return (f"{c.recipe} ({c.description}); AP {self.fp32_ap:.4f} fp32 -> {c.ap:.4f} int8 (drop {c.drop:.4f}, "
                f"bound {self.max_ap_drop}), AP50 {self.fp32_ap50:.4f} -> {c.ap50:.4f}, on {self.evaluated_images} images "
                f"of {self.evaluated_on}")


class AccuracyBoundError(ValueError):
    """No recipe kept the int8 model within ``max_ap_drop`` of fp32 (the message lists every attempt)."""

    def __init__(self, message: str, report: Int8Report) -> None:
        super().__init__(message)
        self.report = report


def _image_list(annotations: Any) -> list[tuple[str, tuple[int, int] | None]]:
    from ssdlite.eval.predict import _image_index

    return [(name, size) for _, name, size in _image_index(annotations)]


def _score(runner: Any, cfg: Any, images: str | Path, annotations: Any) -> tuple[float, float]:
    """(AP, AP50) of a runner on a COCO split through ``Detector`` + ``evaluate_detector``."""
    from ssdlite.deploy.detector import Detector
    from ssdlite.eval.predict import evaluate_detector

    result = evaluate_detector(Detector(None, cfg, runner=runner), images, annotations, progress=False)
    return float(result.stats[0]), float(result.stats[1])


def _resolve_sets(cfg: Any, calibration: str | Path | None, count: int | None, val: str | Path | None,
                  val_images: str | Path | None) -> tuple[str, list[Path], tuple[Any, Any] | None]:
    """(calibration description, calibration image paths, (eval images dir, eval annotations) or None)."""
    from ssdlite.data.convert import split_ground_truth
    from ssdlite.data.names import class_names_of
    from ssdlite.deploy.quantize import calibration_images, spread

    def config_val() -> tuple[Any, Any]:
        split = cfg.data.val
        if split.format == "coco" and not (split.images and split.annotations):
            raise ValueError("the model's config has no val split (data.val.images / annotations): give --calibration DIR")
        missing = [str(p) for p in (split.images, split.annotations) if p and not Path(p).exists()]
        if missing:
            raise ValueError(f"--calibration val: the config's val split is not on this machine ({', '.join(missing)} missing): "
                             "give --calibration DIR (a folder of images) and --val ANNOTATIONS.json with --val-images DIR")
        names = class_names_of(cfg.model) if split.format != "coco" else None
        return split_ground_truth(split, class_names=names)

    evaluation = None
    if calibration is None or str(calibration) == "val":
        images_dir, gt = config_val()
        listed = spread(_image_list(gt), count)
        paths = [Path(images_dir) / name for name, _ in listed]
        source = f"the config's val split ({images_dir})"
        evaluation = (images_dir, gt)
    else:
        paths = calibration_images(calibration, count)
        source = str(calibration)
    if val is not None:
        if str(val) == "val":
            evaluation = config_val()
        else:
            images_dir = val_images or (calibration if calibration not in (None, "val") else None)
            if images_dir is None:
                raise ValueError(f"--val {val}: give --val-images, the folder of its images")
            evaluation = (images_dir, str(val))
    return source, paths, evaluation


def export_int8(
    checkpoint: str | Path,
    out: str | Path,
    *,
    calibration: str | Path | None = "val",
    count: int | None = DEFAULT_COUNT,
    val: str | Path | None = None,
    val_images: str | Path | None = None,
    max_ap_drop: float | None = DEFAULT_MAX_AP_DROP,
    recipes: Sequence[Any] | None = None,
    opset: int = 17,
    threads: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> Int8Report:
    """Export ``checkpoint`` as one int8 ONNX file at ``out``, within ``max_ap_drop`` COCO AP of fp32.

    Args:
        calibration: ``"val"`` / None (the config's val split: its images calibrate and its
            annotations measure) or a folder of images.
        count: calibration images (evenly spaced over the folder or split); None: all.
        val: annotations to measure the bound on instead: ``"val"`` (the config's val split)
            or a COCO json whose images are in ``val_images`` (default: the calibration folder).
        max_ap_drop: the largest COCO AP (absolute) the int8 model may lose; None writes the
            first recipe's model without the bound (measured and recorded when annotations exist).
        recipes: the :class:`~ssdlite.deploy.quantize.Recipe` sequence to try (default: the
            backbone family's, :func:`~ssdlite.deploy.quantize.recipes_for`).
        echo: called with a line per step (progress for the command line).

    Returns:
        The :class:`Int8Report`. Raises :class:`AccuracyBoundError` (nothing written) when no
        recipe is within the bound, ValueError when the bound cannot be measured and is not waived.
    """
    from ssdlite.deploy.export import export_onnx
    from ssdlite.deploy.onnx_runtime import OnnxRunner
    from ssdlite.deploy.quantize import quantize_onnx, recipes_for, set_quantization

    say = echo or (lambda line: log.info(line))
    model, cfg, paths, evaluation, report = _prepare(checkpoint, calibration, count, val, val_images, max_ap_drop)
    recipes = tuple(recipes) if recipes is not None else recipes_for(report.backbone)
    if not recipes:
        raise ValueError("no quantization recipe to try")
    batch = _calibration_batch(paths, cfg, report, say)
    with tempfile.TemporaryDirectory(prefix="ssdlite_int8_") as tmp:
        fp32 = export_onnx(model, cfg, Path(tmp) / "fp32.onnx", opset=opset)
        if evaluation:
            report.fp32_ap, report.fp32_ap50 = _score(OnnxRunner(fp32, threads=threads), cfg, *evaluation)
            say(f"int8: fp32 AP {report.fp32_ap:.4f} AP50 {report.fp32_ap50:.4f} on {report.evaluated_images} images ({report.evaluated_on})")
        for i, recipe in enumerate(recipes):
            started = time.perf_counter()
            candidate = quantize_onnx(fp32, Path(tmp) / f"int8_{i}.onnx", batch, recipe, cache_dir=tmp)
            runner = OnnxRunner(candidate, threads=threads) if evaluation else None
            if _judge(report, recipe.name, recipe.describe(), runner, cfg, evaluation, started, say):
                report.path = str(set_quantization(candidate, _record(report, "onnxruntime"), out=out))
                say(f"int8: chose {report.summary()}")
                return report
    raise _refusal(report, out)


def _prepare(checkpoint: str | Path, calibration: Any, count: int | None, val: Any, val_images: Any,
             max_ap_drop: float | None) -> tuple[Any, Any, list[Path], tuple[Any, Any] | None, Int8Report]:
    """The model, its config, the calibration files, the evaluation set and an empty report."""
    from ssdlite.deploy.quantize import family_of
    from ssdlite.model.checkpoint import load_model

    if max_ap_drop is not None and not 0 <= max_ap_drop <= 1:
        raise ValueError(f"max_ap_drop must be in [0, 1] (absolute COCO AP; 0.01 = 1 AP point), got {max_ap_drop}")
    model, cfg = load_model(checkpoint)
    backbone = cfg.model.backbone.name
    source, paths, evaluation = _resolve_sets(cfg, calibration, count, val, val_images)
    if evaluation is None and max_ap_drop is not None:
        raise ValueError(
            f"the accuracy bound (max AP drop {max_ap_drop}) cannot be measured: {source} is a plain image folder without "
            "annotations; give --val ANNOTATIONS.json (or --val val) to measure it, or --max-ap-drop none to write the int8 "
            "model unmeasured")
    n_eval = len(_image_list(evaluation[1])) if evaluation else 0
    evaluated_on = (str(evaluation[1]) if not isinstance(evaluation[1], dict) else "the config's val split") if evaluation else None
    report = Int8Report(None, backbone, family_of(backbone), source, len(paths), [], evaluated_on, n_eval, max_ap_drop, None, None)
    return model, cfg, paths, evaluation, report


def _calibration_batch(paths: list[Path], cfg: Any, report: Int8Report, say: Callable[[str], None]) -> Any:
    from ssdlite.deploy.quantize import load_calibration

    batch, report.skipped = load_calibration(paths, tuple(cfg.model.input_size), cfg.preprocess)
    report.calibration_images = len(batch)
    say(f"int8: calibrating on {len(batch)} images of {report.calibration}"
        + (f" ({len(report.skipped)} unreadable, skipped)" if report.skipped else ""))
    for line in report.skipped[:5]:
        say(f"int8:   skipped {line}")
    return batch


def _judge(report: Int8Report, name: str, description: str, runner: Any, cfg: Any, evaluation: Any, started: float,
           say: Callable[[str], None]) -> bool:
    """Score one int8 candidate (``runner``; None: unmeasured), record the attempt; True when it is accepted."""
    ap = ap50 = drop = None
    if evaluation:
        ap, ap50 = _score(runner, cfg, *evaluation)
        drop = report.fp32_ap - ap
    attempt = Attempt(name, description, ap, ap50, drop, round(time.perf_counter() - started, 1))
    report.attempts.append(attempt)
    say(f"int8: {name} ({description}): " + ("not measured" if ap is None else f"AP {ap:.4f} AP50 {ap50:.4f} (drop {drop:.4f})"))
    attempt.accepted = report.max_ap_drop is None or drop <= report.max_ap_drop + 1e-12
    return attempt.accepted


def _record(report: Int8Report, backend: str) -> dict[str, Any]:
    """What the file's quantization record says about the measurement."""
    c = report.chosen
    return {"backend_measured": backend if report.evaluated_on else None,
            "max_ap_drop": report.max_ap_drop, "evaluated_on": report.evaluated_on, "evaluated_images": report.evaluated_images,
            "fp32_ap": report.fp32_ap, "fp32_ap50": report.fp32_ap50, "int8_ap": c.ap, "int8_ap50": c.ap50,
            "ap_drop": c.drop, "calibration_source": report.calibration, "calibration_skipped": len(report.skipped),
            "backbone": report.backbone, "family": report.family, "attempts": [asdict(a) for a in report.attempts]}


def _refusal(report: Int8Report, out: str | Path) -> AccuracyBoundError:
    return AccuracyBoundError(
        f"int8: refused to write {out}: every recipe lost more than {report.max_ap_drop} COCO AP (fp32 AP {report.fp32_ap:.4f} on "
        f"{report.evaluated_images} images of {report.evaluated_on}); tried {report.tried()}. Loosen --max-ap-drop, calibrate on "
        "more / other images, or keep the fp32 export", report)


def export_tflite_int8(checkpoint: str | Path, out: str | Path, *, calibration: str | Path | None = "val",
                       count: int | None = DEFAULT_COUNT, val: str | Path | None = None, val_images: str | Path | None = None,
                       max_ap_drop: float | None = DEFAULT_MAX_AP_DROP, int8_io: str = "int8", threads: int | None = None,
                       echo: Callable[[str], None] | None = None) -> Int8Report:
    """:func:`export_int8` for LiteRT: one full-integer ``.tflite`` (ai-edge-quantizer's static int8,
    the only recipe), scored against the fp32 ``.tflite`` in LiteRT's interpreter; refused above the bound."""
    from ssdlite.deploy.litert_runtime import LiteRtRunner
    from ssdlite.deploy.tflite_export import export_tflite
    from ssdlite.deploy.tflite_format import QUANT_KEY, read_metadata, read_quantization, with_metadata
    from ssdlite.files import atomic_write

    say = echo or (lambda line: log.info(line))
    model, cfg, paths, evaluation, report = _prepare(checkpoint, calibration, count, val, val_images, max_ap_drop)
    say(f"int8: calibrating on {len(paths)} images of {report.calibration}")
    description = f"full-integer int8, per-channel weights, min/max activations, {int8_io} input / outputs"
    with tempfile.TemporaryDirectory(prefix="ssdlite_int8_") as tmp:
        if evaluation:
            fp32 = export_tflite(model, cfg, Path(tmp) / "fp32.tflite")
            report.fp32_ap, report.fp32_ap50 = _score(LiteRtRunner(fp32, threads=threads), cfg, *evaluation)
            say(f"int8: fp32 AP {report.fp32_ap:.4f} AP50 {report.fp32_ap50:.4f} on {report.evaluated_images} images ({report.evaluated_on})")
        started = time.perf_counter()
        candidate = export_tflite(model, cfg, Path(tmp) / "int8.tflite", int8=True, calibration=paths, int8_io=int8_io,
                                  threads=threads)
        runner = LiteRtRunner(candidate, threads=threads) if evaluation else None
        if not _judge(report, "tflite-int8", description, runner, cfg, evaluation, started, say):
            raise _refusal(report, out)
        content = candidate.read_bytes()
        record = {**(read_quantization(read_metadata(candidate, content)) or {}), **_record(report, "litert")}
        content = with_metadata(content, {QUANT_KEY: json.dumps(record)})
        atomic_write(out, lambda f: f.write(content))
    report.path = str(out)
    say(f"int8: chose {report.summary()}")
    return report


def export_int8_file(checkpoint: str | Path, out: str | Path, *, opset: int = 17, dynamic_batch: bool = False,
                     with_nms: bool = False, json_out: str | Path | None = None, **options: Any) -> Path:
    """The ``int8`` exporter of the ``onnx`` row of :data:`ssdlite.deploy.formats.EXPORT_FORMATS`:
    :func:`export_int8`, its report written as JSON to ``json_out`` (also when refused)."""
    if dynamic_batch or with_nms:
        raise ValueError("--int8 writes the raw-output batch-1 graph: drop --dynamic-batch / --with-nms")
    try:
        report = export_int8(checkpoint, out, opset=opset, **options)
    except AccuracyBoundError as e:
        _write_report(e.report, json_out)
        raise
    _write_report(report, json_out)
    return Path(report.path)


def _write_report(report: Int8Report, json_out: str | Path | None) -> None:
    if json_out:
        import json

        from ssdlite.files import atomic_write

        atomic_write(json_out, lambda f: f.write(json.dumps(asdict(report), indent=2).encode()))


def export_tflite_int8_file(checkpoint: str | Path, out: str | Path, *, json_out: str | Path | None = None,
                            **options: Any) -> Path:
    """The ``int8`` exporter of the ``tflite`` row of :data:`ssdlite.deploy.formats.EXPORT_FORMATS`."""
    try:
        report = export_tflite_int8(checkpoint, out, **options)
    except AccuracyBoundError as e:
        _write_report(e.report, json_out)
        raise
    _write_report(report, json_out)
    return Path(report.path)
