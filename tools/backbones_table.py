"""Print the table of available backbones: taps (channels, strides), feature-extractor params and MACs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backbones", description=__doc__)
    parser.add_argument("--size", type=int, default=320, help="square input size for the MACs column (default: 320)")
    parser.add_argument("--json-out", help="write the rows to this JSON file")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def main(args: argparse.Namespace) -> int:
    import torch

    import backbones
    from ssdlite.model.complexity import backbone_rows, format_table

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = backbone_rows((args.size, args.size))
    default = " and ".join(map(str, backbones.DEFAULT_OUT_STRIDES))
    print(f"SSDLite feature extractors at width 1.0 (taps at strides {default}; MACs at {args.size}x{args.size})\n")
    print(format_table(
        ["backbone", "reduced_tail", "tap channels", "strides", "stride-8 tap", "params (M)", f"MACs@{args.size} (M)"],
        [[r["name"], "yes" if r["reduced_tail"] else "no", ", ".join(map(str, r["out_channels"])),
          ", ".join(map(str, r["strides"])), r["stride8_channels"] or "-", f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e6:.1f}"]
         for r in rows],
    ))
    print("\nstride-8 tap: the optional small-object map (model.anchors.stride8_scales), not in the papers")
    print("\nalso: timm:<model> (pip install ssdlite[timm]); your own with @backbones.register(name)")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
