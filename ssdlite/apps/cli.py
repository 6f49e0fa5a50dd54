"""The ``ssdlite`` console script and the flags every tool shares.

``ssdlite train ...`` == ``python -m ssdlite train ...`` == ``python tools/train.py ...``.
Each tool module under ``tools/`` defines ``build_parser()`` and ``main(args) -> int``;
library errors (``ValueError``, ``OSError``) become one readable line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

# subcommand -> module in tools/ (shipped as ssdlite.tools)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a detector (single process or torchrun DDP)"),
    "eval": ("eval", "COCO box metrics of a model or a results file"),
    "export": ("export", "export a checkpoint to a self-contained ONNX file"),
    "detect": ("detect", "run a detector on a webcam, video, stream, folder or image"),
    "benchmark": ("benchmark", "speed benchmarks against the references (latency, data, eval)"),
    "complexity": ("complexity", "params and multiply-adds beside the papers' tables"),
    "convert-torchvision": ("convert_torchvision", "import a torchvision ssdlite320_mobilenet_v3_large state dict"),
    "make-synthetic": ("make_synthetic", "write the synthetic shapes dataset (COCO format)"),
    "check-data": ("check_data", "report every problem in a COCO, VOC or YOLO dataset"),
    "convert-data": ("convert_data", "convert a dataset between COCO, VOC and YOLO"),
    "robustness": ("robustness", "run the fault-injection suite and print its table"),
    "backbones": ("backbones_table", "print the table of available backbones"),
    "weights": ("weights", "list the published weights by name; download them ahead of time"),
    "demo": ("demo", "the main job: synthetic data, train, evaluate, export, detect on a video"),
}


def add_config_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--config C`` and repeatable ``--set key=value``, the same on every tool."""
    parser.add_argument("--config", required=required, help="YAML config file (configs/*.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.01 (repeatable)",
    )


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``, the same on every tool that runs a model."""
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for inference (default: all cores)")
    parser.add_argument("--weights-dir", default=None, metavar="DIR",
                        help="where named weights are downloaded and cached (default: $TORCH_HOME/hub/checkpoints)")


def config_from_args(args: argparse.Namespace):
    """The validated config named by ``--config`` plus ``--set`` overrides (defaults when no file)."""
    from ssdlite.config import from_dict, load_config

    if getattr(args, "config", None):
        return load_config(args.config, args.overrides)
    return from_dict({}, args.overrides)


def run(main: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, call ``main`` and turn library errors into one line on stderr."""
    from ssdlite.deploy.backends import MissingExtra

    args = parser.parse_args(argv)
    try:
        return int(main(args) or 0)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, MissingExtra) as e:
        if getattr(args, "debug", False):
            raise
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2))


def _load_tool(module: str):
    try:
        return importlib.import_module(f"ssdlite.tools.{module}")
    except ModuleNotFoundError as e:
        if e.name not in (f"ssdlite.tools.{module}", "ssdlite.tools"):
            raise
    # running from a source tree that is not installed: tools/ beside the package
    from ssdlite._paths import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT / "tools"))
    return importlib.import_module(module)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: ssdlite COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ssdlite: unknown command {name!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    tool = _load_tool(COMMANDS[name][0])
    parser = tool.build_parser()
    parser.prog = f"ssdlite {name}"
    return run(tool.main, parser, rest)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
