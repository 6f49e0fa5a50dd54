"""Per-stage and end-to-end inference latency at batch 1, ours vs torchvision, in one run.

``python tools/benchmark.py latency`` decodes ``--frames`` frames of a real video
(``../shared/data/videos``) once, then times, frame by frame at batch 1 with the threads
pinned (``--threads``, default 2):

* every paper config (``configs/ssdlite320_*.yaml``, random weights made lively by
  :func:`lively_random_model`: their background logit calibrated on the first frames to about
  10 scores per frame above the threshold, as a trained model; dets = detections per frame) x back end
  (``torch``: BN folded, channels_last, inference mode; ``onnxruntime``, ``openvino``: the exported
  file; OpenVINO once per ``--openvino-precisions`` entry: ``fp32`` (default, exact) and ``bf16``
  (its own row, ``openvino-bf16``); the ``prec`` column is the precision each one actually ran;
  ``ncnn``: the ncnn export, fp32; ``litert``: the exported fp32 ``.tflite`` in LiteRT's interpreter, XNNPACK);
* ``V3-Large (tv weights)``: torchvision's ``ssdlite320_mobilenet_v3_large`` random weights
  converted into ours (:mod:`ssdlite.model.convert`), i.e. the very same network and weights as
  the reference, on both back ends;
* the reference, ``torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None,
  weights_backbone=None)`` (reduced tail), eager, with its own transform and postprocess and
  the same thresholds (``--score``, default 0.3; NMS 0.55, top-k 300, 300 per image).

Stages: preprocess (ours: OpenCV resize straight into the normalized batch; torchvision:
uint8 -> float tensor + ``GeneralizedRCNNTransform``), network (ours: the raw outputs;
torchvision: backbone + head), postprocess (ours: ``ssdlite.model.postprocess`` + scaling back;
torchvision: anchors + ``postprocess_detections`` + ``transform.postprocess``) and end to
end (the three in sequence, timed as one). Each contender runs in its own subprocess
(ONNX Runtime's spinning threads and two thread pools in one process would slow PyTorch),
``--rounds`` times in alternating order; the figures are the medians over rounds of each
round's per-frame median. FPS = 1000 / end-to-end median; ratio = FPS / torchvision's FPS.
``p10`` / ``FPS@p10``: the 10th percentile of all end-to-end frame times, an estimate of a
quiet machine when other processes load this one (the medians stay the headline figures).
Prints a table, writes ``--json-out`` and a bar chart (``--plot``).

Threads: every contender gets ``--threads`` (torch intra-op / ONNX Runtime intra-op, OpenCV);
``OMP_WAIT_POLICY=PASSIVE`` for all of them (``--omp-wait-policy``): on a shared machine whose
other processes keep the cores busy, spinning OpenMP threads wait for a descheduled peer at
every layer and PyTorch gets 10-40x slower. ONNX Runtime contenders run with spinning off
(``--spinning`` to turn it on); ONNX Runtime and OpenVINO contenders use one torch thread for the
postprocess (``--ort-torch-threads``). OpenVINO: one stream, the latency hint, ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ssdlite.apps.bench.latency_report import TORCHVISION, check_targets, format_table, label, plot, summarize
from ssdlite.apps.bench.lively import lively_random_model
from ssdlite.apps.bench.machine import cpu_description
from ssdlite.deploy.backends import backend_names

#: Scores above the threshold per calibration frame of the random models (a trained detector on
#: street video: a handful of objects, each with a few overlapping anchors).
CANDIDATES_PER_FRAME = 10.0

TV_WEIGHTS = "mobilenet_v3_large_tvweights"  # our model holding the reference's converted weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", default=None, help="config names or files (default: every configs/ssdlite320_*.yaml)")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=backend_names(),
                        help="back ends timed for every config (default: torch onnxruntime)")
    parser.add_argument("--no-torchvision-weights", action="store_true", help="skip the 'same weights' V3-Large contender")
    add_timing_arguments(parser, frames=50)
    parser.add_argument("--plot", default=None, help="write a PNG bar chart of the end-to-end FPS here")


def add_timing_arguments(parser: argparse.ArgumentParser, frames: int) -> None:
    """The options of how contenders are timed, shared by every benchmark that times them."""
    parser.add_argument("--video", default=None, help="video to take frames from (default: ../shared/data/videos car-detection.mp4)")
    parser.add_argument("--frames", type=int, default=frames, help=f"frames decoded once and timed in every round (default: {frames})")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames before each round (default: 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the order of the contenders (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every contender (default: 2)")
    parser.add_argument("--score", type=float, default=0.3, help="score threshold of every contender (default: 0.3)")
    parser.add_argument("--spinning", action="store_true", help="let ONNX Runtime's idle threads spin (its default; off here)")
    parser.add_argument("--openvino-precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32"],
                        help="precisions the openvino back end is timed in, one row each (default: fp32; bf16 runs "
                             "as bf16 only on CPUs with bf16 units, the prec column says what ran)")
    parser.add_argument("--int8", action="store_true",
                        help="also time an int8 file (static QDQ, the backbone family's default recipe, calibrated on the "
                             "frames) on onnxruntime and openvino: rows onnxruntime-int8 / openvino-int8")
    parser.add_argument("--ort-torch-threads", type=int, default=1, help="torch threads (postprocess only) of the ONNX Runtime, OpenVINO and ncnn contenders (default: 1)")
    parser.add_argument(
        "--omp-wait-policy", choices=["PASSIVE", "ACTIVE", "default"], default="PASSIVE",
        help="OMP_WAIT_POLICY of every contender (default: PASSIVE: idle OpenMP threads sleep instead of spinning; "
        "on a shared, busy machine spinning threads make PyTorch 10-40x slower)",
    )
    parser.add_argument("--json-out", default=None, help="write every number as JSON here")
    parser.add_argument("--workdir", default=None, help="keep checkpoints, ONNX files and frames here (default: a temp folder)")


# ----------------------------------------------------------------------------- set-up (parent)


def _config_paths(names: list[str] | None) -> list[Path]:
    from ssdlite._paths import REPO_ROOT

    folder = REPO_ROOT / "configs"
    if not names:
        paths = sorted(folder.glob("ssdlite320_*.yaml"))
        if not paths:
            raise ValueError(f"no configs/ssdlite320_*.yaml in {folder}")
        return paths
    out = []
    for name in names:
        for n in name.split(","):
            n = n.strip()
            if not n:
                continue
            candidates = [Path(n), folder / n, folder / f"{n}.yaml", folder / f"ssdlite320_{n}.yaml"]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise ValueError(f"--configs: no config {n!r} (tried {', '.join(str(c) for c in candidates)})")
            out.append(found)
    return out


def _default_video() -> Path:
    from ssdlite._paths import shared_data_dir

    root = shared_data_dir()
    if root is None:
        raise ValueError("no --video given and ../shared/data is absent; pass --video FILE")
    preferred = root / "videos" / "intel_sample_videos" / "car-detection.mp4"
    if preferred.is_file():
        return preferred
    videos = sorted(p for p in (root / "videos").rglob("*") if p.suffix.lower() in (".mp4", ".avi"))
    if not videos:
        raise ValueError(f"no videos in {root / 'videos'}; pass --video FILE")
    return videos[0]


def decode_frames(video: Path, count: int) -> np.ndarray:
    """The first ``count`` frames of ``video`` as (count, H, W, 3) uint8 RGB."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {video}")
    frames = []
    try:
        while len(frames) < count:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"could not decode any frame of {video}")
    return np.stack(frames)


def prepare_frames(args: argparse.Namespace, work: Path, tag: str = "latency") -> tuple[np.ndarray, dict[str, Any]]:
    """Decode ``--frames`` frames once into ``work``; return them and the spec keys every contender shares."""
    video = Path(args.video) if args.video else _default_video()
    frames = decode_frames(video, args.frames)
    frames_path = work / "frames.npy"
    np.save(frames_path, frames)
    print(f"{tag}: {len(frames)} frames of {video.name} ({frames.shape[2]}x{frames.shape[1]}), batch 1, "
          f"{args.threads} threads, score {args.score}, {args.rounds} rounds", file=sys.stderr)
    common = {
        "frames": str(frames_path), "threads": args.threads, "score": args.score, "warmup": args.warmup,
        "spinning": args.spinning, "ort_torch_threads": args.ort_torch_threads, "omp_wait_policy": args.omp_wait_policy,
        "openvino_precisions": list(getattr(args, "openvino_precisions", ["fp32"])), "int8": bool(getattr(args, "int8", False)),
    }
    return frames, common


def ours_specs(name: str, model: Any, cfg: Any, backend: str, common: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """The contenders running ``model`` on ``backend`` (one per OpenVINO precision asked for): its
    checkpoint (and ONNX file, written once per model) in ``work``. ``column``: the back end as the
    table names it (``openvino-bf16`` for OpenVINO's bf16 row)."""
    from ssdlite.deploy.backends import BACKENDS
    from ssdlite.deploy.export import export_onnx
    from ssdlite.model.checkpoint import save_checkpoint

    ckpt = work / f"{name}.pt"
    if not ckpt.is_file():
        save_checkpoint(ckpt, model, cfg)
    path = ckpt
    if ".onnx" in BACKENDS[backend].suffixes:
        path = work / f"{name}.onnx"
        if not path.is_file():
            export_onnx(ckpt, None, path)
    elif backend in ("ncnn", "litert"):  # the format that back end runs, fp32
        from ssdlite.deploy.formats import EXPORT_FORMATS, exporter

        fmt = EXPORT_FORMATS["ncnn" if backend == "ncnn" else "tflite"]
        path = work / f"{name}{fmt.suffix}"
        if not path.is_file():
            exporter(fmt)(ckpt, path)
    precisions = (common.get("openvino_precisions") or ["fp32"]) if backend == "openvino" else ["fp32"]
    specs = [{**common, "name": name, "kind": "ssdlite", "backend": backend, "checkpoint": str(path), "precision": p,
              "column": backend if p == "fp32" else f"{backend}-{p}"} for p in precisions]
    if common.get("int8") and backend in ("onnxruntime", "openvino"):  # one int8 file, both run it
        specs.append({**specs[0], "checkpoint": str(_int8_file(path, cfg, common)), "column": f"{backend}-int8"})
    return specs


def _int8_file(fp32: Path, cfg: Any, common: dict[str, Any]) -> Path:
    """The int8 (QDQ) twin of ``fp32``, its family's default recipe, calibrated on the benchmark's frames (written once)."""
    from ssdlite.deploy.detector import preprocess
    from ssdlite.deploy.quantize import quantize_onnx, recipes_for

    out = fp32.with_name(f"{fp32.stem}_int8.onnx")
    if not out.is_file():
        frames = np.load(common["frames"])
        frames = frames[:: max(1, len(frames) // 16)][:16]
        batch = np.concatenate([preprocess([f], tuple(cfg.model.input_size), cfg.preprocess)[0] for f in frames])
        quantize_onnx(fp32, out, batch, recipes_for(cfg.model.backbone.name)[0])
    return out


def config_specs(paths: dict[str, Path], backends: list[str], frames: np.ndarray, common: dict[str, Any],
                 work: Path, score: float) -> list[dict[str, Any]]:
    """One contender per (name: config) x back end, random weights made lively on a few of ``frames``."""
    from ssdlite.config import load_config

    calib = frames[:: max(1, len(frames) // 4)][:4]
    specs = []
    for name, path in paths.items():
        cfg = load_config(path)
        model = lively_random_model(cfg, calib, candidates=CANDIDATES_PER_FRAME, score_thresh=score)
        specs += [s for backend in backends for s in ours_specs(name, model, cfg, backend, common, work)]
    return specs


def _prepare(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Write frames, checkpoints, ONNX files; return the contender specs."""
    import torch

    from ssdlite.model import build_model

    frames, common = prepare_frames(args, work)
    paths = {p.stem.replace("ssdlite320_", ""): p for p in _config_paths(args.configs)}
    specs = config_specs(paths, args.backends, frames, common, work, args.score)

    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    tv_state = work / "torchvision.pt"
    torch.save(tv.state_dict(), tv_state)
    if not args.no_torchvision_weights:
        from ssdlite.model.checkpoint import load_state_dict_strict
        from ssdlite.model.convert import convert_torchvision_state_dict, torchvision_config

        cfg = torchvision_config()
        model = build_model(cfg, load_backbone_weights=False)
        load_state_dict_strict(model, convert_torchvision_state_dict(tv.state_dict()), "torchvision ssdlite320_mobilenet_v3_large")
        specs += [s for backend in args.backends for s in ours_specs(TV_WEIGHTS, model, cfg, backend, common, work)]
    specs.append({**common, "name": TORCHVISION, "kind": "torchvision", "backend": "eager", "checkpoint": str(tv_state)})
    return specs


def _spawn(spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(spec["threads"])
    if spec["omp_wait_policy"] != "default":
        env["OMP_WAIT_POLICY"] = spec["omp_wait_policy"]
    else:
        env.pop("OMP_WAIT_POLICY", None)
    code = f"from ssdlite.apps.bench.latency_child import child; child({json.dumps(json.dumps(spec))})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"latency: contender {label(spec['name'], spec.get('column', spec['backend']))} failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def time_rounds(specs: list[dict[str, Any]], rounds: int, tag: str = "latency") -> list[dict[str, dict[str, Any]]]:
    """Every contender in its own process, ``rounds`` times, the order reversed every other round."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"{tag}: warning: the machine is busy (load {load:.1f} on {os.cpu_count()} cores); "
              "every figure is inflated, compare the ratios", file=sys.stderr)
    out: list[dict[str, dict[str, Any]]] = []
    for r in range(rounds):
        order = specs if r % 2 == 0 else specs[::-1]
        results = {}
        for spec in order:
            key = label(spec["name"], spec.get("column", spec["backend"]))
            results[key] = _spawn(spec)
            e2e = statistics.median(results[key]["ms"]["end_to_end"])
            print(f"{tag}: round {r + 1}/{rounds} {key}: {e2e:.2f} ms", file=sys.stderr)
        out.append(results)
    return out


def check_timing_args(args: argparse.Namespace) -> None:
    if args.frames < 1 or args.rounds < 1 or args.threads < 1:
        raise ValueError("--frames, --rounds and --threads must be >= 1")


def run(args: argparse.Namespace) -> int:
    check_timing_args(args)
    with tempfile.TemporaryDirectory(prefix="ssdlite_latency_") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        specs = _prepare(args, work)
        rounds = time_rounds(specs, args.rounds)
    rows = summarize(specs, rounds)
    print(f"CPU: {cpu_description()}")
    print(format_table(rows))
    for line in check_targets(rows):
        print(line)
    meta = {
        "frames": args.frames, "rounds": args.rounds, "threads": args.threads, "score": args.score,
        "spinning": args.spinning, "ort_torch_threads": args.ort_torch_threads, "omp_wait_policy": args.omp_wait_policy,
        "video": str(args.video or _default_video()), "cpu_count": os.cpu_count(), "cpu": cpu_description(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"settings": meta, "results": rows, "targets": check_targets(rows)}, indent=2))
    if args.plot:
        plot(rows, args.plot, f"batch 1, {args.threads} threads, score {args.score}, median of {args.rounds} rounds x {args.frames} frames")
    return 0
