"""Params and multiply-adds beside the papers' tables.

``--classification``: every row of the MobileNet V1/V2/V3 ImageNet tables (ours with a
1000-class classifier, params M and MACs M) beside the published figure and the ratio; rows
outside 3% (params) / 5% (MACs) are flagged OUT. Config paths (``configs/ssdlite320_*.yaml``):
the detector's params (M) and MAdds (B) at the config's input size beside Table 6 of the
MobileNetV3 paper.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="complexity", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", help="detector config files (configs/ssdlite320_*.yaml)")
    parser.add_argument("--classification", action="store_true", help="compare with the ImageNet classification tables")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of every config, e.g. --set model.backbone.width_mult=0.5 (repeatable)")
    parser.add_argument("--json-out", help="write the rows to this JSON file")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a row is outside tolerance")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def main(args: argparse.Namespace) -> int:
    import torch

    from ssdlite.model import complexity

    if not args.classification and not args.configs:
        raise ValueError("nothing to do: give --classification and/or config files (configs/ssdlite320_*.yaml)")
    if args.threads:
        torch.set_num_threads(args.threads)
    out: dict[str, list[dict]] = {}
    all_rows = []
    if args.classification:
        rows = complexity.classification_rows()
        print(f"ImageNet classification (1000 classes); tolerance {complexity.PARAMS_TOL:.0%} params, "
              f"{complexity.MACS_TOL:.0%} MACs; ok* = within tolerance of the printed figure's precision\n")
        print(complexity.format_rows(rows))
        out["classification"] = [r.to_dict() for r in rows]
        all_rows += rows
    if args.configs:
        rows = [complexity.detection_row(path, args.overrides) for path in args.configs]
        if args.classification:
            print()
        print(f"SSDLite detectors (params M, MAdds B) beside {complexity.SSDLITE320_TABLE6_SOURCE}; "
              f"tolerance {complexity.DETECTION_TOL:.0%}\n")
        print(complexity.format_rows(rows))
        out["detection"] = [r.to_dict() for r in rows]
        all_rows += rows
    bad = [r.label for r in all_rows if not r.ok]
    print(f"\n{len(all_rows) - len(bad)}/{len(all_rows)} rows within tolerance" + (f"; outside: {', '.join(bad)}" if bad else ""))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json_out}")
    return 1 if (args.strict and bad) else 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
