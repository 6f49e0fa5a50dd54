"""Report every problem of a COCO, VOC or YOLO dataset, each once, with its file and line / object.

    python tools/check_data.py --images data/train --annotations data/annotations/instances_train.json
    python tools/check_data.py --images D --annotations J --decode --json-out report.json
    python tools/check_data.py VOCdevkit/VOC2012 --split trainval      # VOC (split: ImageSets/Main/<split>.txt)
    python tools/check_data.py data/mine/data.yaml                      # YOLO: every split of the yaml

Prints one line per problem (kind: annotation / image id, file: what training does about it)
and a summary with the counts, the same counts the training log prints. Without --decode the
image files are only opened and their header checked (fast); --decode decodes each one as
training would (finds sizes that disagree with the json); truncated JPEG / PNG files are found
either way, by their end marker.

Exit code: 0 when the dataset is clean, 1 when problems were found, 2 when the json cannot be
read at all (invalid JSON: the message gives line and column).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="check-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="a VOC folder, a YOLO data.yaml or a COCO json (format detected)")
    parser.add_argument("--format", choices=("coco", "voc", "yolo"), help="the format of SOURCE (default: detected)")
    parser.add_argument("--split", help="VOC: ImageSets/Main/<split>.txt or a list file (default: every xml); "
                        "YOLO: train, val or test (default: every split of the yaml)")
    parser.add_argument("--images", help="COCO: the image folder the json's file_name entries are relative to")
    parser.add_argument("--annotations", help="COCO instances json (same as SOURCE)")
    parser.add_argument("--decode", action="store_true", help="decode every image file (slower; finds truncated files and size mismatches)")
    parser.add_argument("--json-out", default=None, help="also write the report (problems and counts) as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(args: argparse.Namespace) -> int:
    from ssdlite.data.check import check_dataset

    bar = None
    progress = None
    if not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc="images", unit="img", file=sys.stderr, dynamic_ncols=True)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        reports = [check_dataset(args.images, location, decode=args.decode, progress=progress, fmt=fmt, split=split)
                   for fmt, location, split in _targets(args)]
    finally:
        if bar is not None:
            bar.close()
    print("\n".join(r.format_report() for r in reports))
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        data = reports[0].to_json() if len(reports) == 1 else {"splits": [r.to_json() for r in reports]}
        out.write_text(json.dumps(data, indent=2))
        print(f"wrote {out}")
    return 0 if all(r.ok for r in reports) else 1


def _targets(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """``(format, location, split)`` of each report: one, or each split of a YOLO yaml."""
    from ssdlite.data.formats import detect_format

    source = args.source or args.annotations
    if not source:
        raise ValueError("give a dataset: SOURCE (VOC folder, YOLO data.yaml, COCO json) or --annotations J --images D")
    if args.source and args.annotations:
        raise ValueError("give SOURCE or --annotations, not both")
    fmt, location = (args.format, Path(source)) if args.format else detect_format(source)
    if fmt == "coco" and not args.images:
        raise ValueError("a COCO dataset needs --images (the folder its file_name entries are relative to)")
    if fmt == "yolo" and not args.split:
        from ssdlite.data.yolo import read_data_yaml

        data = read_data_yaml(location)
        return [(fmt, str(location), s) for s in ("train", "val", "test") if s in data]
    return [(fmt, str(location), args.split)]


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
