"""Turn a torchvision ssdlite320_mobilenet_v3_large state dict into an ssdlite checkpoint.

    python tools/convert_torchvision.py ssdlite320_mobilenet_v3_large_coco-a79551df.pth runs/tv.pt

The result (91-way COCO ids, torchvision anchor layout, reduced tail) gives torchvision's
detections through ssdlite.Detector, so its published 21.3 COCO mAP carries over.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convert_torchvision", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="torchvision state-dict file (.pth)")
    parser.add_argument("out", help="ssdlite checkpoint to write (.pt)")
    return parser


def main(args: argparse.Namespace) -> int:
    from ssdlite.model.convert import convert_torchvision_file

    cfg = convert_torchvision_file(args.src, args.out)
    print(f"wrote {args.out}: {cfg.model.backbone.name} (reduced tail), {cfg.model.num_classes} classes, torchvision anchors")
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
