"""The embedded demo (the main job behind `make demo`), on a CPU in about 15 minutes.

    python tools/demo.py                       # everything into runs/demo
    python tools/demo.py --time-budget 60      # a quick look (low accuracy)

Generates the synthetic shapes dataset, trains configs/shapes_demo.yaml for its time budget,
evaluates on the val split (COCO metrics), writes annotated val images, metrics and plots to
OUTPUT, exports the model to ONNX and runs `ssdlite detect` on a generated video of moving
shapes (OUTPUT/detections.mp4), printing the FPS it reached.
"""

from __future__ import annotations

import argparse
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads slow CPU
# training by several times. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def build_parser() -> argparse.ArgumentParser:
    from ssdlite.apps.cli import add_config_args

    parser = argparse.ArgumentParser(prog="demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--output", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--train-images", type=int, default=4000, help="generated training images (default: 4000)")
    parser.add_argument("--val-images", type=int, default=200, help="generated validation images (default: 200)")
    parser.add_argument("--time-budget", type=float, default=None, help="training seconds (default: the config's train.time_budget_s)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--processes", type=int, default=None,
                        help="training processes (DDP over gloo; default: 2 with 2 or more threads, else 1)")
    parser.add_argument("--video-frames", type=int, default=150, help="frames of the generated video (default: 150; 0 skips it)")
    parser.add_argument("--no-export", action="store_true", help="skip the ONNX export and the video detection")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(args: argparse.Namespace) -> int:
    from ssdlite.apps.demo import run_demo

    run_demo(
        args.output,
        config=args.config,
        overrides=args.overrides,
        num_train=args.train_images,
        num_val=args.val_images,
        time_budget_s=args.time_budget,
        seed=args.seed,
        threads=args.threads,
        processes=args.processes,
        video_frames=args.video_frames,
        export=not args.no_export,
        progress=not args.no_progress,
    )
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
