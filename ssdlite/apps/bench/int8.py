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
    parser.add_argument("--model", nargs=4, action="append", default=[],
                        metavar=("LABEL", "CHECKPOINT", "CALIBRATION", "ANNOTATIONS"),
                        help="a trained model, its calibration images (folder or val) and the COCO json to score on; repeat")
    parser.add_argument("--val-images", action="append", default=None, metavar="DIR",
                        help="the images of each --model's ANNOTATIONS, in order (default: its CALIBRATION folder)")
    parser.add_argument("--count", type=int, default=200, help="calibration images (default: 200)")
    parser.add_argument("--max-ap-drop", type=float, default=0.01,
                        help="the export's bound (default 0.01); a model refused under it is scored with its best attempt")
    parser.add_argument("--recipes", choices=("chosen", "all"), default="chosen",
                        help="chosen: the export's own recipe search; all: also every recipe of the study table")
    parser.add_argument("--threads", type=int, default=2, help="threads per runner (default: 2)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds, runners alternating (default: 5)")
    parser.add_argument("--iters", type=int, default=20, help="timed forward passes per runner per round (default: 20)")
    parser.add_argument("--configs", nargs="*", default=None, metavar="YAML",
                        help="also time fp32 vs int8 (each family's chosen recipe) for these configs, as lively random "
                             "models calibrated on --photos (no trained weights: speed and raw-output SQNR only); "
                             "no value: the six ssdlite320 paper configs")
    parser.add_argument("--photos", default=None, metavar="DIR",
                        help="images for --configs' calibration (default: the shared coco_tiny80 val2017, else generated)")
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
    from ssdlite.deploy.quantize import calibration_images, load_calibration, quantize_onnx, recipes_for
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
    kwargs = dict(calibration=calibration, count=args.count, val=val, val_images=images if val not in (None, "val") else None,
                  threads=args.threads, echo=lambda line: print(f"  [{label}] {line}"))
    try:
        rep = export_int8(checkpoint, int8, max_ap_drop=args.max_ap_drop, **kwargs)
        row["int8_recipe"], row["int8_status"] = rep.chosen.recipe, f"within {args.max_ap_drop}"
        row["attempts"] = [a.__dict__ for a in rep.attempts]
    except AccuracyBoundError as e:
        print(f"  [{label}] {e}")
        row["attempts"] = [a.__dict__ for a in e.report.attempts]
        best = min(e.report.attempts, key=lambda a: a.drop)
        recipe = next(r for r in recipes_for(cfg.model.backbone.name) if r.name == best.recipe)
        export_int8(checkpoint, int8, max_ap_drop=None, recipes=[recipe], **kwargs)  # scored below, marked refused
        row["int8_recipe"], row["int8_status"] = best.recipe, f"REFUSED by export at {args.max_ap_drop}; best attempt shown"
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
        cal_paths = calibration_images(images if calibration == "val" else calibration, args.count)  # as export calibrates
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


def _photos(folder: str | None, count: int) -> list[Any]:
    from ssdlite._paths import shared_data_dir
    from ssdlite.data.images import load_image
    from ssdlite.deploy.quantize import calibration_images

    if folder is None and shared_data_dir() is not None and (shared_data_dir() / "coco_tiny80" / "val2017").is_dir():
        folder = str(shared_data_dir() / "coco_tiny80" / "val2017")
    if folder is None:
        raise ValueError("--configs needs --photos DIR (real images to calibrate on)")
    return [load_image(p) for p in calibration_images(folder, count)]


def _speed_rows(args: argparse.Namespace, out_dir: Path) -> list[dict]:
    """fp32 vs int8 network time (and raw-output SQNR) of lively random models of ``--configs``, per back end."""
    import numpy as np

    from ssdlite._paths import REPO_ROOT
    from ssdlite.apps.bench.lively import lively_random_model
    from ssdlite.config import load_config
    from ssdlite.deploy.backends import installed
    from ssdlite.deploy.detector import preprocess
    from ssdlite.deploy.export import export_onnx
    from ssdlite.deploy.quantize import quantize_onnx, recipes_for

    paths = args.configs or sorted(str(p) for p in (REPO_ROOT / "configs").glob("ssdlite320_*.yaml"))
    images = _photos(args.photos, min(args.count, 64))
    rows = []
    for path in paths:
        cfg = load_config(path)
        name = Path(path).stem
        model = lively_random_model(cfg, images[:16], candidates=10.0, score_thresh=cfg.postprocess.score_thresh)
        fp32 = export_onnx(model, cfg, out_dir / f"{name}_fp32.onnx")
        batch, _ = preprocess(images, tuple(cfg.model.input_size), cfg.preprocess)
        recipe = recipes_for(cfg.model.backbone.name)[0]
        int8 = quantize_onnx(fp32, out_dir / f"{name}_int8.onnx", batch, recipe)
        runners = {f"{b}/{p}": _runner(b, f, args.threads) for b in ("onnxruntime", "openvino") if installed(b)
                   for p, f in (("fp32", fp32), ("int8", int8))}
        a, b = runners["onnxruntime/fp32"](batch[:8]), runners["onnxruntime/int8"](batch[:8])
        sqnr = [float(10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((x.astype(np.float64) - y) ** 2)))
                for x, y in zip(a, b)]
        ms = time_runners(runners, batch[:1], args.rounds, args.iters)
        rows.append({"config": name, "recipe": recipe.name, "sqnr_db": sqnr, "ms": ms})
        print(f"  [{name}] {recipe.name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()))
    return rows


def _print_speed(rows: list[dict]) -> None:
    keys = list(rows[0]["ms"])
    print("\nnetwork ms per frame (batch 1), lively random weights; SQNR of int8 raw outputs vs fp32 (cls, box):")
    print("| config | int8 recipe | " + " | ".join(keys) + " | " + " | ".join(f"{k.split('/')[0]} int8 speed-up" for k in keys
                                                                           if k.endswith("int8")) + " | SQNR dB |")
    print("| --- | --- | " + " | ".join("---:" for _ in keys) + " | " + " | ".join("---:" for k in keys if k.endswith("int8"))
          + " | ---: |")
    for r in rows:
        ups = [r["ms"][k.replace("int8", "fp32")] / r["ms"][k] for k in keys if k.endswith("int8")]
        print(f"| {r['config']} | {r['recipe']} | " + " | ".join(f"{r['ms'][k]:.2f}" for k in keys) + " | "
              + " | ".join(f"{u:.2f}x" for u in ups) + f" | {r['sqnr_db'][0]:.1f} / {r['sqnr_db'][1]:.1f} |")


def _print(rows: list[dict]) -> None:
    print()
    print("| model | back end | precision ran | AP | AP50 | network ms (batch 1) |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for row in rows:
        name = f"{row['label']} ({row['backbone']} x{row['width_mult']}{' reduced' if row['reduced_tail'] else ''})"
        for key, r in row["results"].items():
            print(f"| {name} | {key.split('/')[0]} | {r['precision']} | {r['AP']:.4f} | {r['AP50']:.4f} | {r['ms']:.2f} |")
        print(f"| {name} | int8 recipe | {row['int8_recipe']} ({row['int8_status']}) | | | |")
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
        if not args.model and args.configs is None:
            raise ValueError("give --model LABEL CHECKPOINT CALIBRATION ANNOTATIONS (repeatable) and / or --configs")
        rows = [_one_model(args, i, spec, out_dir) for i, spec in enumerate(args.model)]
        speed = _speed_rows(args, out_dir) if args.configs is not None else []
    if rows:
        _print(rows)
    if speed:
        _print_speed(speed)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": cpu_description(), "models": rows, "speed": speed}, indent=2,
                                                  default=str))
    return 0
