"""COCO-scale index memory: ``python tools/benchmark.py data --coco-scale``.

Writes a COCO-train2017-sized annotation json (118,287 images, 860,001 boxes with polygons,
~450 MB) to a temporary folder and, in a fresh process per dataset, reports the load time and
the peak memory (RSS, PSS, USS from ``/proc/PID/smaps_rollup``) of the main process plus 4
DataLoader workers over one shuffled pass of the index (targets only, no image decoding), ours
beside a naive dataset that keeps pycocotools' ``COCO`` object (dicts in lists, as
torchvision's ``CocoDetection`` does). A watchdog stops a run whose memory would exhaust the
machine and says so.

Part of the ``data`` benchmark (:mod:`ssdlite.apps.bench.data` adds these flags to its parser
and dispatches here). Each measurement runs in a child ``python -c`` that calls :func:`_child`
of this module and prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ssdlite.apps.bench.machine import cpu_description


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--coco-scale`` flags, as a group of the ``data`` benchmark's parser."""
    g = parser.add_argument_group("--coco-scale: index load time and memory with a train2017-sized json")
    g.add_argument("--coco-scale", action="store_true", help="run the COCO-scale memory benchmark instead")
    g.add_argument("--scale-images", type=int, default=118_287, help="images in the generated json (default: 118287)")
    g.add_argument("--scale-boxes", type=int, default=860_001, help="annotations in the generated json (default: 860001)")
    g.add_argument("--no-polygons", action="store_true", help="omit segmentation polygons (a ~90 MB json)")
    g.add_argument("--annotations", default=None, help="use this existing json instead of generating one")
    g.add_argument("--workers", type=int, default=4, help="DataLoader workers (default: 4)")
    g.add_argument("--min-free-gb", type=float, default=3.0, help="stop a run when the machine has less free memory (default: 3)")
    g.add_argument("--only", choices=("ours", "naive"), default=None, help="measure one dataset only")


_SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (640, 360), (500, 375), (640, 640), (612, 612))


def write_coco_scale_json(path: Path, num_images: int = 118_287, num_boxes: int = 860_001, polygons: bool = True,
                          seed: int = 0) -> None:
    """Write a COCO-train2017-like instances json: real-looking image entries (file names,
    urls, sizes), annotations spread over the images in random order with polygon
    segmentations (~1% crowd RLEs), 80 categories with ids 1..90."""
    from ssdlite.data.names import COCO_CATEGORIES

    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(600_000, size=num_images, replace=False) + 1)
    sizes = np.asarray(_SIZES)[rng.integers(len(_SIZES), size=num_images)]
    cat_ids = np.asarray([c for c, _ in COCO_CATEGORIES])
    owner = rng.integers(num_images, size=num_boxes)
    cats = cat_ids[np.minimum(rng.zipf(1.6, size=num_boxes) - 1, len(cat_ids) - 1)]
    crowd = rng.random(num_boxes) < 0.009
    # box geometry (xywh, 2 decimals) inside each owner's image
    W, H = sizes[owner, 0].astype(float), sizes[owner, 1].astype(float)
    bw = np.clip(np.exp(rng.uniform(np.log(4), np.log(W * 0.9))), 2, W - 1)
    bh = np.clip(bw * np.exp(rng.normal(0, 0.5, num_boxes)), 2, H - 1)
    x, y = rng.uniform(0, W - bw), rng.uniform(0, H - bh)
    area = bw * bh * rng.uniform(0.4, 0.9, num_boxes)
    # a pool of polygon / RLE strings (COCO averages ~24 vertices per polygon)
    def poly(n: int) -> str:
        v = rng.uniform(0, 640, 2 * n)
        return "[[" + ",".join(f"{a:.2f}" for a in v) + "]]"

    polys = [poly(int(n)) for n in rng.integers(8, 44, size=4096)] if polygons else ["[]"]
    rles = ['{"counts":[' + ",".join(str(int(c)) for c in rng.integers(0, 3000, size=int(n))) + '],"size":[480,640]}'
            for n in rng.integers(60, 400, size=256)]
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"info":{"description":"generated COCO-scale benchmark json","version":"1.0","year":2017},'
                '"licenses":[{"url":"http://creativecommons.org/licenses/by-nc-sa/2.0/","id":1,'
                '"name":"Attribution-NonCommercial-ShareAlike License"}],"images":[')
        buf = []
        for k in range(num_images):
            iid = int(ids[k])
            w, h = int(sizes[k, 0]), int(sizes[k, 1])
            buf.append(f'{{"license":{k % 8 + 1},"file_name":"{iid:012d}.jpg","coco_url":'
                       f'"http://images.cocodataset.org/train2017/{iid:012d}.jpg","height":{h},"width":{w},'
                       f'"date_captured":"2013-11-14 11:18:45","flickr_url":'
                       f'"http://farm4.staticflickr.com/3153/{iid}_7b5c0d4f8e_z.jpg","id":{iid}}}')
        f.write(",".join(buf))
        f.write('],"annotations":[')
        pi = rng.integers(len(polys), size=num_boxes)
        ri = rng.integers(len(rles), size=num_boxes)
        chunk: list[str] = []
        for j in range(num_boxes):
            seg = rles[ri[j]] if crowd[j] else polys[pi[j]]
            chunk.append(f'{{"segmentation":{seg},"area":{float(area[j])!r},"iscrowd":{int(crowd[j])},"image_id":{int(ids[owner[j]])},'
                         f'"bbox":[{x[j]:.2f},{y[j]:.2f},{bw[j]:.2f},{bh[j]:.2f}],"category_id":{int(cats[j])},"id":{j + 1}}}')
            if len(chunk) == 20000:
                f.write(("," if j + 1 > 20000 else "") + ",".join(chunk))
                chunk = []
        if chunk:
            f.write(("," if num_boxes > len(chunk) else "") + ",".join(chunk))
        f.write('],"categories":[')
        f.write(",".join(f'{{"supercategory":"thing","id":{c},"name":"{n}"}}' for c, n in COCO_CATEGORIES))
        f.write("]}")


def run_coco_scale(args: argparse.Namespace) -> int:
    """Generate (or take ``--annotations``) the json, measure each dataset in a child, print the table."""
    with tempfile.TemporaryDirectory(prefix="ssdlite-coco-scale-") as tmp:
        if args.annotations:
            path = Path(args.annotations)
            gen_s = 0.0
        else:
            path = Path(tmp) / "instances_train2017.json"
            t0 = time.perf_counter()
            write_coco_scale_json(path, args.scale_images, args.scale_boxes, polygons=not args.no_polygons)
            gen_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
        print(f"annotation json: {path} ({size_mb:.0f} MB{f', generated in {gen_s:.0f} s' if gen_s else ''})")
        results = {}
        for impl in ("ours", "naive"):
            if args.only and impl != args.only:
                continue
            print(f"measuring {impl} ...", flush=True)
            results[impl] = _spawn_child(impl, path, args.workers, args.min_free_gb)
    _print_scale(results, args.workers)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"json_mb": size_mb, "workers": args.workers, **results}, indent=2))
    return 0


def _spawn_child(impl: str, path: Path, workers: int, min_free_gb: float) -> dict[str, Any]:
    code = f"from ssdlite.apps.bench.data_memory import _child; _child({impl!r}, {str(path)!r}, {workers}, {min_free_gb})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit code {proc.returncode}: {proc.stderr.strip()[-800:]}"}
    return json.loads(lines[-1][len("RESULT "):])


def _fmt_mb(v: float | None) -> str:
    return "-" if v is None else f"{v / 2**20:,.0f}"


def _print_scale(results: dict[str, dict[str, Any]], workers: int) -> None:
    names = {"ours": "ours: CocoDetection (numpy arrays)", "naive": "naive: pycocotools COCO (dicts in lists)"}
    print(f"\nCOCO-scale index, memory in MiB. Load: json parse + index build in the main process ('index' = its RSS "
          f"after loading minus the idle RSS with torch, OpenCV and pycocotools imported; 'peak' = its highest RSS). "
          f"Pass: main + {workers} DataLoader workers, one shuffled pass over every target (no decoding); peak sums over "
          f"the processes: PSS (shared pages split, the real total), USS (private pages), RSS (shared pages counted "
          f"in every process).")
    print(f"CPU: {cpu_description()}")
    print(f"{'':<42} {'-------- load ---------':>23}   {'-------------------- pass --------------------':>48}")
    print(f"{'dataset':<42} {'s':>5} {'index':>7} {'peak':>9}   {'s':>5} {'PSS':>8} {'USS':>8} {'RSS':>8} {'worker USS':>11}")
    for impl, r in results.items():
        if "error" in r:
            print(f"{names[impl]:<42} failed: {r['error']}")
            continue
        index = r["main_rss_after_load"] - r["main_rss_baseline"]
        print(f"{names[impl]:<42} {r['load_s']:>5.1f} {_fmt_mb(index):>7} {_fmt_mb(r['load_peak_rss']):>9}   "
              f"{r['pass_s']:>5.1f} {_fmt_mb(r['pass_peak_pss']):>8} {_fmt_mb(r['pass_peak_uss']):>8} "
              f"{_fmt_mb(r['pass_peak_rss']):>8} {_fmt_mb(r['pass_peak_worker_uss']):>11}")
        if r.get("aborted"):
            print(f"  (stopped early: {r['aborted']})")
    if "ours" in results and "naive" in results and "error" not in results["ours"] and "error" not in results["naive"]:
        o, n = results["ours"], results["naive"]
        print(f"naive / ours: load time {n['load_s'] / o['load_s']:.1f}x, load peak {n['load_peak_rss'] / o['load_peak_rss']:.1f}x, "
              f"index {(n['main_rss_after_load'] - n['main_rss_baseline']) / max(o['main_rss_after_load'] - o['main_rss_baseline'], 1):.0f}x, "
              f"pass PSS {n['pass_peak_pss'] / o['pass_peak_pss']:.1f}x, worker USS {n['pass_peak_worker_uss'] / max(o['pass_peak_worker_uss'], 1):.0f}x")


# ---------------------------------------------------------------------------- child side


def _read_kb(pid: int, fname: str, keys: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/{fname}") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def _mem(pid: int) -> dict[str, int]:
    """RSS, PSS and USS (private clean + dirty) of a process, in bytes."""
    m = _read_kb(pid, "smaps_rollup", ("Rss", "Pss", "Private_Clean", "Private_Dirty"))
    if "Rss" not in m:
        s = _read_kb(pid, "status", ("VmRSS",))
        return {"rss": s.get("VmRSS", 0), "pss": s.get("VmRSS", 0), "uss": s.get("VmRSS", 0)}
    return {"rss": m["Rss"], "pss": m.get("Pss", m["Rss"]), "uss": m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)}


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                            kids.append(int(d))
                except (OSError, IndexError, ValueError):
                    pass
        return kids


def _read_meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


class _Monitor(threading.Thread):
    """Samples the memory of this process and its children; kills them if the machine runs low."""

    def __init__(self, min_free: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.min_free, self.interval = min_free, interval
        self.peak = {"rss": 0, "pss": 0, "uss": 0}
        self.peak_worker_uss = 0
        self.aborted: str | None = None
        self._halt = threading.Event()

    def sample(self) -> None:
        me = os.getpid()
        total = {"rss": 0, "pss": 0, "uss": 0}
        for pid in [me, *_children(me)]:
            m = _mem(pid)
            for k in total:
                total[k] += m[k]
            if pid != me:
                self.peak_worker_uss = max(self.peak_worker_uss, m["uss"])
        for k in total:
            self.peak[k] = max(self.peak[k], total[k])
        free = _read_meminfo_available()
        if free < self.min_free and self.aborted is None:
            self.aborted = f"machine memory available fell to {free / 2**30:.1f} GiB"
            import signal

            for pid in _children(me):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def reset(self) -> None:
        self.peak = {"rss": 0, "pss": 0, "uss": 0}
        self.peak_worker_uss = 0

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


def _ours_targets(path: str) -> Any:
    from ssdlite.data import CocoDetection

    class OursTargets(CocoDetection):
        def __getitem__(self, i: int) -> dict[str, Any]:
            boxes, labels, crowd = self.get_annotations(i)
            return {"boxes": boxes, "labels": labels, "iscrowd": crowd, "image_id": int(self.image_ids[i]),
                    "orig_size": self.image_size(i)}

    return OursTargets(Path(path).parent, path)


class NaiveCocoTargets:
    """torchvision-style: keeps pycocotools' ``COCO`` (every json dict) and builds targets per item."""

    def __init__(self, path: str) -> None:
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(path)
        self.ids = sorted(self.coco.imgs)
        cats = sorted(self.coco.cats)
        self.cat_to_label = {c: k for k, c in enumerate(cats)}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img_id = self.ids[i]
        info = self.coco.imgs[img_id]
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=img_id))
        boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        np.clip(boxes[:, 0::2], 0, info["width"], out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, info["height"], out=boxes[:, 1::2])
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        labels = np.asarray([self.cat_to_label[a["category_id"]] for a in anns], dtype=np.int64)
        crowd = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        return {"boxes": boxes[keep], "labels": labels[keep], "iscrowd": crowd[keep], "image_id": img_id,
                "orig_size": (info["height"], info["width"])}


def _list_collate(batch: list) -> list:
    return batch


def _child(impl: str, path: str, workers: int, min_free_gb: float) -> None:
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)
    import ssdlite.data.coco  # noqa: F401  (imports outside the timed load)
    from pycocotools.coco import COCO  # noqa: F401

    baseline = _mem(os.getpid())  # interpreter + torch, cv2, pycocotools imported
    mon = _Monitor(int(min_free_gb * 2**30))
    mon.start()
    t0 = time.perf_counter()
    ds = _ours_targets(path) if impl == "ours" else NaiveCocoTargets(path)
    load_s = time.perf_counter() - t0
    after_load = _mem(os.getpid())
    load_peak = _read_kb(os.getpid(), "status", ("VmHWM",)).get("VmHWM", 0)
    mon.reset()
    loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers, collate_fn=_list_collate,
                        generator=torch.Generator().manual_seed(0))
    t1 = time.perf_counter()
    n = 0
    try:
        for batch in loader:
            n += len(batch)
            if mon.aborted:
                break
    except RuntimeError as e:  # workers killed by the watchdog
        if not mon.aborted:
            raise
        del e
    pass_s = time.perf_counter() - t1
    mon.stop()
    result = {
        "impl": impl, "images": len(ds), "targets_seen": n, "load_s": load_s,
        "main_rss_baseline": baseline["rss"], "main_rss_after_load": after_load["rss"], "main_uss_after_load": after_load["uss"],
        "load_peak_rss": load_peak, "pass_s": pass_s,
        "pass_peak_rss": mon.peak["rss"], "pass_peak_pss": mon.peak["pss"], "pass_peak_uss": mon.peak["uss"],
        "pass_peak_worker_uss": mon.peak_worker_uss, "aborted": mon.aborted,
    }
    print("RESULT " + json.dumps(result), flush=True)
