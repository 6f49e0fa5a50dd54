"""Write the synthetic shapes dataset (COCO format): the embedded demo data.

    python tools/make_synthetic.py --output data/shapes --train 2000 --val 200 --size 320 --seed 0

Writes OUTPUT/{train,val}/*.jpg and OUTPUT/annotations/instances_{train,val}.json; the same
seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    from ssdlite.data.synthetic import DEFAULT_CLASSES, SHAPES

    p = argparse.ArgumentParser(prog="make_synthetic", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="dataset folder to write")
    p.add_argument("--train", type=int, default=2000, help="training images (default: 2000)")
    p.add_argument("--val", type=int, default=200, help="validation images (default: 200)")
    p.add_argument("--size", type=int, default=320, help="image side in px (default: 320)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES), choices=SHAPES, metavar="SHAPE",
                   help=f"shape classes, from {', '.join(SHAPES)} (default: {' '.join(DEFAULT_CLASSES)})")
    p.add_argument("--workers", type=int, default=0, help="render in this many processes (default: 0, in-process)")
    return p


def main(args: argparse.Namespace) -> int:
    from ssdlite.data.synthetic import make_shapes_dataset

    t0 = time.perf_counter()
    paths = make_shapes_dataset(args.output, args.train, args.val, size=args.size, seed=args.seed,
                                classes=args.classes, workers=args.workers)
    dt = time.perf_counter() - t0
    print(f"wrote {args.train} train + {args.val} val images of {len(args.classes)} classes in {dt:.1f} s:")
    for key in ("train_images", "train_annotations", "val_images", "val_annotations"):
        print(f"  {key:<18} {paths[key]}")
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
