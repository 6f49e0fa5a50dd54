"""Params and multiply-adds beside the papers' tables.

``--classification``: every row of the MobileNet V1/V2/V3 ImageNet tables (ours with a
1000-class classifier, params M and MACs M) beside the published figure and the ratio; rows
outside 3% (params) / 5% (MACs) are flagged OUT. Config paths (``configs/ssdlite320_*.yaml``):
the detector's params (M) and MAdds (B) at the config's input size beside Table 6 of the
MobileNetV3 paper, with the head-only counts (extra blocks + box / class predictors, the quantity
of the MobileNetV2 paper's Table 5) beside the whole-model ones. ``--papers``: every COCO detection
row of the MobileNetV1 (Table 13), MobileNetV2 (Tables 5, 6) and MobileNetV3 (Table 6) papers beside
our count of the config that builds it (``-`` where its backbone or framework is not in ssdlite).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="complexity", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", help="detector config files (configs/ssdlite320_*.yaml)")
    parser.add_argument("--classification", action="store_true", help="compare with the ImageNet classification tables")
    parser.add_argument("--papers", action="store_true",
                        help="every published detection row (MobileNetV1 Table 13, MobileNetV2 Tables 5-6, MobileNetV3 Table 6) beside ours")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of every config, e.g. --set model.backbone.width_mult=0.5 (repeatable)")
    parser.add_argument("--json-out", help="write the rows to this JSON file")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a row is outside tolerance")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


class _Checked(NamedTuple):
    label: str
    ok: bool


def main(args: argparse.Namespace) -> int:
    import torch

    from ssdlite.model import complexity

    papers = getattr(args, "papers", False)
    if not args.classification and not args.configs and not papers:
        raise ValueError("nothing to do: give --classification, --papers and/or config files (configs/ssdlite320_*.yaml)")
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
        print(f"Detectors (params M, MAdds B) beside the published whole-model row each config builds; head = extras + "
              f"predictors; tolerance {complexity.DETECTION_TOL:.0%}\n")
        print(complexity.format_rows(rows))
        out["detection"] = [r.to_dict() for r in rows]
        all_rows += rows
    if papers:
        from ssdlite._paths import REPO_ROOT
        from ssdlite.model import detection_papers

        if args.classification or args.configs:
            print()
        comparisons = detection_papers.compare_papers(REPO_ROOT / "configs", overrides=args.overrides)
        print(f"COCO detection rows of the MobileNet papers, ours / paper (head = extras + box / class predictors); "
              f"tolerance {complexity.DETECTION_TOL:.0%}\n")
        print(detection_papers.format_papers(comparisons))
        out["papers"] = [c.to_dict() for c in comparisons]
        all_rows += [_Checked(f"{c.row.table} {c.row.label}", c.ok) for c in comparisons]
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
