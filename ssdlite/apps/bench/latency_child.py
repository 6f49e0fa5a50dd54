"""The latency benchmark's child process: times one contender (:mod:`ssdlite.apps.bench.latency`
spawns one process per contender and round) and prints its per-frame stage times as one JSON line."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from ssdlite.apps.bench.latency_report import STAGES

__all__ = ["child"]


def _time_frames(frames: np.ndarray, warmup: int, stages: Any) -> dict[str, Any]:
    """Run ``stages(frame) -> (t0, t1, t2, t3, n_dets)`` on every frame after ``warmup`` untimed ones."""
    for i in range(min(warmup, len(frames))):
        stages(frames[i % len(frames)])
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    dets = []
    for frame in frames:
        t0, t1, t2, t3, n = stages(frame)
        times["preprocess"].append((t1 - t0) * 1e3)
        times["network"].append((t2 - t1) * 1e3)
        times["postprocess"].append((t3 - t2) * 1e3)
        times["end_to_end"].append((t3 - t0) * 1e3)
        dets.append(n)
    return {"ms": times, "detections": float(np.mean(dets)), "precision": getattr(stages, "precision", "fp32")}


def _ours_stages(spec: dict[str, Any]):
    from ssdlite.deploy.detector import Detector, preprocess

    det = Detector.from_checkpoint(spec["checkpoint"], backend=spec["backend"], threads=spec["threads"], score_thresh=spec["score"])
    if spec["backend"] == "onnxruntime":  # same settings as from_checkpoint, spinning as asked
        from ssdlite.deploy.onnx_runtime import OnnxRunner

        det.runner = OnnxRunner(spec["checkpoint"], threads=spec["threads"], spinning=spec["spinning"])
    elif spec["backend"] == "openvino":  # same settings as from_checkpoint, the precision asked for
        from ssdlite.deploy.openvino_runtime import OpenVinoRunner

        det.runner = OpenVinoRunner(spec["checkpoint"], threads=spec["threads"], precision=spec.get("precision", "fp32"))
    size, pre_cfg = det.input_size, det.cfg.preprocess
    clock = time.perf_counter

    def stages(frame: np.ndarray):
        t0 = clock()
        batch, maps = preprocess([frame], size, pre_cfg)
        t1 = clock()
        cls_logits, box_deltas = det.raw(batch)
        t2 = clock()
        out = det.postprocess(cls_logits, box_deltas, maps)
        t3 = clock()
        return t0, t1, t2, t3, len(out[0])

    stages.precision = getattr(det.runner, "precision", "fp32")
    return stages


def _torchvision_stages(spec: dict[str, Any]):
    import torch
    import torchvision

    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, score_thresh=spec["score"], nms_thresh=0.55, detections_per_img=300, topk_candidates=300
    )
    model.load_state_dict(torch.load(spec["checkpoint"], weights_only=True))
    model.eval()
    clock = time.perf_counter

    def stages(frame: np.ndarray):
        with torch.inference_mode():
            t0 = clock()
            image = torch.from_numpy(frame).permute(2, 0, 1).float().div_(255)  # what users hand torchvision
            original_sizes = [tuple(image.shape[-2:])]
            images, _ = model.transform([image])
            t1 = clock()
            features = list(model.backbone(images.tensors).values())
            head_outputs = model.head(features)
            t2 = clock()
            anchors = model.anchor_generator(images, features)
            detections = model.postprocess_detections(head_outputs, anchors, images.image_sizes)
            detections = model.transform.postprocess(detections, images.image_sizes, original_sizes)
            t3 = clock()
        return t0, t1, t2, t3, len(detections[0]["scores"])

    return stages


def child(spec_json: str) -> None:
    """Time one contender; print its result as one JSON line on stdout."""
    spec = json.loads(spec_json)
    threads = int(spec["threads"])
    import cv2
    import torch

    # Contenders other than torch (ONNX Runtime, OpenVINO, ncnn, ...) use torch only for the small postprocess: one torch thread, so that
    # a second 2-thread pool does not fight ONNX Runtime's (--ort-torch-threads to change).
    torch.set_num_threads(int(spec["ort_torch_threads"]) if spec["backend"] not in ("torch", "eager") else threads)
    cv2.setNumThreads(threads)
    frames = np.load(spec["frames"])
    stages = _torchvision_stages(spec) if spec["kind"] == "torchvision" else _ours_stages(spec)
    result = _time_frames(frames, int(spec["warmup"]), stages)
    print(json.dumps(result))
