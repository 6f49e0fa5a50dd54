"""Report every problem of a COCO-format dataset, each once, with its file or annotation id.

    python tools/check_data.py --images data/train --annotations data/annotations/instances_train.json
    python tools/check_data.py --images D --annotations J --decode --json-out report.json

Prints one line per problem (kind: annotation / image id, file: what training does about it)
and a summary with the counts, the same counts the training log prints. Without --decode the
image files are only opened and their header checked (fast); --decode decodes each one as
training would (finds truncated files and sizes that disagree with the json).

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
    parser.add_argument("--images", required=True, help="the image folder the json's file_name entries are relative to")
    parser.add_argument("--annotations", required=True, help="COCO instances json")
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
        report = check_dataset(args.images, args.annotations, decode=args.decode, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(report.format_report())
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_json(), indent=2))
        print(f"wrote {out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
