"""Published weights by name: list them, or download them ahead of time (for an offline machine).

    ssdlite weights                      # name, kind, what it fits, size, accuracy, cached or not
    ssdlite weights download coco        # fetch, verify and cache (then detect --checkpoint coco needs no network)
    ssdlite weights download --all --weights-dir /data/weights

Files go to the torch.hub cache ($TORCH_HOME/hub/checkpoints, ~/.cache/torch/... by default) or
--weights-dir; each is verified against its published SHA-256 before it is kept and before each use.
A detector is converted to an ssdlite checkpoint beside its download.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", choices=("list", "download"), default="list")
    parser.add_argument("names", nargs="*", help="registry names or aliases to download (coco, mobilenet_v2_imagenet_v1, ...)")
    parser.add_argument("--all", action="store_true", help="download every entry")
    parser.add_argument("--weights-dir", default=None, metavar="DIR",
                        help="where named weights are downloaded and cached (default: $TORCH_HOME/hub/checkpoints)")
    parser.add_argument("--json-out", default=None, help="write the table as JSON here")
    return parser


def _rows(weights_dir: str | None) -> list[dict]:
    from ssdlite.weights.download import cache_dir
    from ssdlite.weights.registry import ALIASES, WEIGHTS

    aliases = {v: k for k, v in ALIASES.items()}
    rows = []
    for w in WEIGHTS:
        fits = f"{w.fits[0]} x{w.fits[1]}" if w.kind == "backbone" else "config of torchvision's ssdlite320"
        rows.append({"name": w.name + (f" ({aliases[w.name]})" if w.name in aliases else ""), "kind": w.kind, "fits": fits,
                     "size_mb": w.size_mb, "accuracy": w.accuracy, "cached": (cache_dir(weights_dir) / w.filename).is_file(),
                     "source": w.source, "license": w.license, "url": w.url, "sha256": w.sha256})
    return rows


def main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ssdlite.weights.download import cache_dir
    from ssdlite.weights.registry import WEIGHTS, lookup

    if args.action == "list":
        if args.names or args.all:
            raise ValueError("`ssdlite weights list` takes no names; to fetch: ssdlite weights download NAME")
        rows = _rows(args.weights_dir)
        print(f"cache: {cache_dir(args.weights_dir)}")
        print(f"{'name':<44} {'kind':<9} {'fits':<36} {'MB':>6}  {'cached':<6}  accuracy")
        for r in rows:
            print(f"{r['name']:<44} {r['kind']:<9} {r['fits']:<36} {r['size_mb']:>6.1f}  {'yes' if r['cached'] else 'no':<6}  {r['accuracy']}")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(rows, indent=2))
        return 0
    entries = list(WEIGHTS) if args.all else [lookup(n) for n in args.names]
    if not entries:
        raise ValueError("name the weights to download (see `ssdlite weights`), or give --all")
    unknown = [n for n, e in zip(args.names, entries) if e is None]
    if unknown:
        raise ValueError(f"unknown weights {unknown[0]!r}; choose one of {[w.name for w in WEIGHTS]} or the alias coco")
    for entry in entries:
        if entry.kind == "detector":
            from ssdlite.model.pretrained import resolve_checkpoint

            path = resolve_checkpoint(entry.name, args.weights_dir)
        else:
            from ssdlite.weights.download import fetch

            path = fetch(entry, args.weights_dir)
        print(f"weights: {entry.name}: {path} (SHA-256 verified)")
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
