"""The MobileNet papers' detection comparison, regenerated: every row we can build, counted and timed.

``python tools/benchmark.py paper`` takes every published COCO detection row that one of our configs
builds (:data:`ssdlite.model.detection_papers.DETECTION_ROWS`: MobileNetV1 Table 13, MobileNetV2
Tables 5 and 6, MobileNetV3 Table 6), and prints and writes one markdown table: our params and
MAdds beside the paper's (whole detector and head = extras + predictors), the paper's mAP and phone
latency, and our end-to-end CPU latency on each ``--backends`` back end (one column each), timed as
``benchmark latency`` times (random weights made lively, every contender in its own process,
alternating rounds, medians over rounds of per-frame medians; the CPU model and flags printed beside
the table). ``--plot`` draws the paper's mAP against our measured latency. Rows whose backbone or
framework is not in ssdlite are listed by ``ssdlite complexity --papers``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from ssdlite.apps.bench.latency import add_timing_arguments, check_timing_args, config_specs, prepare_frames, time_rounds
from ssdlite.apps.bench.latency_report import summarize
from ssdlite.apps.bench.machine import cpu_description

BACKEND_NAMES = {"onnxruntime": "ONNX Runtime", "torch": "PyTorch", "openvino": "OpenVINO"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", nargs="+", default=["onnxruntime"], choices=list(BACKEND_NAMES),
                        help="back ends to time, one column each (default: onnxruntime)")
    add_timing_arguments(parser, frames=30)
    parser.add_argument("--markdown-out", default=None, help="write the markdown table (and its settings line) here")
    parser.add_argument("--plot", default=None, help="write a PNG of the paper's mAP against our measured latency here")


def buildable_rows(config_dir: Path) -> list[Any]:
    """The published rows whose config exists, in the papers' order."""
    from ssdlite.model.detection_papers import DETECTION_ROWS

    return [r for r in DETECTION_ROWS if r.config and (config_dir / f"{r.config}.yaml").is_file()]


def _pair(ours: float, printed: str | None, digits: int) -> str:
    return f"{ours:.{digits}f} / {printed}" if printed else f"{ours:.{digits}f}"


def markdown_table(comparisons: Sequence[Any], latency: dict[str, dict[str, float]], backends: Sequence[str]) -> str:
    """One line per published row: counts (ours / paper), paper mAP and phone ms, our ms per back end.

    ``latency[config][backend]`` = end-to-end ms (median); figures after a ``/`` are the paper's.
    """
    head = ["paper, table", "row", "config", "params M (ours / paper)", "MAdds B", "head params M", "head MAdds B", "paper mAP",
            "paper phone ms"] + [f"{BACKEND_NAMES[b]} ms (FPS)" for b in backends]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for c in comparisons:
        r, m = c.row, c.measured
        cells = [
            f"{r.paper.split(' (')[0]} {r.table}", r.label, f"`{m.config}`",
            _pair(m.params / 1e6, r.params_m, 2), _pair(m.macs / 1e9, r.madds_b, 3),
            _pair(m.head_params / 1e6, r.head_params_m, 2), _pair(m.head_macs / 1e9, r.head_madds_b, 3),
            r.map or "-", r.latency_ms or "-",
        ]
        for b in backends:
            ms = latency.get(m.config, {}).get(b)
            cells.append("-" if ms is None else f"{ms:.1f} ({1000.0 / ms:.0f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_map_vs_latency(comparisons: Sequence[Any], latency: dict[str, dict[str, float]], backends: Sequence[str],
                        path: str | Path, title: str) -> None:
    """The paper's COCO mAP (y) against our measured end-to-end latency (x), one marker per back end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    markers = dict(zip(BACKEND_NAMES, ("o", "s", "^")))
    colors = {"ssd": "#DD8452", "ssdlite": "#4C72B0"}
    points = []
    for b in backends:
        for c in comparisons:
            ms = latency.get(c.measured.config, {}).get(b)
            if c.row.map is not None and ms is not None and (c.measured.config, c.row.map, b) not in {p[:3] for p in points}:
                points.append((c.measured.config, c.row.map, b, ms))
    for n, (config, map_, b, ms) in enumerate(sorted(points, key=lambda p: p[3])):
        head = config.split("_")[0].rstrip("0123456789")
        ax.scatter(ms, float(map_), marker=markers.get(b, "^"), color=colors.get(head, "#55A868"),
                   label=f"{head.upper() if head == 'ssd' else 'SSDLite'}, {BACKEND_NAMES[b]}")
        short = config.replace("_mobilenet_", " ").replace("_reduced", " reduced")
        ax.annotate(short, (ms, float(map_)), fontsize=7, xytext=(5, -9 if n % 2 else 4), textcoords="offset points")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    ax.set_xlabel("our end-to-end latency, ms (batch 1, this CPU)")
    ax.set_ylabel("COCO mAP published in the paper")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _measure_latency(args: argparse.Namespace, configs: dict[str, Path]) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """End-to-end medians per config and back end, timed as ``benchmark latency`` times."""
    with tempfile.TemporaryDirectory(prefix="ssdlite_paper_") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        frames, common = prepare_frames(args, work, tag="paper")
        specs = config_specs(configs, args.backends, frames, common, work, args.score)
        rows = summarize(specs, time_rounds(specs, args.rounds, tag="paper"))
    latency: dict[str, dict[str, float]] = {}
    for row in rows:
        latency.setdefault(row["name"], {})[row["backend"]] = row["end_to_end_ms"]
    return latency, rows


def run(args: argparse.Namespace) -> int:
    from ssdlite._paths import REPO_ROOT
    from ssdlite.model.detection_papers import compare_papers

    check_timing_args(args)
    start = time.perf_counter()
    folder = REPO_ROOT / "configs"
    published = buildable_rows(folder)
    if not published:
        raise ValueError(f"no config of a published row in {folder}")
    comparisons = compare_papers(folder, published)
    configs = {c.measured.config: folder / f"{c.measured.config}.yaml" for c in comparisons}
    latency, rows = _measure_latency(args, configs)
    seconds = time.perf_counter() - start
    settings = (f"batch 1, {args.threads} threads, score {args.score}, {args.frames} frames x {args.rounds} rounds "
                f"(+{args.warmup} warm-up frames), medians; run time {seconds / 60:.1f} min")
    table = markdown_table(comparisons, latency, args.backends)
    cpu = cpu_description()
    print(f"CPU: {cpu}\n{settings}\n\n{table}")
    if args.markdown_out:
        Path(args.markdown_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown_out).write_text(f"CPU: {cpu}; {settings}\n\n{table}\n")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        out = {"cpu": cpu, "settings": settings, "cpu_count": os.cpu_count(),
               "rows": [c.to_dict() for c in comparisons], "latency": rows}
        Path(args.json_out).write_text(json.dumps(out, indent=2))
    if args.plot:
        plot_map_vs_latency(comparisons, latency, args.backends, args.plot, f"COCO mAP of the papers vs our CPU latency\n{settings}")
    print(f"\n{len(comparisons)} published rows, {len(configs)} configs, timed on {', '.join(args.backends)}",
          file=sys.stderr)
    return 0
