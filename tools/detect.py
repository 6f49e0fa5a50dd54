"""Run a detector on a webcam, a video file, a stream, a folder of images or one image.

Examples:
    python tools/detect.py --checkpoint model.onnx --source 0 --show
    python tools/detect.py --checkpoint model.pt --source street.mp4 --save out.mp4 --json out.jsonl
    python tools/detect.py --checkpoint model.onnx --source street.mp4 --realtime --classes person,car

Live sources (cameras, streams, and files with --realtime) keep only the newest frame, so
the latency stays bounded when inference is slower than the source. Press q in the window
or Ctrl-C to stop; the video and JSON lines written so far stay valid.
"""

from __future__ import annotations

import argparse
import sys

from ssdlite.deploy.backends import backend_names


def build_parser() -> argparse.ArgumentParser:
    from ssdlite.apps.cli import add_runtime_args

    parser = argparse.ArgumentParser(prog="detect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="0 | /dev/video1 | file.mp4 | rtsp://... | DIR | image.jpg")
    parser.add_argument("--checkpoint", required=True, help="an ssdlite .pt checkpoint, an exported .onnx, or published weights by name (coco; see `ssdlite weights`)")
    parser.add_argument("--backend", choices=backend_names(auto=True), default=None,
                        help="default: the one that runs the file (onnxruntime for .onnx, torch for .pt); "
                             "auto: the fastest installed one for the file, measured once and cached")
    parser.add_argument("--score", type=float, default=0.3, help="score threshold (default: 0.3)")
    parser.add_argument("--nms", type=float, default=None, help="NMS IoU threshold (default: the model's)")
    parser.add_argument("--classes", default=None, help="keep only these classes, e.g. person,car (names or 0-based indices)")
    parser.add_argument("--save", default=None, help="annotated output: a video (out.mp4, out.avi) or a folder")
    parser.add_argument("--json", default=None, help="JSON lines, one per processed frame: {frame, time, detections}")
    parser.add_argument("--show", action="store_true", help="show a window (without a display: says so and saves instead)")
    parser.add_argument("--realtime", action="store_true", help="pace a video file at its frame rate and drop frames like a camera")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many processed frames")
    parser.add_argument("--stall-timeout", type=float, default=5.0, help="seconds a live source may deliver nothing before the run ends (default: 5)")
    parser.add_argument("--no-overlay", action="store_true", help="do not draw the FPS / latency overlay")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a stored config value, e.g. postprocess.detections_per_img=50"
    )
    add_runtime_args(parser)
    return parser


def main(args: argparse.Namespace) -> int:
    from ssdlite.deploy.detector import Detector
    from ssdlite.apps.sinks import default_save_path
    from ssdlite.apps.sources import open_source
    from ssdlite.apps.video import parse_classes, run_detection

    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    source = open_source(args.source, realtime=args.realtime, stall_timeout=args.stall_timeout)
    try:
        detector = Detector.from_checkpoint(
            args.checkpoint,
            backend=args.backend,
            device=args.device,
            threads=args.threads,
            overrides=args.overrides,
            weights_dir=args.weights_dir,
            score_thresh=args.score,
            nms_thresh=args.nms,
        )
        classes = parse_classes(args.classes, detector.class_names)
    except BaseException:
        source.close()
        raise
    why = f"; auto: {detector.backend_choice.reason}" if detector.backend_choice else ""
    print(f"detect: {args.checkpoint} ({detector.backend} {detector.precision}{why}) on {args.source}", file=sys.stderr)
    stats = run_detection(
        detector,
        source,
        class_names=detector.class_names,
        classes=classes,
        save=args.save,
        json_path=args.json,
        show=args.show,
        max_frames=args.max_frames,
        default_save=default_save_path(args.source),
        overlay=not args.no_overlay,
    )
    print(f"detect: {stats.summary()}")
    print(f"FPS: {stats.fps:.1f}")
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
