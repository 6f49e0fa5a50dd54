"""int8 vs fp32, per back end: COCO AP / AP50 and network time of trained models (``benchmark int8``).

For every ``--model LABEL CHECKPOINT CALIBRATION ANNOTATIONS`` (CALIBRATION: a folder of images, the
images of ANNOTATIONS unless ``--val-images`` is given; or ``val``, the config's val split) it
exports fp32 ONNX, runs ``ssdlite export --int8`` (:func:`ssdlite.eval.int8.export_int8`, the
default bound), then scores both files on every installed ONNX back end (ONNX Runtime, OpenVINO)
through ``Detector`` and times their networks (batch 1, ``--threads``, the runners alternating
round by round, medians). ``--recipes all`` also scores and times every recipe of
:data:`STUDY` on ONNX Runtime: the measurements behind the per-family choice of
:data:`ssdlite.deploy.quantize.RECIPES`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ssdlite.apps.bench.machine import cpu_description
from ssdlite.deploy.quantize import Recipe

HEAD = ("head_outputs",)
# the recipes compared by --recipes all (per-tensor first: the known V3 failure)
STUDY: tuple[Recipe, ...] = (
    Recipe("per-tensor", per_channel=False),
    Recipe("per-channel", per_channel=True),
    Recipe("per-channel+float-heads", keep_float=HEAD),
    Recipe("entropy", calibration="entropy", keep_float=HEAD),
    Recipe("percentile", calibration="percentile", keep_float=HEAD),
    Recipe("qint8-symmetric", activations="qint8", symmetric=True, keep_float=HEAD),
    Recipe("float-first-conv", keep_float=("first_conv", *HEAD)),
    Recipe("float-se", keep_float=("first_conv", *HEAD, "squeeze_excite")),
    Recipe("float-se-hswish", keep_float=("first_conv", *HEAD, "squeeze_excite", "hardswish")),
    Recipe("conv-add-only", keep_float=HEAD, ops="conv"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs=4, action="append", required=True,
                        metavar=("LABEL", "CHECKPOINT", "CALIBRATION", "ANNOTATIONS"),
                        help="a trained model, its calibration images (folder or val) and the COCO json to score on; repeat")
    parser.add_argument("--val-images", action="append", default=None, metavar="DIR",
                        help="the images of each --model's ANNOTATIONS, in order (default: its CALIBRATION folder)")
    parser.add_argument("--count", type=int, default=200, help="calibration images (default: 200)")
    parser.add_argument("--recipes", choices=("chosen", "all"), default="chosen",
                        help="chosen: the export's own recipe search; all: also every recipe of the study table")
    parser.add_argument("--threads", type=int, default=2, help="threads per runner (default: 2)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds, runners alternating (default: 5)")
    parser.add_argument("--iters", type=int, default=20, help="timed forward passes per runner per round (default: 20)")
    parser.add_argument("--out-dir", default=None, help="keep the exported files here (default: a temporary folder)")
    parser.add_argument("--json-out", default=None, help="write every figure as JSON here")


def _runner(backend: str, path: Path, threads: int) -> Any:
    from ssdlite.deploy.backends import make_runner

    return make_runner(backend, path, threads=threads)


def _ap(runner: Any, images: Any, annotations: Any) -> tuple[float, float]:
    from ssdlite.deploy.detector import Detector
    from ssdlite.eval.predict import evaluate_detector

    r = evaluate_detector(Detector(None, runner.config(), runner=runner), images, annotations, progress=False)
    return float(r.stats[0]), float(r.stats[1])


def time_runners(runners: dict[str, Any], batch: Any, rounds: int, iters: int) -> dict[str, float]:
    """Median ms per forward pass of each runner; runners alternate within every round (order rotated)."""
    samples: dict[str, list[float]] = {k: [] for k in runners}
    keys = list(runners)
    for k in keys:  # warm-up
        for _ in range(3):
            runners[k](batch)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            for _ in range(iters):
                t = time.perf_counter()
                runners[k](batch)
                samples[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def _sets(args: argparse.Namespace, i: int, calibration: str, annotations: str, cfg: Any) -> tuple[Any, Any]:
    if annotations == "val":
        from ssdlite.data.convert import split_ground_truth

        return split_ground_truth(cfg.data.val)
    images = (args.val_images[i] if args.val_images and i < len(args.val_images) else None) or calibration
    return images, annotations


def _one_model(args: argparse.Namespace, i: int, spec: list[str], out_dir: Path) -> dict:
    from ssdlite.deploy.backends import installed
    from ssdlite.deploy.export import export_onnx
    from ssdlite.deploy.quantize import calibration_images, load_calibration, quantize_onnx
    from ssdlite.eval.int8 import AccuracyBoundError, export_int8
    from ssdlite.model.checkpoint import load_model

    label, checkpoint, calibration, annotations = spec
    model, cfg = load_model(checkpoint)
    images, gt = _sets(args, i, calibration, annotations, cfg)
    fp32 = export_onnx(model, cfg, out_dir / f"{label}_fp32.onnx")
    int8 = out_dir / f"{label}_int8.onnx"
    row: dict = {"label": label, "checkpoint": checkpoint, "backbone": cfg.model.backbone.name,
                 "width_mult": cfg.model.backbone.width_mult, "reduced_tail": cfg.model.backbone.reduced_tail,
                 "input_size": list(cfg.model.input_size), "annotations": str(gt) if not isinstance(gt, dict) else "val"}
    val = None if calibration == "val" and annotations == "val" else (annotations if annotations != "val" else "val")
    try:
        rep = export_int8(checkpoint, int8, calibration=calibration, count=args.count, val=val,
                          val_images=images if val not in (None, "val") else None, threads=args.threads,
                          echo=lambda line: print(f"  [{label}] {line}"))
        row["int8_recipe"] = rep.chosen.recipe
        row["attempts"] = [a.__dict__ for a in rep.attempts]
    except AccuracyBoundError as e:
        print(f"  [{label}] {e}")
        row["int8_recipe"], row["attempts"] = None, [a.__dict__ for a in e.report.attempts]
    backends = [b for b in ("onnxruntime", "openvino") if installed(b)]
    files = {"fp32": fp32, **({"int8": int8} if int8.is_file() else {})}
    runners = {f"{b}/{p}": _runner(b, f, args.threads) for b in backends for p, f in files.items()}
    row["results"] = {}
    for key, runner in runners.items():
        ap, ap50 = _ap(runner, images, gt)
        row["results"][key] = {"AP": ap, "AP50": ap50, "precision": getattr(runner, "precision", key.split("/")[1])}
    batch, _ = load_calibration(calibration_images(images, 1), tuple(cfg.model.input_size), cfg.preprocess)
    for key, ms in time_runners(runners, batch, args.rounds, args.iters).items():
        row["results"][key]["ms"] = ms
    if args.recipes == "all":
        cal_paths = calibration_images(images, args.count) if calibration != "val" else None
        cal, _ = load_calibration(cal_paths, tuple(cfg.model.input_size), cfg.preprocess)
        study, study_runners = {}, {"fp32": runners["onnxruntime/fp32"]}
        with tempfile.TemporaryDirectory(prefix="ssdlite_int8_study_") as tmp:
            for recipe in STUDY:
                t = time.perf_counter()
                path = quantize_onnx(fp32, Path(tmp) / f"{recipe.name}.onnx", cal, recipe, cache_dir=tmp)
                study_runners[recipe.name] = _runner("onnxruntime", path, args.threads)
                ap, ap50 = _ap(study_runners[recipe.name], images, gt)
                study[recipe.name] = {"description": recipe.describe(), "AP": ap, "AP50": ap50,
                                      "quantize_s": round(time.perf_counter() - t, 1)}
                print(f"  [{label}] study {recipe.name}: AP {ap:.4f} AP50 {ap50:.4f}")
            for key, ms in time_runners(study_runners, batch, args.rounds, args.iters).items():
                study.setdefault(key, {})["ms"] = ms
        row["study"] = study
    return row


def _print(rows: list[dict]) -> None:
    print()
    print("| model | back end | precision ran | AP | AP50 | network ms (batch 1) |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for row in rows:
        name = f"{row['label']} ({row['backbone']} x{row['width_mult']}{' reduced' if row['reduced_tail'] else ''})"
        for key, r in row["results"].items():
            print(f"| {name} | {key.split('/')[0]} | {r['precision']} | {r['AP']:.4f} | {r['AP50']:.4f} | {r['ms']:.2f} |")
        print(f"| {name} | int8 recipe chosen | {row['int8_recipe'] or 'refused'} | | | |")
    for row in rows:
        if "study" not in row:
            continue
        fp32 = row["results"]["onnxruntime/fp32"]
        print(f"\nrecipes on ONNX Runtime, {row['label']} (fp32 AP {fp32['AP']:.4f}, {row['study']['fp32']['ms']:.2f} ms):")
        print("| recipe | settings | AP | drop | AP50 | ms | vs fp32 |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for name, s in row["study"].items():
            if name == "fp32":
                continue
            print(f"| {name} | {s['description']} | {s['AP']:.4f} | {fp32['AP'] - s['AP']:.4f} | {s['AP50']:.4f} | "
                  f"{s['ms']:.2f} | {row['study']['fp32']['ms'] / s['ms']:.2f}x |")


def run(args: argparse.Namespace) -> int:
    print(f"machine: {cpu_description()}")
    print(f"threads {args.threads}, {args.rounds} rounds x {args.iters} passes, runners alternating; {args.count} calibration images")
    with tempfile.TemporaryDirectory(prefix="ssdlite_int8_bench_") as tmp:
        out_dir = Path(args.out_dir or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [_one_model(args, i, spec, out_dir) for i, spec in enumerate(args.model)]
    _print(rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": cpu_description(), "models": rows}, indent=2, default=str))
    return 0
