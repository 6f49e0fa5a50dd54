"""Train an SSDLite detector on COCO-format data.

    python tools/train.py --config configs/shapes_demo.yaml --output runs/demo
    torchrun --nproc_per_node=8 tools/train.py --config configs/ssdlite320_mobilenet_v3_large.yaml --output runs/coco --device cuda

Writes last.pt (every epoch), best.pt (by val mAP), metrics.jsonl, TensorBoard logs and plots to --output.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ssdlite.apps.cli import add_config_args, config_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, required=True)
    parser.add_argument("--output", required=True, help="run directory for checkpoints, logs and plots")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun each process takes its LOCAL_RANK GPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.add_argument("--weights-dir", default=None, metavar="DIR",
                        help="where named weights (model.backbone.weights: imagenet) are downloaded and cached")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    return parser


def main(args: argparse.Namespace) -> int:
    import torch

    from ssdlite.train.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    trainer = Trainer(cfg, args.output, resume=args.resume, device=args.device, progress=not args.no_progress,
                      weights_dir=args.weights_dir)
    final = trainer.fit()
    from ssdlite import distributed as dist

    if dist.is_main() and final:
        shown = {k: final[k] for k in ("epoch", "AP", "AP50") if k in final}
        print("done: " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()), flush=True)
    dist.cleanup()
    return 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
