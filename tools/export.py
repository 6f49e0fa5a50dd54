"""Export a checkpoint to a self-contained file (BN folded; anchors, classes, input size,
normalization and postprocess settings in the metadata). --format (default: from the --out
suffix, else onnx): onnx, tflite (LiteRT; pip install 'ssdlite[tflite]').

    python tools/export.py --checkpoint runs/x/best.pt --out model.onnx --verify
    python tools/detect.py --checkpoint model.onnx --source 0 --show

--verify runs the PyTorch and the ONNX Runtime back ends on --images (default: the photos of the
shared data, or generated scenes where it is absent) and exits non-zero, listing the worst differences, unless every detection
scoring clearly above the threshold matches (boxes <= 0.5 px, scores <= 1e-4, same label).
--format tflite writes a LiteRT model (NHWC input, raw outputs, the same metadata inside); add
--int8 --calibration DIR for full-integer int8 (int8 input / outputs too, or --int8-io float);
--verify then runs it in LiteRT's interpreter; an int8 file's detections are paired at IoU >= 0.5
(see ssdlite.deploy.verify.INT8_TOLERANCE) instead of to 1e-4.

    python tools/export.py --checkpoint best.pt --out model.tflite --int8 --calibration images/ --verify

--with-nms puts decoding and ONNX NonMaxSuppression in the graph (outputs boxes, scores,
labels, batch_index) for runtimes without ssdlite's postprocess; its thresholds are fixed at
export (--set postprocess.score_thresh=0.3 to change them).
"""

from __future__ import annotations

import argparse
import sys

from ssdlite.deploy.formats import format_names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="an ssdlite .pt checkpoint or published weights by name (coco)")
    parser.add_argument("--out", "--output", dest="out", required=True, help="the file to write (.onnx, ...)")
    parser.add_argument("--format", choices=format_names(), default=None,
                        help="export format (default: the one whose suffix --out has, else onnx)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 13..20 (default: 17)")
    parser.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch dimension (default: batch 1)")
    parser.add_argument("--with-nms", action="store_true", help="decode + NonMaxSuppression in the graph")
    parser.add_argument("--int8", action="store_true", help="tflite: full-integer int8 (post-training, calibrated on --calibration)")
    parser.add_argument("--calibration", default=None, metavar="DIR", help="--int8: a folder of images like the model's input")
    parser.add_argument("--calibration-count", type=int, default=200, metavar="N",
                        help="--int8: calibrate on N images of the folder, evenly spaced (default: 200)")
    parser.add_argument("--int8-io", choices=["int8", "float"], default="int8",
                        help="--int8: input / output type of the file (default: int8, as NPUs and the Edge TPU want)")
    parser.add_argument("--verify", action="store_true", help="compare the file in its own runtime with PyTorch on images; fail on mismatch")
    parser.add_argument("--images", nargs="+", default=None, help="images for --verify (default: the shared photos/darknet/*.jpg, else generated scenes)")
    parser.add_argument("--verify-score", type=float, default=None, help="score threshold for --verify (default: the checkpoint's)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a stored config value before export, e.g. postprocess.score_thresh=0.3",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for --verify")
    parser.add_argument("--weights-dir", default=None, metavar="DIR",
                        help="where named weights are downloaded and cached (default: $TORCH_HOME/hub/checkpoints)")
    parser.add_argument("--json-out", default=None, help="write the verification report as JSON here")
    return parser


def main(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from dataclasses import asdict
    from pathlib import Path

    from ssdlite.model.checkpoint import load_model, save_checkpoint
    from ssdlite.deploy.formats import exporter, format_for
    from ssdlite.deploy.verify import verify_export

    from ssdlite.model.pretrained import resolve_checkpoint

    fmt = format_for(args.format, args.out)
    export = exporter(fmt)  # a missing converter is one line before anything is built
    options = {  # each format's own options
        "onnx": dict(opset=args.opset, dynamic_batch=args.dynamic_batch, with_nms=args.with_nms),
        "tflite": dict(int8=args.int8, calibration=args.calibration, calibration_count=args.calibration_count,
                       int8_io=args.int8_io, threads=args.threads),
    }[fmt.name]
    if fmt.name != "tflite" and (args.calibration or args.int8_io != "int8"):
        raise ValueError(f"--calibration / --int8-io are options of --int8 --format tflite, not of --format {fmt.name}")
    if fmt.name != "tflite" and args.int8:
        raise ValueError(f"--int8 is not available for --format {fmt.name} here; use --format tflite")
    if args.verify and fmt.backend is None:
        raise ValueError(f"--format {fmt.name} cannot be run on this machine, so it cannot be verified; drop --verify")
    checkpoint = resolve_checkpoint(args.checkpoint, args.weights_dir)
    with tempfile.TemporaryDirectory(prefix="ssdlite_export_") as tmp:
        source = checkpoint
        if args.overrides:  # the overridden config must be what both back ends run with
            model, cfg = load_model(checkpoint, args.overrides)
            source = Path(tmp) / "overridden.pt"
            save_checkpoint(source, model, cfg)
        out = Path(export(source, args.out, **options))
        detail = {"onnx": f", opset {args.opset}, {'NMS in graph' if args.with_nms else 'raw outputs'}",
                  "tflite": f", {'int8, ' + args.int8_io + ' input / outputs' if args.int8 else 'fp32'}"}.get(fmt.name, "")
        print(f"export: wrote {out} ({fmt.name}, {out.stat().st_size / 1e6:.1f} MB{detail})")
        if not args.verify:
            return 0
        report = verify_export(out, source, args.images, backend=fmt.backend, threads=args.threads, score_thresh=args.verify_score)
    print(f"verify: {report.summary()}")
    if report.compared == 0:
        print(
            "verify: warning: no detection scored clearly above the threshold (flat scores, e.g. untrained weights); "
            "only the raw outputs were compared",
            file=sys.stderr,
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(asdict(report), indent=2))
    if not report.ok:
        print(f"export: error: {fmt.backend} and PyTorch disagree on {out} (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
