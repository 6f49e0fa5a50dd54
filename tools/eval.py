"""COCO (and Pascal VOC) box metrics of a model on a dataset, or of a results file against ground truth.

Results file:  python tools/eval.py --annotations GT.json --results DT.json [--json-out m.json]
A model:       python tools/eval.py --checkpoint best.pt --images DIR --annotations GT.json
               [--config C --set k=v ...] [--results-out dt.json] [--json-out m.json]
Metrics:       --metric coco (default) | voc07 | voc, or several: --metric coco voc07 voc
VOC / YOLO:    python tools/eval.py --checkpoint best.pt --data VOCdevkit/VOC2012 --split val
               python tools/eval.py --checkpoint best.pt --data data.yaml [--split val]
               (or data.val.* of --config in any format; the split is scored as COCO ground truth,
               VOC difficult objects as ignore regions)

Prints the 12 COCO box stats (pycocotools' wording) and a per-class AP table; writes the
metrics (--json-out), the COCO results file (--results-out) and a PNG of precision-recall
curves (--plot, by default beside --json-out). The numbers come from faster-coco-eval and
are identical to pycocotools' (--evaluator pycocotools runs the reference). voc07 (11-point
interpolated AP, VOC2007) and voc (area under the interpolated curve, VOC2010+) are the VOC
devkit's AP at IoU 0.5, "difficult" objects ignored, per class and their mean (mAP).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssdlite.apps.cli import add_config_args, add_runtime_args
from ssdlite.deploy.backends import backend_names, default_backend

METRICS = ("coco", "voc07", "voc")  # = ssdlite.eval.coco.METRICS (not imported: --help stays fast)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--annotations", help="COCO instances json (default with --config: data.val.annotations)")
    parser.add_argument("--results", help="COCO results json to score (results mode)")
    parser.add_argument("--checkpoint", help="model checkpoint (.pt), exported .onnx or published weights by name (coco) (model mode)")
    parser.add_argument("--images", help="image folder of the annotations (model mode; default: data.val.images)")
    parser.add_argument("--data", help="a VOC folder or a YOLO data.yaml to evaluate on (model mode; format detected)")
    parser.add_argument("--format", choices=("coco", "voc", "yolo"), help="the format of --data (default: detected)")
    parser.add_argument("--split", help="the split of --data: VOC ImageSets/Main/<split>.txt (default: every xml); "
                        "YOLO train/val/test (default: val)")
    add_config_args(parser)
    add_runtime_args(parser)
    parser.add_argument("--backend", choices=backend_names(auto=True), default=None,
                        help="inference back end (default: the one that runs the file: onnxruntime for .onnx, else torch; "
                             "auto: the fastest installed one for the file, measured once and cached)")
    parser.add_argument("--score-thresh", type=float, default=None,
                        help="detection score threshold (default: the config's postprocess.score_thresh)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: 8)")
    parser.add_argument("--evaluator", choices=("faster", "pycocotools"), default="faster",
                        help="faster-coco-eval (default) or the pycocotools reference; same numbers")
    parser.add_argument("--metric", nargs="+", choices=METRICS, default=["coco"], metavar="METRIC",
                        help="coco (default: the 12 COCO stats), voc07 (VOC2007 11-point AP@0.5), "
                             "voc (VOC2010+ area AP@0.5); several may be given")
    parser.add_argument("--json-out", help="write {stats, AP, AP50, ..., per_class, voc07, voc} here")
    parser.add_argument("--results-out", help="write the model's COCO results json here (model mode)")
    parser.add_argument("--plot", help="precision-recall PNG (default: <json-out stem>_pr.png when --json-out is set)")
    parser.add_argument("--no-per-class", action="store_true", help="skip the per-class table")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if bool(args.results) == bool(args.checkpoint):
        raise ValueError("give either --results DT.json (score a results file) or --checkpoint CKPT (run a model)")
    if args.results and args.results_out:
        raise ValueError("--results-out applies to model mode (--checkpoint); the results file already exists")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.plot and "coco" not in args.metric:
        raise ValueError("--plot draws the COCO precision-recall curves: add --metric coco")


def _plot_path(args: argparse.Namespace) -> Path | None:
    if args.plot:
        return Path(args.plot)
    if args.json_out and "coco" in args.metric:
        out = Path(args.json_out)
        return out.with_name(out.stem + "_pr.png")
    return None


def _val_split(args: argparse.Namespace, cfg):
    """The dataset to score: --data (any format), --images/--annotations (COCO) or the config's data.val."""
    from ssdlite.config import SplitConfig

    if args.data:
        from ssdlite.data.formats import detect_format

        fmt, location = (args.format, args.data) if args.format else detect_format(args.data)
        if fmt == "coco":
            return SplitConfig(images=args.images, annotations=str(location))
        return SplitConfig(format=fmt, root=str(location), split=args.split)
    if args.images or args.annotations or cfg is None:
        return SplitConfig(images=args.images, annotations=args.annotations)
    return cfg.data.val


def predict_results(args: argparse.Namespace) -> tuple[list[dict], object]:
    """Run the checkpoint on the dataset and return (COCO results, ground truth: a json path or a COCO dict)."""
    import ssdlite
    from ssdlite.data.convert import split_ground_truth
    from ssdlite.data.formats import split_given
    from ssdlite.eval.predict import predict_coco

    cfg = None
    if args.config or args.overrides:
        from ssdlite.apps.cli import config_from_args

        cfg = config_from_args(args)
    split = _val_split(args, cfg)
    if not split_given(split) or (split.format == "coco" and not split.images):
        raise ValueError("model mode needs --images and --annotations, --data (VOC / YOLO), or data.val.* in --config")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    backend = args.backend or default_backend(args.checkpoint)
    kwargs: dict = {"backend": backend, "device": args.device, "overrides": list(getattr(args, "overrides", []) or []),
                    "weights_dir": args.weights_dir}
    score_thresh = args.score_thresh if args.score_thresh is not None else (
        cfg.postprocess.score_thresh if cfg else None)
    if score_thresh is not None:
        kwargs["score_thresh"] = score_thresh
    if args.threads:
        kwargs["threads"] = args.threads
    detector = ssdlite.Detector.from_checkpoint(args.checkpoint, **kwargs)
    if hasattr(detector, "backend"):
        choice = getattr(detector, "backend_choice", None)
        why = f"; auto: {choice.reason}" if choice else ""
        print(f"eval: {args.checkpoint} ({detector.backend} {detector.precision}{why})", file=sys.stderr)
    names = detector.class_names if split.format != "coco" else None  # the label order of a VOC / YOLO ground truth
    images, annotations = split_ground_truth(split, class_names=names)
    results = predict_coco(detector, images, annotations, batch_size=args.batch_size)
    return results, annotations


def _print_report(result, per_class: bool) -> None:
    from ssdlite.eval.report import format_per_class, format_summary, format_voc

    if result.stats:
        print(format_summary(result))
        if per_class:
            print()
            print(format_per_class(result))
    if result.voc:
        if result.stats:
            print()
        print(format_voc(result, per_class=per_class))


def main(args: argparse.Namespace) -> int:
    from ssdlite.eval.coco import evaluate_coco
    from ssdlite.eval.plots import plot_pr_curves

    _check_args(args)
    if args.checkpoint:
        results, annotations = predict_results(args)
        if args.results_out:
            out = Path(args.results_out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results))
            print(f"wrote {len(results)} detections to {out}")
    else:
        if not args.annotations:
            raise ValueError("results mode needs --annotations GT.json")
        results, annotations = args.results, args.annotations

    result = evaluate_coco(annotations, results, evaluator=args.evaluator, per_class=not args.no_per_class,
                           metrics=args.metric)
    print(f"{result.num_detections} detections on {result.num_images} images"
          + (f" ({args.evaluator})" if result.stats else ""))
    _print_report(result, per_class=not args.no_per_class)
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_json(), indent=2))
        print(f"wrote metrics to {out}")
    plot = _plot_path(args)
    if plot is not None:
        plot_pr_curves(result, plot)
        print(f"wrote precision-recall curves to {plot}")
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
