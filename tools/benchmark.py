"""Speed benchmarks against the references: ``latency``, ``data`` and ``eval``; and ``paper``, the
MobileNet papers' detection rows with our counts and measured latency beside them.

Each prints a table of medians (and the ratio to the reference measured in the same run).
"""

from __future__ import annotations

import argparse
import importlib
import sys


def build_parser() -> argparse.ArgumentParser:
    from ssdlite.apps.bench import BENCHMARKS

    parser = argparse.ArgumentParser(prog="benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="which", required=True, metavar="{" + ",".join(BENCHMARKS) + "}")
    for name, (module, help_) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(args: argparse.Namespace) -> int:
    from ssdlite.apps.bench import BENCHMARKS

    return importlib.import_module(BENCHMARKS[args.which][0]).run(args)


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
