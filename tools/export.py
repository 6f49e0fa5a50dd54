"""Export a checkpoint to a self-contained file (BN folded; anchors, classes, input size,
normalization and postprocess settings in the metadata). --format (default: from the --out
suffix, else onnx): onnx, ncnn (--out model.param: writes model.param + model.bin + model.json, the
metadata), coreml (--out model.mlpackage; conversion only, it runs on Apple devices), tflite (LiteRT).

    python tools/export.py --checkpoint runs/x/best.pt --out model.onnx --verify
    python tools/detect.py --checkpoint model.onnx --source 0 --show

--verify runs the PyTorch back end and the file's own runtime (ONNX Runtime, ncnn, LiteRT) on
--images (default: the photos of the shared data, or generated scenes where it is absent) and exits
non-zero, listing the worst differences, unless every detection scoring clearly above the
threshold matches (boxes <= 0.5 px, scores <= 1e-4, same label); an int8 file's detections are
paired at IoU >= 0.5 instead (see ssdlite.deploy.verify.INT8_TOLERANCE).
--with-nms puts decoding and ONNX NonMaxSuppression in the graph (outputs boxes, scores,
labels, batch_index) for runtimes without ssdlite's postprocess; its thresholds are fixed at
export (--set postprocess.score_thresh=0.3 to change them).

--int8 (onnx: one static-QDQ file that ONNX Runtime and OpenVINO both run in int8; tflite:
full-integer, int8 input / outputs too unless --int8-io float) is calibrated on --calibration (a
folder of images, or `val`: the config's val split; default val, --calibration-count images),
and written only if its COCO AP is within --max-ap-drop (default 0.01 = 1 AP point) of the fp32
export's, measured on the val split's annotations (or --val): for onnx the backbone family's
recipes are tried in turn (more layers kept in float, another calibration) and the export is
refused, listing what each lost, when none fits. A plain image folder has no annotations: add
--val ANNOTATIONS.json, or --max-ap-drop none to write it unmeasured.

    python tools/export.py --checkpoint best.pt --out m_int8.onnx --int8
    python tools/export.py --checkpoint best.pt --out m_int8.onnx --int8 --calibration photos/ --val ann.json --val-images imgs/
    python tools/export.py --checkpoint best.pt --out m_int8.tflite --int8 --max-ap-drop 0.06 --verify
"""

from __future__ import annotations

import argparse
import sys

from ssdlite.deploy.formats import format_names
from ssdlite.deploy.quantize import DEFAULT_CALIBRATION_COUNT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="an ssdlite .pt checkpoint or published weights by name (coco)")
    parser.add_argument("--out", "--output", dest="out", required=True, help="the file to write: model.onnx, model.param (ncnn: + model.bin, model.json), model.tflite or model.mlpackage")
    parser.add_argument("--format", choices=format_names(), default=None,
                        help="export format (default: the one whose suffix --out has, else onnx)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 13..20 (default: 17)")
    parser.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch dimension (default: batch 1)")
    parser.add_argument("--with-nms", action="store_true", help="decode + NonMaxSuppression in the graph")
    parser.add_argument("--fp16-weights", action="store_true", help="ncnn: store the weights as fp16 (half the .bin; not bit-exact)")
    parser.add_argument("--int8-io", choices=["int8", "float"], default="int8",
                        help="tflite --int8: input / output type of the file (default: int8, as NPUs and the Edge TPU want)")
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
    parser.add_argument("--json-out", default=None, help="write the verification (or --int8) report as JSON here")
    q = parser.add_argument_group("int8 (--format onnx, tflite)")
    q.add_argument("--int8", action="store_true", help="quantize to int8 (onnx: static QDQ; tflite: full-integer) under the --max-ap-drop bound")
    q.add_argument("--calibration", default="val", metavar="DIR|val",
                   help="calibration images: a folder, or val (the config's val split; default)")
    q.add_argument("--calibration-count", type=int, default=DEFAULT_CALIBRATION_COUNT, metavar="N",
                   help=f"calibration images, evenly spaced over the folder / split (default: {DEFAULT_CALIBRATION_COUNT})")
    q.add_argument("--val", default=None, metavar="ANNOTATIONS.json|val",
                   help="measure the AP bound on these COCO annotations (default: the calibration split's)")
    q.add_argument("--val-images", default=None, metavar="DIR", help="the images of --val (default: the --calibration folder)")
    q.add_argument("--max-ap-drop", type=_ap_drop, default=0.01, metavar="AP|none",
                   help="refuse an int8 model losing more COCO AP than this (absolute; default 0.01 = 1 AP point); "
                        "none: write it without the bound")
    return parser


def _ap_drop(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an AP drop such as 0.01, or none; got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"the AP drop is absolute COCO AP in [0, 1] (0.01 = 1 AP point); got {value}")
    return value


def _written_size(out) -> int:
    """Bytes of an export: a file, a folder (.mlpackage) or an ncnn .param with its .bin and .json."""
    if out.is_dir():
        return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if out.suffix == ".param":
        from ssdlite.deploy.ncnn_runtime import ncnn_files

        return sum(p.stat().st_size for p in ncnn_files(out) if p.is_file())
    return out.stat().st_size


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
    export = exporter(fmt, int8=args.int8)  # a missing converter (or --int8 on another format) is one line
    options = {  # each format's own options
        "onnx": dict(opset=args.opset, dynamic_batch=args.dynamic_batch, with_nms=args.with_nms),
        "ncnn": dict(fp16_weights=args.fp16_weights),
        "coreml": dict(),
        "tflite": dict(int8_io=args.int8_io) if args.int8 else dict(),
    }[fmt.name]
    if args.int8:  # calibrated, measured against fp32, refused above --max-ap-drop (ssdlite.eval.int8)
        options.update(calibration=args.calibration, count=args.calibration_count, val=args.val, val_images=args.val_images,
                       max_ap_drop=args.max_ap_drop, threads=args.threads, echo=print,
                       json_out=None if args.verify else args.json_out)
    elif args.int8_io != "int8":
        raise ValueError("--int8-io is an option of --int8 --format tflite: add --int8 (or drop --int8-io)")
    if fmt.name != "onnx" and (args.with_nms or args.dynamic_batch):
        raise ValueError(f"--with-nms and --dynamic-batch are ONNX options; --format {fmt.name} writes raw outputs for one image")
    if args.verify and fmt.backend is None:
        raise ValueError(f"--format {fmt.name} cannot be run on this machine, so it cannot be verified; drop --verify")
    if args.verify:  # the runtime that verifies is checked before anything is built, too
        from ssdlite.deploy.backends import BACKENDS, require

        row = BACKENDS[fmt.backend]
        if row.package:
            require(row.package, row.extra, f"export --format {fmt.name} --verify")
    checkpoint = resolve_checkpoint(args.checkpoint, args.weights_dir)
    with tempfile.TemporaryDirectory(prefix="ssdlite_export_") as tmp:
        source = checkpoint
        if args.overrides:  # the overridden config must be what both back ends run with
            model, cfg = load_model(checkpoint, args.overrides)
            source = Path(tmp) / "overridden.pt"
            save_checkpoint(source, model, cfg)
        out = Path(export(source, args.out, **options))
        detail = f", opset {args.opset}, {'NMS in graph' if args.with_nms else 'raw outputs'}" if fmt.name == "onnx" else ""
        detail += (", int8 QDQ" if fmt.name == "onnx" else f", int8, {args.int8_io} input / outputs") if args.int8 else (
            ", fp32" if fmt.name == "tflite" else "")
        print(f"export: wrote {out} ({fmt.name}, {_written_size(out) / 1e6:.1f} MB{detail})")
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
