"""Print the table of available backbones (name, taps, params)."""
from __future__ import annotations
import argparse, sys

def build_parser():
    return argparse.ArgumentParser(prog="backbones", description=__doc__)

def main(args):
    print("backbones placeholder")
    return 0

if __name__ == "__main__":
    from ssdlite.cli import run
    sys.exit(run(main, build_parser()))
