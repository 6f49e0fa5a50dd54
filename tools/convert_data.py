"""Convert a dataset between COCO, VOC and YOLO (the source format is detected, or --from).

    python tools/convert_data.py VOCdevkit/VOC2012 --to yolo --output data/voc_yolo
    python tools/convert_data.py data/mine/data.yaml --to coco --output data/mine_coco --copy
    python tools/convert_data.py annotations/instances_val2017.json --images val2017 --to voc --output data/val_voc

Every split of the source is converted (VOC: ImageSets/Main/{train,val,test}.txt, else every xml;
YOLO: every split of data.yaml; COCO: the json), or only --split. Images are linked (symbolic
links to the source files) or copied (--copy). What the source's reader skips is listed (one line
per problem, as check-data names it) and not written. Written layouts:

    coco  OUTPUT/annotations/instances_<split>.json, OUTPUT/<split>/<images>
    voc   OUTPUT/Annotations/<id>.xml, OUTPUT/JPEGImages/, OUTPUT/ImageSets/Main/<split>.txt
    yolo  OUTPUT/data.yaml, OUTPUT/images/<split>/, OUTPUT/labels/<split>/<name>.txt

Precision: YOLO keeps 7 decimals of the image size; VOC integer pixels, 1-based inclusive
(xmin = x1 + 1, xmax = x2 after rounding). YOLO has no ignore regions (COCO iscrowd, VOC difficult):
they are left out of YOLO labels. Exit code 0, or 2 with one line naming what could not be read.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convert-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a VOC folder, a YOLO data.yaml (or its folder) or a COCO instances json")
    parser.add_argument("--to", required=True, choices=("coco", "voc", "yolo"), help="the format to write")
    parser.add_argument("--output", required=True, help="a new (or empty) folder for the converted dataset")
    parser.add_argument("--from", dest="source_format", choices=("coco", "voc", "yolo"), help="the source format (default: detected)")
    parser.add_argument("--images", help="COCO source: its image folder (default: <json's folder>/../<split>)")
    parser.add_argument("--split", help="convert only this split (VOC: ImageSets/Main/<split>.txt; YOLO: train/val/test)")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of linking them")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return parser


def main(args: argparse.Namespace) -> int:
    from ssdlite.data.convert import convert_dataset

    result = convert_dataset(args.source, args.to, args.output, source_format=args.source_format, images=args.images,
                             split=args.split, copy=args.copy)
    for p in result.problems:
        print(p)
    for split, what in result.splits.items():
        print(f"{result.source_format} -> {result.target_format} {split}: {what}")
    c = result.counts
    print(f"wrote {c['images']} images and {c['boxes']} boxes ({c['ignore_regions']} ignore regions"
          f"{', left out of YOLO labels' if args.to == 'yolo' else ''}) to {result.output}; "
          f"{len(result.problems)} source problems skipped")
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
